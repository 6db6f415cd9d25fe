class Adder:
    def perform(self, numbers: list[float], offset: float = 0) -> float:
        """
        Add up numbers.
        :param numbers: The numbers to add.
        :param offset: Added to the sum.
        :return: The sum.
        """
        return sum(numbers) + offset

    def docs_input_example(self) -> dict:
        return {"numbers": [40, 2]}
