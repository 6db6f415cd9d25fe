import time

INIT_SECONDS = 3.0


class SlowStarter:
    def __init__(self) -> None:
        started = time.monotonic()
        time.sleep(INIT_SECONDS)
        self.init_seconds = round(time.monotonic() - started, 2)

    def perform(self) -> dict[str, float]:
        """How long __init__ took; the job answers /live at once but /ready only after it."""
        return {"init_seconds": self.init_seconds}

    def docs_input_example(self) -> dict:
        return {}
