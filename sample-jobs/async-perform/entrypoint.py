import asyncio


class AsyncAdder:
    async def perform(self, numbers: list[int], delay: float = 0) -> int:
        """
        Add integers without blocking the event loop.
        :param numbers: The integers to add.
        :param delay: Seconds to await before answering (other calls proceed meanwhile).
        """
        await asyncio.sleep(delay)
        return sum(numbers)

    def docs_input_example(self) -> dict:
        return {"numbers": [1, 2, 3]}
