class Adder:
    async def perform(self, numbers: list[float], offset: float = 0) -> float:
        """Add up numbers (async def: awaited on the event loop)."""
        return sum(numbers) + offset
