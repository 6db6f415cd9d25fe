"""c=256 for 60 s through the gateway of a real `trackside up`: no errors, and the process does
not grow (RSS at the end within 10% of after warm-up)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import IN_CI, SAMPLE_JOBS
from tests.gitservers import file_url, make_repo
from tests.lifecycle.platform import TracksideUp

LUA = """
wrk.method = "POST"
wrk.body = '{"numbers": [40, 2]}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-Racetrack-Auth"] = "%s"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('RESULT {"requests": %%d, "status": %%d, "connect": %%d, "read": %%d, '
    .. '"write": %%d, "timeout": %%d}\\n', summary.requests, e.status, e.connect, e.read, e.write, e.timeout))
end
"""


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def wrk(url: str, script: Path, connections: int, seconds: int) -> dict[str, int]:
    done = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s", str(script), url],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    )
    line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
    assert done.returncode == 0 and line is not None, done.stdout + done.stderr
    result: dict[str, int] = json.loads(line.removeprefix("RESULT "))
    return result


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_c256_for_60_seconds_through_the_gateway(tmp_path: Path) -> None:
    if shutil.which("wrk") is None:
        if IN_CI:
            pytest.fail("wrk is missing (.ci/run installs it)")
        pytest.skip("wrk is not installed")
    up = TracksideUp(tmp_path / "data", tmp_path / "up.log")
    process = up.process
    try:
        token = up.token
        api = httpx.Client(
            base_url=f"{up.url}/lifecycle/api/v1", headers={"X-Racetrack-Auth": token}, timeout=30
        )
        repo = make_repo(
            tmp_path / "adder", {"entrypoint.py": (SAMPLE_JOBS / "adder" / "entrypoint.py").read_text()}
        )
        deployment = api.post(
            "/deploy",
            json={
                "manifest": {
                    "name": "adder",
                    "owner_email": "sample@example.com",
                    "jobtype": "python3:latest",
                    "git": {"remote": file_url(repo)},
                    "jobtype_extra": {"entrypoint_path": "entrypoint.py"},
                }
            },
        ).json()["id"]
        deadline = time.monotonic() + 120
        while (status := api.get(f"/deploy/{deployment}").json())["status"] == "in_progress":
            assert time.monotonic() < deadline, status
            time.sleep(0.1)
        assert status["status"] == "done", status

        script = tmp_path / "post.lua"
        script.write_text(LUA % token)
        target = f"{up.url}/pub/job/adder/latest/api/v1/perform"
        warm = wrk(target, script, 256, 10)
        assert warm["status"] == 0 and warm["requests"] > 0, warm
        after_warmup = rss_kib(process.pid)
        soak = wrk(target, script, 256, 60)
        at_end = rss_kib(process.pid)
        errors = {k: soak[k] for k in ("status", "connect", "read", "write", "timeout")}
        assert errors == dict.fromkeys(errors, 0), soak
        assert soak["requests"] > 10_000, soak
        assert at_end <= after_warmup * 1.10, f"RSS grew from {after_warmup} KiB to {at_end} KiB"
        api.close()
    finally:
        up.stop()
