"""The servers under test, (a)-(d), and the job used for the 429 scenario: how each is started."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from .racetrack import RacetrackRunner

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
JOBS = BENCH_DIR / "jobs"

PERFORM_PATH = "/api/v1/perform"
REQUEST_BODY = b'{"numbers": [1, 2, 3, 4, 5, 6, 7, 8], "offset": 0.5}'
EXPECTED_RESULT = 36.5

SERVER_KEYS = ("a", "b", "c", "d")
REJECT_KEY = "429"


@dataclass(frozen=True)
class ServerSpec:
    key: str
    label: str
    # "{port}" stands for the free port picked at start
    command: tuple[str, ...]
    cwd: Path

    @property
    def title(self) -> str:
        return f"({self.key}) {self.label}" if len(self.key) == 1 else self.label

    def shown_command(self) -> str:
        return " ".join(self.command)


def _wrapper(key: str, label: str, job: str) -> ServerSpec:
    command = (
        sys.executable,
        "-m",
        "trackside_wrapper",
        "run",
        str(JOBS / job),
        "--host",
        "127.0.0.1",
        "--port",
        "{port}",
    )
    return ServerSpec(key, label, command, REPO)


def wrapper_sync() -> ServerSpec:
    return _wrapper("a", "wrapper, def perform", "adder_sync")


def wrapper_async() -> ServerSpec:
    return _wrapper("b", "wrapper, async def perform", "adder_async")


def raw_asgi() -> ServerSpec:
    command = (sys.executable, "-m", "benchmarks.raw_asgi", "--port", "{port}")
    return ServerSpec("c", "raw ASGI on uvicorn", command, REPO)


def racetrack(runner: RacetrackRunner) -> ServerSpec:
    return ServerSpec(
        "d", f"Racetrack runner {runner.version}", tuple(runner.command("adder_sync.py")), JOBS / "adder_sync"
    )


def rejecting_job() -> ServerSpec:
    """A 20 ms job with max_concurrency 1 and a queue of 2: under a crowd, almost every call is a 429."""
    return _wrapper(REJECT_KEY, "wrapper, 20 ms job, max_concurrency 1 + queue 2", "sleeper")
