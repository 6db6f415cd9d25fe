"""`trackside dev DIR`: the real CLI serving a job with hot reload, on a free port."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import SAMPLE_JOBS, free_port


class Dev:
    """`python -m trackside dev DIR --port P` in its own session, its output in a file."""

    def __init__(self, job_dir: Path, log: Path, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log
        with open(log, "wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "trackside", "dev", str(job_dir), "--port", str(self.port), *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                start_new_session=True,
            )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, pattern: str, timeout: float = 60) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            found = re.search(pattern, self.output(), re.M)
            if found:
                return found
            assert self.process.poll() is None, (
                f"trackside dev exited with {self.process.returncode}:\n{self.output()}"
            )
            assert time.monotonic() < deadline, f"{pattern!r} not printed within {timeout}s:\n{self.output()}"
            time.sleep(0.05)

    def server_pids(self) -> set[int]:
        """The reloader's and the worker's pids, as uvicorn logs them."""
        return {
            int(pid) for pid in re.findall(r"Started (?:reloader|server) process \[(\d+)\]", self.output())
        }

    def interrupt(self) -> int:
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(30)

    def kill(self) -> None:
        """Cleanup after a failed test: the CLI stops its job's processes on SIGTERM; if it does
        not, kill it and its job server's process group (the reloader's pid is that group's id)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        reloader = re.search(r"Started reloader process \[(\d+)\]", self.output())
        if reloader and alive(int(reloader.group(1))):
            with contextlib.suppress(ProcessLookupError):
                if os.getpgid(int(reloader.group(1))) == int(reloader.group(1)):
                    os.killpg(int(reloader.group(1)), signal.SIGKILL)


@pytest.fixture
def job_dir(tmp_path: Path) -> Path:
    job = tmp_path / "adder"
    shutil.copytree(SAMPLE_JOBS / "adder", job)
    return job


@pytest.fixture
def start_dev(tmp_path: Path) -> Iterator[list[Dev]]:
    started: list[Dev] = []
    yield started
    for dev in started:
        dev.kill()


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def perform(url: str, payload: dict[str, object]) -> httpx.Response:
    return httpx.post(url + "/api/v1/perform", json=payload, timeout=10)


def test_serves_the_job_prints_how_to_call_it_and_reloads_on_save(
    job_dir: Path, tmp_path: Path, start_dev: list[Dev]
) -> None:
    dev = Dev(job_dir, tmp_path / "dev.log")
    start_dev.append(dev)
    curl = dev.wait_for(r"^  (curl .*)$").group(1)
    assert f"Swagger UI: {dev.url}/docs" in dev.output()
    assert curl == (
        f"curl -X POST {dev.url}/api/v1/perform -H 'Content-Type: application/json' -d '{{\"numbers\": [40, 2]}}'"
    )
    called = subprocess.run(["bash", "-c", curl], capture_output=True, text=True, timeout=30, check=True)
    assert called.stdout == "42.0"
    assert httpx.get(dev.url + "/docs", timeout=10).status_code == 200

    entrypoint = job_dir / "entrypoint.py"
    entrypoint.write_text(
        entrypoint.read_text().replace("return sum(numbers) + offset", "return sum(numbers) * 10")
    )
    saved = time.monotonic()
    while True:
        try:
            answer = perform(dev.url, {"numbers": [40, 2]})
            if answer.status_code == 200 and answer.json() == 420:
                break
        except httpx.TransportError:
            pass  # restarting
        assert time.monotonic() - saved < 30, dev.output()
        time.sleep(0.01)
    print(f"\nreload: the edited entrypoint answered {time.monotonic() - saved:.3f} s after the save")

    pids = dev.server_pids()
    assert len(pids) >= 3  # the reloader, the first worker, the worker after the reload
    assert dev.interrupt() == 0
    assert dev.output().rstrip().endswith("stopped")
    deadline = time.monotonic() + 5
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [pid for pid in pids if alive(pid)] == []
    with pytest.raises(httpx.TransportError):
        httpx.get(dev.url + "/live", timeout=2)


def test_a_job_that_fails_to_load_is_reported_and_a_fix_reloads_it(
    job_dir: Path, tmp_path: Path, start_dev: list[Dev]
) -> None:
    entrypoint = job_dir / "entrypoint.py"
    good = entrypoint.read_text()
    entrypoint.write_text(good.replace("class Adder:", "import no_such_module\n\n\nclass Adder:"))
    dev = Dev(job_dir, tmp_path / "dev.log")
    start_dev.append(dev)
    failed = dev.wait_for(r"^The job failed to load: (.*)$").group(1)
    assert "No module named 'no_such_module'" in failed and "entrypoint.py:1" in failed
    assert "-d '{}'" in dev.wait_for(r"^  curl .*$").group(0)  # no example without the job

    entrypoint.write_text(good)
    deadline = time.monotonic() + 30
    while True:
        try:
            answer = perform(dev.url, {"numbers": [1, 2]})
            if answer.status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, dev.output()
        time.sleep(0.05)
    assert answer.json() == 3
    assert dev.interrupt() == 0


def run_dev(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trackside", "dev", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
    )


def test_a_directory_without_job_yaml_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "entrypoint.py").write_text("class Job:\n    def perform(self): ...\n")
    done = run_dev(cwd=tmp_path)  # DIR defaults to .
    assert done.returncode == 2, done
    assert done.stderr.startswith(
        f"Error: no job.yaml in {tmp_path.resolve()}: `trackside dev` runs a job directory"
    )
    assert done.stdout == ""


def test_a_missing_entrypoint_is_a_usage_error(job_dir: Path) -> None:
    (job_dir / "entrypoint.py").unlink()
    done = run_dev(str(job_dir), "--port", str(free_port()))
    assert done.returncode == 2, done
    assert (
        f"Error: the entrypoint entrypoint.py (jobtype_extra.entrypoint_path in job.yaml) does not exist in {job_dir}"
        in done.stderr
    )


def test_a_manifest_without_entrypoint_path_is_a_usage_error(job_dir: Path) -> None:
    (job_dir / "job.yaml").write_text("name: adder\njobtype: python3:latest\n")
    done = run_dev(str(job_dir))
    assert done.returncode == 2, done
    assert "jobtype_extra.entrypoint_path: required" in done.stderr


def test_a_manifest_the_platform_would_refuse_still_runs_with_a_warning(
    job_dir: Path, tmp_path: Path, start_dev: list[Dev]
) -> None:
    (job_dir / "job.yaml").write_text("name: adder\njobtype_extra:\n  entrypoint_path: entrypoint.py\n")
    dev = Dev(job_dir, tmp_path / "dev.log")
    start_dev.append(dev)
    dev.wait_for(r"^  curl ")
    assert "warning: the platform would refuse job.yaml as it is" in dev.output()
    assert "owner_email: missing" in dev.output()
    assert perform(dev.url, {"numbers": [2, 3]}).json() == 5
    assert dev.interrupt() == 0


def test_a_taken_port_fails_clearly(job_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_dev(str(job_dir), "--port", str(port))
    assert done.returncode == 1, done
    assert (
        f"Error: port {port} is already in use on 127.0.0.1 (another `trackside dev`, a job or the "
        "platform?); choose another with --port"
    ) in done.stderr
    assert done.stdout == ""
