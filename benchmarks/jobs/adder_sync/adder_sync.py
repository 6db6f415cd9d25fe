class Adder:
    def perform(self, numbers: list[float], offset: float = 0) -> float:
        """Add up numbers (plain def: runs in the wrapper's thread pool)."""
        return sum(numbers) + offset
