"""`make run`: the platform with sample-jobs/adder deployed, called with the curl it prints, and
stopped by Ctrl-C (SIGINT to the whole process group, as a terminal sends it).

The suite runs after `make setup`, so `make -o .venv/.synced` leaves the environment alone (the
venv being rebuilt under the other tests' feet would be no test of `make run`)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import yaml

from tests.conftest import REPO, SAMPLE_JOBS, free_port
from trackside.build_context import pack_directory

CURL = re.compile(r"^  (curl -X POST (\S+)/pub/job/adder/latest/api/v1/perform .*)$", re.M)


def processes_mentioning(text: str) -> dict[int, str]:
    """Live processes whose command line contains `text` (the platform and its jobs all name the
    data directory)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text in cmdline and state != "Z":
            found[int(entry.name)] = cmdline
    return found


class MakeRun:
    def __init__(self, port: int, data_dir: Path, log: Path) -> None:
        self.log_path = log
        self.data_dir = data_dir
        with open(log, "wb") as out:
            self.process = subprocess.Popen(
                ["make", "--no-print-directory", "-o", ".venv/.synced", "run", f"PORT={port}"],
                cwd=REPO,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "TRACKSIDE_DATA_DIR": str(data_dir)},
                start_new_session=True,  # its own process group, for the Ctrl-C below
            )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_curl(self, timeout: float = 300) -> tuple[str, str]:
        deadline = time.monotonic() + timeout
        while True:
            found = CURL.search(self.output())
            if found:
                return found.group(1), found.group(2)
            assert self.process.poll() is None, (
                f"make run exited with {self.process.returncode}:\n{self.output()}"
            )
            assert time.monotonic() < deadline, self.output()
            time.sleep(0.1)

    def ctrl_c(self) -> int:
        os.killpg(self.process.pid, signal.SIGINT)
        return self.process.wait(90)

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)  # the script stops the platform on SIGTERM too
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def run_and_call(port: int, data_dir: Path, log: Path, meanwhile: Callable[[str], None] | None = None) -> str:
    """One `make run`: call the printed curl, check the other lines, run `meanwhile(base_url)`,
    Ctrl-C; its output."""
    run = MakeRun(port, data_dir, log)
    try:
        curl, base = run.wait_for_curl()
        assert base == f"http://127.0.0.1:{port}"
        called = subprocess.run(["bash", "-c", curl], capture_output=True, text=True, timeout=30)
        assert (called.returncode, called.stdout) == (0, "42.0"), called
        token = (data_dir / "admin-token").read_text().strip()
        assert token not in curl  # read from its file when the command runs
        output = run.output()
        assert f"Dashboard:          {base}/dashboard\n" in output
        assert f"Lifecycle API docs: {base}/lifecycle/docs\n" in output
        platform_and_jobs = processes_mentioning(str(data_dir))
        assert any(" trackside up " in c for c in platform_and_jobs.values()), platform_and_jobs
        assert any(" trackside_wrapper run " in c for c in platform_and_jobs.values()), platform_and_jobs
        if meanwhile is not None:
            meanwhile(base)

        # make dies of the SIGINT it got too, once its recipe (the script) has finished
        assert run.ctrl_c() == -signal.SIGINT
    finally:
        run.kill()
    output = run.output()
    assert output.rstrip().endswith("make run: stopped"), output
    assert "Error" not in output and "Traceback" not in output, output
    deadline = time.monotonic() + 10
    while processes_mentioning(str(data_dir)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert processes_mentioning(str(data_dir)) == {}
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/lifecycle/live", timeout=2)
    return output


def test_make_run_deploys_the_adder_prints_a_working_curl_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    port = free_port()

    first = run_and_call(port, data_dir, tmp_path / "first.log")
    assert "make run: deploying sample-jobs/adder ...\n" in first
    assert re.search(r"^make run: deployed adder 0\.0\.1 in [\d.]+ s$", first, re.M)

    def deploy_older_files(base: str) -> None:
        """Replace the adder with another one, as if sample-jobs/adder had changed since."""
        old = tmp_path / "old-adder"
        shutil.copytree(SAMPLE_JOBS / "adder", old)
        entrypoint = old / "entrypoint.py"
        entrypoint.write_text(entrypoint.read_text().replace("return sum(numbers) + offset", "return -1.0"))
        manifest = yaml.safe_load((old / "job.yaml").read_text())
        manifest["labels"] = {"trackside.make-run/build-context": "older-files"}
        token = (data_dir / "admin-token").read_text().strip()
        with httpx.Client(base_url=base + "/lifecycle/api/v1", headers={"X-Racetrack-Auth": token}) as api:
            r = api.post(
                "/deploy", json={"manifest": manifest, "build_context": pack_directory(old), "force": True}
            )
            assert r.status_code == 202, r.text
            deadline = time.monotonic() + 120
            while (status := api.get(f"/deploy/{r.json()['id']}").json())["status"] == "in_progress":
                assert time.monotonic() < deadline, status
                time.sleep(0.1)
            assert status["status"] == "done", status

    # the next `make run` finds the same adder brought back by `trackside up`: nothing to deploy
    second = run_and_call(port, data_dir, tmp_path / "second.log", meanwhile=deploy_older_files)
    assert "make run: sample-jobs/adder is already running, unchanged: not deploying it again\n" in second
    assert "make run: deploying" not in second

    # another adder runs now: the next `make run` replaces it (its curl answers 42.0, not -1.0)
    third = run_and_call(port, data_dir, tmp_path / "third.log")
    assert "make run: deploying sample-jobs/adder ...\n" in third
