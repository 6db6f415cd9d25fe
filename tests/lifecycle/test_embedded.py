"""`trackside up` as a real process: first start, clean stop, restart, and a SIGKILL mid-deploy."""

from __future__ import annotations

import re
import signal
import stat
import time
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import SAMPLE_JOBS
from tests.gitservers import commit_files, file_url, make_repo
from tests.lifecycle.platform import TracksideUp

ADDER = (SAMPLE_JOBS / "adder" / "entrypoint.py").read_text()


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


def call(lifecycle: TracksideUp, numbers: list[float]) -> Any:
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
    first = TracksideUp(data, tmp_path / "up.log")
    assert "admin token (shown once" in first.output() and first.token in first.output()
    assert stat.S_IMODE((data / "admin-token").stat().st_mode) == 0o600
    assert stat.S_IMODE(data.stat().st_mode) == 0o700

    assert first.wait(first.deploy(adder_manifest(repo)))["status"] == "done"
    assert call(first, [40, 2]) == 42
    pids = first.job_pids("adder", "1.0.0")
    first.stop(signal.SIGTERM)
    assert not [pid for pid in pids if alive(pid)], "the job outlived the lifecycle"

    second = TracksideUp(data, tmp_path / "up2.log")
    assert second.token not in second.output() and "admin token: see" in second.output()
    assert call(second, [1, 2]) == 3
    second.stop()


def test_sigkill_during_a_redeploy(tmp_path: Path) -> None:
    data = tmp_path / "data"
    repo = make_repo(tmp_path / "adder", {"entrypoint.py": ADDER})
    first = TracksideUp(data, tmp_path / "up.log")
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

    second = TracksideUp(data, tmp_path / "up2.log")
    assert not [pid for pid in before if alive(pid)], "processes of the killed lifecycle were left running"
    interrupted = second.deployment(redeploy)
    assert interrupted["status"] == "failed"
    assert interrupted["error"].startswith("interrupted")
    assert "initialising the entrypoint" in interrupted["error"]
    assert call(second, [40, 2]) == 42  # the version that served before still serves, with its code
    deployments = second.client.get("/api/v1/deploy", params={"job_name": "adder"}).json()
    assert len(deployments) == 2
    second.stop()
