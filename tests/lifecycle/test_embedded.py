"""`trackside up` as a real process: first start, clean stop, restart, and a SIGKILL mid-deploy."""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import SAMPLE_JOBS, free_port
from tests.gitservers import commit_files, file_url, make_repo

ADDER = (SAMPLE_JOBS / "adder" / "entrypoint.py").read_text()


class Lifecycle:
    def __init__(self, data_dir: Path, log: Path) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log
        with open(log, "ab") as out:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "trackside",
                    "up",
                    "--port",
                    str(self.port),
                    "--data-dir",
                    str(data_dir),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(self.url + "/lifecycle/live").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert self.process.poll() is None, self.output()
            assert time.monotonic() < deadline, self.output()
            time.sleep(0.1)
        self.token = (data_dir / "admin-token").read_text().strip()
        self.client = httpx.Client(
            base_url=self.url + "/lifecycle", headers={"X-Racetrack-Auth": self.token}, timeout=30
        )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def deploy(self, manifest: dict[str, Any], force: bool = False) -> str:
        r = self.client.post("/api/v1/deploy", json={"manifest": manifest, "force": force})
        assert r.status_code == 202, r.text
        return str(r.json()["id"])

    def deployment(self, deployment_id: str) -> dict[str, Any]:
        body: dict[str, Any] = self.client.get(f"/api/v1/deploy/{deployment_id}").json()
        return body

    def wait(self, deployment_id: str, until: str | None = None, timeout: float = 180) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            body = self.deployment(deployment_id)
            if body["status"] != "in_progress" or (until is not None and body["phase"] == until):
                return body
            assert time.monotonic() < deadline, body
            time.sleep(0.1)

    def job_pids(self, name: str, version: str) -> set[int]:
        logs = self.client.get(f"/api/v1/job/{name}/{version}/logs", params={"tail": 1000}).json()["logs"]
        return {int(pid) for pid in re.findall(r"\(pid (\d+)\)", logs)}

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.client.close()
        self.process.send_signal(sig)
        return self.process.wait(30)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def adder_manifest(repo: Path) -> dict[str, Any]:
    return {
        "name": "adder",
        "owner_email": "sample@example.com",
        "jobtype": "python3:latest",
        "version": "1.0.0",
        "git": {"remote": file_url(repo)},
        "jobtype_extra": {"entrypoint_path": "entrypoint.py"},
    }


def call(lifecycle: Lifecycle, numbers: list[float]) -> Any:
    deadline = time.monotonic() + 30
    while True:
        job = lifecycle.client.get("/api/v1/job/adder/1.0.0").json()
        if job.get("status") == "running":
            break
        assert time.monotonic() < deadline, job
        time.sleep(0.1)
    pids = lifecycle.job_pids("adder", "1.0.0")
    assert pids
    logs = lifecycle.client.get("/api/v1/job/adder/1.0.0/logs", params={"tail": 1000}).json()["logs"]
    port = re.findall(r"started on port (\d+)", logs)[-1]
    return httpx.post(f"http://127.0.0.1:{port}/api/v1/perform", json={"numbers": numbers}).json()


def test_first_start_stop_and_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    repo = make_repo(tmp_path / "adder", {"entrypoint.py": ADDER})
    first = Lifecycle(data, tmp_path / "up.log")
    assert "admin token (shown once" in first.output() and first.token in first.output()
    assert stat.S_IMODE((data / "admin-token").stat().st_mode) == 0o600
    assert stat.S_IMODE(data.stat().st_mode) == 0o700

    assert first.wait(first.deploy(adder_manifest(repo)))["status"] == "done"
    assert call(first, [40, 2]) == 42
    pids = first.job_pids("adder", "1.0.0")
    first.stop(signal.SIGTERM)
    assert not [pid for pid in pids if alive(pid)], "the job outlived the lifecycle"

    second = Lifecycle(data, tmp_path / "up2.log")
    assert second.token not in second.output() and "admin token: see" in second.output()
    assert call(second, [1, 2]) == 3
    second.stop()


def test_sigkill_during_a_redeploy(tmp_path: Path) -> None:
    data = tmp_path / "data"
    repo = make_repo(tmp_path / "adder", {"entrypoint.py": ADDER})
    first = Lifecycle(data, tmp_path / "up.log")
    assert first.wait(first.deploy(adder_manifest(repo)))["status"] == "done"
    assert call(first, [40, 2]) == 42

    commit_files(
        repo,
        {
            "entrypoint.py": "import time\n"
            + ADDER.replace("class Adder:", "class Adder:\n    def __init__(self):\n        time.sleep(60)\n")
        },
    )
    redeploy = first.deploy(adder_manifest(repo), force=True)
    assert first.wait(redeploy, until="initialising the entrypoint")["phase"] == "initialising the entrypoint"
    deadline = time.monotonic() + 15
    while len(before := first.job_pids("adder", "1.0.0")) < 2:  # the serving replica and the new one
        assert time.monotonic() < deadline, before
        time.sleep(0.1)
    first.stop(signal.SIGKILL)

    second = Lifecycle(data, tmp_path / "up2.log")
    assert not [pid for pid in before if alive(pid)], "processes of the killed lifecycle were left running"
    interrupted = second.deployment(redeploy)
    assert interrupted["status"] == "failed"
    assert interrupted["error"].startswith("interrupted")
    assert "initialising the entrypoint" in interrupted["error"]
    assert call(second, [40, 2]) == 42  # the version that served before still serves, with its code
    deployments = second.client.get("/api/v1/deploy", params={"job_name": "adder"}).json()
    assert len(deployments) == 2
    second.stop()
