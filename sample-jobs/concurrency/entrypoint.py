import threading
import time


class OneAtATime:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running = 0
        self.most_at_once = 0

    def perform(self, ticket: int, seconds: float = 0.5) -> dict[str, int]:
        """
        Hold the job's only slot for a while.
        :param ticket: Echoed back, to tell calls apart.
        :param seconds: How long the call takes.
        """
        with self.lock:
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        try:
            time.sleep(seconds)
        finally:
            with self.lock:
                self.running -= 1
        return {"ticket": ticket, "most_at_once": self.most_at_once}

    def docs_input_example(self) -> dict:
        return {"ticket": 1, "seconds": 0.5}
