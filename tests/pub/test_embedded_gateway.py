"""`trackside up` as a real process: the gateway at /pub next to the lifecycle at /lifecycle on
one port, and sample-jobs/chain calling sample-jobs/adder through the job's PUB_URL once its family
may (granted before chain's first deploy, whose input example calls adder)."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import SAMPLE_JOBS
from tests.gitservers import file_url, make_repo
from tests.lifecycle.platform import TracksideUp


def manifest(name: str, repo: Path, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "owner_email": "sample@example.com",
        "jobtype": "python3:latest",
        "version": "0.0.1",
        "git": {"remote": file_url(repo)},
        "jobtype_extra": {"entrypoint_path": "entrypoint.py"},
        **extra,
    }


def test_trackside_up_serves_the_gateway_and_chain_calls(tmp_path: Path) -> None:
    up = TracksideUp(
        tmp_path / "data",
        tmp_path / "up.log",
        env={"TRACKSIDE_PUB_UPSTREAM_TIMEOUT": "30", "TRACKSIDE_PUB_LAST_CALL_INTERVAL": "0.3"},
    )
    url = up.url
    try:
        token = (tmp_path / "data" / "admin-token").read_text().strip()
        auth = {"X-Racetrack-Auth": token}
        api = httpx.Client(base_url=f"{url}/lifecycle/api/v1", headers=auth, timeout=30)
        assert httpx.get(f"{url}/lifecycle/live").json()["service"] == "lifecycle"
        assert "gateway: " in up.output()

        adder = make_repo(
            tmp_path / "adder", {"entrypoint.py": (SAMPLE_JOBS / "adder" / "entrypoint.py").read_text()}
        )
        chain = make_repo(
            tmp_path / "chain", {"entrypoint.py": (SAMPLE_JOBS / "chain" / "entrypoint.py").read_text()}
        )

        def deploy(name: str, repo: Path, **extra: Any) -> dict[str, Any]:
            r = api.post("/deploy", json={"manifest": manifest(name, repo, **extra)})
            assert r.status_code == 202, r.text
            deadline = time.monotonic() + 120
            while (body := api.get(f"/deploy/{r.json()['id']}").json())["status"] == "in_progress":
                assert time.monotonic() < deadline, body
                time.sleep(0.1)
            return dict(body)

        done = deploy("adder", adder, runtime_env={"LOG_CALLER_NAME": "true"})
        assert done["status"] == "done", done
        assert done["job"]["pub_url"].startswith(f"{url}/pub/job/")
        assert api.get("/job/adder/0.0.1").json()["last_call_time"] is None  # nobody called it yet

        # sample-jobs/chain's input example calls adder: without the grant its deploy fails, saying why
        refused = deploy("chain", chain)
        assert refused["status"] == "failed", refused
        assert "403" in refused["error"] and "Job family chain" in refused["error"], refused["error"]
        assert api.post("/families/chain/can-call/adder").status_code in (200, 201)
        done = deploy("chain", chain)
        assert done["status"] == "done", done

        r = httpx.post(f"{url}/pub/job/adder/latest/api/v1/perform", json={"numbers": [40, 2]}, headers=auth)
        assert r.status_code == 200 and r.json() == 42, r.text
        deadline = time.monotonic() + 10  # the gateway reports last calls in batches
        while api.get("/job/adder/0.0.1").json()["last_call_time"] is None:
            assert time.monotonic() < deadline, "the call was not recorded as the job's last call"
            time.sleep(0.1)

        chained = f"{url}/pub/job/chain/0.0.1/api/v1/perform"
        r = httpx.post(
            chained,
            json={"numbers": [40, 2], "factor": 2},
            headers={**auth, "X-Request-Tracing-Id": "chain-trace-1"},
            timeout=30,
        )
        assert r.status_code == 200 and r.json() == {"sum": 42.0, "scaled": 84.0}, r.text
        assert r.headers["x-request-tracing-id"] == "chain-trace-1"
        deadline = time.monotonic() + 10
        while True:
            logs = api.get("/job/adder/0.0.1/logs", params={"tail": 200}).json()["logs"]
            line = next((x for x in logs.splitlines() if "chain-trace-1" in x), None)
            if line is not None and "Job family chain" in line:
                break
            assert time.monotonic() < deadline, logs
            time.sleep(0.1)

        # the grant taken back: chain's call to adder is refused (the job answers 500 naming the 403)
        assert api.delete("/families/chain/can-call/adder").status_code == 200
        r = httpx.post(chained, json={"numbers": [1]}, headers=auth, timeout=30)
        assert r.status_code == 500 and "403" in r.text and "Job family chain" in r.text, r.text

        # async calls are served by the same `trackside up`
        started = httpx.post(
            f"{url}/pub/async/new/job/adder/latest/api/v1/perform",
            json={"numbers": [1, 2]},
            headers=auth,
            timeout=30,
        )
        assert started.status_code == 201, started.text
        task = started.json()["task_id"]
        polled = httpx.get(
            f"{url}/pub/async/task/{task}/poll", params={"timeout": 20}, headers=auth, timeout=30
        )
        assert polled.status_code == 200 and polled.json() == 3, polled.text
        assert httpx.get(f"{url}/pub/async/task/{task}/status", headers=auth).json()["status"] == "done"

        metrics = httpx.get(f"{url}/pub/metrics").text
        assert 'pub_requests_total{job="adder",status="2xx",version="0.0.1"}' in metrics
        assert 'pub_requests_total{job="chain",status="2xx",version="0.0.1"}' in metrics
        api.close()
    finally:
        assert up.stop() in (0, -signal.SIGTERM), up.output()
