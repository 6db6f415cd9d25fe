"""--reload: saving a file restarts the job with the new code."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.conftest import JobRunner, RunningJob, write_job


def _wait_for(job: RunningJob, check: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (httpx.TransportError, ValueError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"condition not met within {timeout}s:\n{job.logs()}")


def test_reload_picks_up_code_changes_and_recovers_from_errors(tmp_path: Path, run_job: JobRunner) -> None:
    job_dir = write_job(tmp_path / "dev", "class J:\n    def perform(self):\n        return 'v1'\n")
    job = run_job(job_dir, args=("--reload",))
    assert job.client.post("/api/v1/perform").json() == "v1"
    # uvicorn starts the worker before its reloader registers the file watcher: a save in the
    # first instant after start can go unseen, so give the watcher a moment like a human would.
    time.sleep(1.0)

    (job_dir / "entrypoint.py").write_text(
        "class J:\n    def perform(self, x: int = 2):\n        return x * 21\n"
    )
    _wait_for(job, lambda: job.client.post("/api/v1/perform").json() == 42)

    (job_dir / "entrypoint.py").write_text("class J:\n    def perform(self)\n        return 'broken'\n")
    _wait_for(job, lambda: job.client.get("/live").status_code == 500)
    assert job.client.get("/live").json()["type"] == "SyntaxError"

    (job_dir / "entrypoint.py").write_text("class J:\n    def perform(self):\n        return 'fixed'\n")
    _wait_for(job, lambda: job.client.post("/api/v1/perform").json() == "fixed")
    assert job.process.poll() is None
