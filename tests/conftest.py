"""Shared fixtures: real wrapper processes on free loopback ports, and sample-job paths."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import httpx
import pytest

pytest_plugins = ("tests.gitservers", "tests.db")

REPO = Path(__file__).resolve().parent.parent
SAMPLE_JOBS = REPO / "sample-jobs"
IN_CI = os.environ.get("CI", "").lower() == "true"

# A suite started in the background by a non-interactive shell inherits SIGINT ignored, and so
# would every process the tests start (Python then installs no KeyboardInterrupt handler): the
# tests that press Ctrl-C need what a terminal gives them.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RunningJob:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    client: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.client = httpx.Client(base_url=self.url, timeout=30)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float = 10) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            logs = self.logs()
            if text in logs:
                return logs
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not in the job's log within {timeout}s:\n{self.logs()}")

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.client.get("/ready").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.process.poll() is not None:
                raise AssertionError(f"job process exited with {self.process.returncode}:\n{self.logs()}")
            time.sleep(0.05)
        raise AssertionError(f"job not ready within {timeout}s:\n{self.logs()}")

    def stop(self) -> None:
        self.client.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_job(
    job_dir: Path,
    tmp_path: Path,
    env: dict[str, str] | None = None,
    args: tuple[str, ...] = (),
    wait: str = "ready",
) -> RunningJob:
    """Run `python -m trackside_wrapper run JOB_DIR` on a free port.

    wait: "ready" (until /ready is 200), "live" (until the server answers at all) or "none".
    """
    port = free_port()
    log_path = tmp_path / f"job-{port}.log"
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    log = open(log_path, "wb")  # noqa: SIM115 - the child writes to it for its whole life
    process = subprocess.Popen(
        [sys.executable, "-m", "trackside_wrapper", "run", str(job_dir), "--port", str(port), *args],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=full_env,
    )
    job = RunningJob(f"http://127.0.0.1:{port}", process, log_path)
    if wait == "ready":
        job.wait_ready()
    elif wait == "live":
        deadline = time.monotonic() + 30
        while True:
            try:
                job.client.get("/live")
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"job did not start:\n{job.logs()}") from None
                time.sleep(0.05)
    return job


class JobRunner(Protocol):
    def __call__(
        self,
        job_dir: Path,
        env: dict[str, str] | None = None,
        args: tuple[str, ...] = (),
        wait: str = "ready",
    ) -> RunningJob: ...


@pytest.fixture
def run_job(tmp_path: Path) -> Iterator[JobRunner]:
    """Factory fixture: `run_job(job_dir, env=..., args=..., wait=...)`; processes stop after the test."""
    started: list[RunningJob] = []

    def _run(
        job_dir: Path, env: dict[str, str] | None = None, args: tuple[str, ...] = (), wait: str = "ready"
    ) -> RunningJob:
        job = start_job(job_dir, tmp_path, env, args, wait)
        started.append(job)
        return job

    yield _run
    for job in started:
        job.stop()


def write_job(
    directory: Path,
    entrypoint: str,
    manifest_extra: str = "",
    name: str = "testjob",
    files: dict[str, str] | None = None,
) -> Path:
    """Write a throwaway job (entrypoint.py + job.yaml) for tests of one behaviour."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "entrypoint.py").write_text(entrypoint)
    (directory / "job.yaml").write_text(
        f"name: {name}\nowner_email: t@example.com\njobtype: python3:latest\nversion: 1.2.3\n"
        f"jobtype_extra:\n  entrypoint_path: entrypoint.py\n{manifest_extra}"
    )
    for rel, content in (files or {}).items():
        path = directory / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return directory


@pytest.fixture(scope="module")
def module_tmp(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    return tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])


def raw_http(port: int, request: bytes, timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes (no client-side normalisation) and read one response: (status, headers, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {
            k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:] if ":" in line)
        }
        length = int(headers.get("content-length", "0"))
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
        return status, headers, body
