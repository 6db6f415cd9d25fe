"""Stopping a job: calls in progress finish before the process exits."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import httpx

from tests.conftest import JobRunner, write_job


def test_sigterm_lets_calls_in_progress_finish(tmp_path: Path, run_job: JobRunner) -> None:
    job = run_job(
        write_job(
            tmp_path / "stop",
            "import time\nclass J:\n    def perform(self):\n"
            "        time.sleep(1)\n        return 'finished'\n",
        )
    )
    result: dict[str, object] = {}

    def call() -> None:
        r = httpx.post(job.url + "/api/v1/perform", json={}, timeout=10)
        result["status"], result["body"] = r.status_code, r.json()

    caller = threading.Thread(target=call)
    caller.start()
    time.sleep(0.3)
    job.process.send_signal(signal.SIGTERM)
    caller.join(10)
    assert result == {"status": 200, "body": "finished"}
    # uvicorn ends by re-raising the signal it caught, after the graceful shutdown
    assert job.process.wait(10) in (0, -signal.SIGTERM)
    assert "Finished server process" in job.logs()
