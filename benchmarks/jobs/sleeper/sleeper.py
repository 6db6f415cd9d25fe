import time


class Sleeper:
    def perform(self, numbers: list[float], offset: float = 0) -> float:
        """Hold the only slot for 20 ms, so that a crowd of callers overflows the queue."""
        time.sleep(0.02)
        return sum(numbers) + offset
