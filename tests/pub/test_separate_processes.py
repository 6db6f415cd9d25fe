"""The separate-process arrangement (as on Kubernetes): `trackside serve lifecycle` and `trackside
serve pub` as two real processes sharing one gateway credential. The gateway asks the lifecycle
over HTTP, caches its decisions, keeps async tasks in the lifecycle's database, and keeps serving
cached decisions while the lifecycle is down (uncached ones get 503 naming the problem)."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import SAMPLE_JOBS, free_port
from tests.gitservers import file_url, make_repo
from tests.lifecycle.platform import ServedComponent, job_manifest

PERFORM = "/api/v1/perform"


class Arrangement:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.data = tmp / "data"
        self.pub_port = free_port()
        self.gateway_token = "tst_" + secrets.token_hex(32)
        self.lifecycle: ServedComponent | None = None
        self.pub: ServedComponent | None = None

    def start_lifecycle(self) -> ServedComponent:
        env = {
            "TRACKSIDE_DATA_DIR": str(self.data),
            "TRACKSIDE_PUB_URL": f"http://127.0.0.1:{self.pub_port}/pub",
            "TRACKSIDE_GATEWAY_TOKEN": self.gateway_token,
            "TRACKSIDE_ALLOW_FILE_REMOTES": "true",
        }
        port = self.lifecycle.port if self.lifecycle is not None else None
        self.lifecycle = ServedComponent("lifecycle", self.tmp / "lifecycle.log", env, port)
        return self.lifecycle

    def start_pub(self) -> ServedComponent:
        assert self.lifecycle is not None
        env = {
            "TRACKSIDE_LIFECYCLE_URL": self.lifecycle.url,
            "TRACKSIDE_GATEWAY_TOKEN": self.gateway_token,
            "TRACKSIDE_PUB_AUTH_TTL": "30",  # long enough that the test's cached decisions stay fresh
            "TRACKSIDE_PUB_LAST_CALL_INTERVAL": "0.3",
        }
        self.pub = ServedComponent("pub", self.tmp / "pub.log", env, self.pub_port)
        return self.pub

    @property
    def admin(self) -> str:
        return (self.data / "admin-token").read_text().strip()

    def api(self, method: str, path: str, **kw: object) -> httpx.Response:
        assert self.lifecycle is not None
        url = f"{self.lifecycle.url}/lifecycle/api/v1{path}"
        return httpx.request(method, url, headers={"X-Racetrack-Auth": self.admin}, timeout=30, **kw)  # type: ignore[arg-type]

    def call(self, token: str | None, path: str = f"/pub/job/adder/latest{PERFORM}") -> httpx.Response:
        assert self.pub is not None
        headers = {"X-Racetrack-Auth": token} if token else {}
        return httpx.post(self.pub.url + path, json={"numbers": [40, 2]}, headers=headers, timeout=30)

    def esc_token(self, name: str, may_call: bool = True) -> str:
        assert self.api("POST", "/escs", json={"name": name}).status_code == 201
        if may_call:
            grant = {"subject_type": "esc", "subject_name": name, "scope": "call_job", "job_family": "adder"}
            assert self.api("POST", "/permissions", json=grant).status_code == 201
        r = self.api("POST", f"/escs/{name}/tokens", json={})
        assert r.status_code == 201, r.text
        return str(r.json()["token"])


@pytest.fixture(scope="module")
def arranged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Arrangement]:
    tmp = tmp_path_factory.mktemp("separate")
    arrangement = Arrangement(tmp)
    try:
        arrangement.start_lifecycle()
        arrangement.start_pub()
        repo = make_repo(
            tmp / "adder", {"entrypoint.py": (SAMPLE_JOBS / "adder" / "entrypoint.py").read_text()}
        )
        r = arrangement.api("POST", "/deploy", json={"manifest": job_manifest("adder", file_url(repo))})
        assert r.status_code == 202, r.text
        deadline = time.monotonic() + 120
        while (body := arrangement.api("GET", f"/deploy/{r.json()['id']}").json())["status"] == "in_progress":
            assert time.monotonic() < deadline, body
            time.sleep(0.1)
        assert body["status"] == "done", body
        assert body["job"]["pub_url"].startswith(f"http://127.0.0.1:{arrangement.pub_port}/pub/job/adder/")
        yield arrangement
    finally:
        for served in (arrangement.pub, arrangement.lifecycle):
            if served is not None:
                served.stop()


def test_the_gateway_serves_jobs_through_the_lifecycle_api(arranged: Arrangement) -> None:
    assert arranged.api("GET", "/job/adder/0.0.1").json()["last_call_time"] is None
    r = arranged.call(arranged.admin)
    assert r.status_code == 200 and r.json() == 42, r.text
    deadline = time.monotonic() + 10  # the gateway reports last calls in batches
    while arranged.api("GET", "/job/adder/0.0.1").json()["last_call_time"] is None:
        assert time.monotonic() < deadline, "the call was not recorded as the job's last call"
        time.sleep(0.1)
    assert arranged.call(None).status_code == 401
    nobody = arranged.esc_token("nobody", may_call=False)
    denied = arranged.call(nobody)
    assert denied.status_code == 403 and "ESC nobody" in denied.json()["error"], denied.text
    # the gateway API is for the gateway's credential (call_admin_api), not for any token
    assert arranged.lifecycle is not None
    question = {"token": nobody, "job_name": "adder", "job_version": "0.0.1", "endpoint": PERFORM}
    url = f"{arranged.lifecycle.url}/lifecycle/api/v1/gateway/authorize"
    as_nobody = httpx.post(url, json=question, headers={"X-Racetrack-Auth": nobody})
    assert as_nobody.status_code == 403, as_nobody.text
    as_gateway = httpx.post(url, json=question, headers={"X-Racetrack-Auth": arranged.gateway_token})
    assert as_gateway.status_code == 200 and as_gateway.json()["status"] == 403, as_gateway.text


def test_async_tasks_live_in_the_lifecycles_database(arranged: Arrangement) -> None:
    assert arranged.pub is not None
    token = arranged.esc_token("async-caller")
    headers = {"X-Racetrack-Auth": token, "Idempotency-Key": "separate-1"}
    url = f"{arranged.pub.url}/pub/async/new/job/adder/latest{PERFORM}"
    started = httpx.post(url, json={"numbers": [1, 2]}, headers=headers, timeout=30)
    assert started.status_code == 201, started.text
    task = started.json()["task_id"]
    again = httpx.post(url, json={"numbers": [1, 2]}, headers=headers, timeout=30)
    assert again.status_code == 200 and again.json()["task_id"] == task, again.text
    polled = httpx.get(
        f"{arranged.pub.url}/pub/async/task/{task}/poll",
        params={"timeout": 20},
        headers={"X-Racetrack-Auth": token},
        timeout=30,
    )
    assert polled.status_code == 200 and polled.json() == 3, polled.text
    other = httpx.get(
        f"{arranged.pub.url}/pub/async/task/{task}/status", headers={"X-Racetrack-Auth": arranged.admin}
    )
    assert other.status_code == 404  # another subject's task


def test_an_unreachable_lifecycle(arranged: Arrangement) -> None:
    assert arranged.pub is not None and arranged.lifecycle is not None
    cached = arranged.esc_token("cached-caller")
    uncached = arranged.esc_token("uncached-caller")
    assert arranged.call(cached).status_code == 200  # its decision is now cached by the gateway

    arranged.lifecycle.stop(signal.SIGKILL)  # gone at once; its job processes keep running
    for _ in range(3):
        r = arranged.call(cached)
        assert r.status_code == 200 and r.json() == 42, r.text
    refused = arranged.call(uncached)
    assert refused.status_code == 503, refused.text
    error = refused.json()["error"]
    assert "cannot check the call's authorisation" in error and "unreachable" in error, error
    assert refused.json()["requestId"] == refused.headers["x-request-tracing-id"]
    assert refused.headers["retry-after"]
    started = httpx.post(
        f"{arranged.pub.url}/pub/async/new/job/adder/latest{PERFORM}",
        json={"numbers": [1]},
        headers={"X-Racetrack-Auth": cached},
        timeout=30,
    )
    assert started.status_code == 503 and "unreachable" in started.json()["error"], started.text
    assert httpx.get(f"{arranged.pub.url}/pub/live").status_code == 200  # the gateway itself is fine
    metrics = httpx.get(f"{arranged.pub.url}/pub/metrics").text
    assert "pub_auth_cache_hits_total" in metrics

    # the lifecycle comes back (on the same port and data): uncached decisions work again
    arranged.start_lifecycle()
    deadline = time.monotonic() + 60
    while (r := arranged.call(uncached)).status_code != 200:
        assert r.status_code == 503, r.text  # not ready yet while the job restarts, never 401/403
        assert time.monotonic() < deadline, r.text
        time.sleep(0.3)
    assert r.json() == 42


def test_serve_refuses_a_missing_setting(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKSIDE_")}
    result = subprocess.run(
        [sys.executable, "-m", "trackside", "serve", "pub", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "TRACKSIDE_LIFECYCLE_URL is not set" in result.stderr, result
    result = subprocess.run(
        [sys.executable, "-m", "trackside", "serve", "lifecycle", "--port", str(free_port())],
        env={
            **env,
            "TRACKSIDE_DATA_DIR": str(tmp_path / "d"),
            "TRACKSIDE_PUB_URL": "http://x/pub",
            "TRACKSIDE_GATEWAY_TOKEN": "short",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "TRACKSIDE_GATEWAY_TOKEN must be 'tst_' followed by" in result.stderr, (
        result
    )


def test_the_cli_calls_jobs_through_the_gateway_the_lifecycle_names(
    arranged: Arrangement, tmp_path: Path
) -> None:
    # the lifecycle and the gateway listen on different ports: `trackside call` must ask the
    # lifecycle where the gateway is (GET /info external_pub_url), not assume `<remote>/pub`
    assert arranged.lifecycle is not None
    env = {
        **os.environ,
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "TRACKSIDE_TOKEN": arranged.admin,
        "TRACKSIDE_REMOTE": arranged.lifecycle.url,
    }
    called = subprocess.run(
        [sys.executable, "-m", "trackside", "call", "adder", '{"numbers": [40, 2]}'],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert called.returncode == 0 and float(called.stdout) == 42, called


def test_serve_lifecycle_names_a_bad_database_without_its_password(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKSIDE_")}
    base = {**env, "TRACKSIDE_DATA_DIR": str(tmp_path / "d"), "TRACKSIDE_PUB_URL": "http://127.0.0.1:1/pub"}
    command = [sys.executable, "-m", "trackside", "serve", "lifecycle", "--port", str(free_port())]
    down = f"postgresql://trackside:s3cret-pw@127.0.0.1:{free_port()}/trackside"
    result = subprocess.run(
        command, env={**base, "TRACKSIDE_DATABASE_URL": down}, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1, result
    assert "Error: cannot use the database at postgresql://trackside:***@127.0.0.1" in result.stderr, result
    assert "s3cret-pw" not in result.stdout + result.stderr and "Traceback" not in result.stderr
    result = subprocess.run(
        command,
        env={**base, "TRACKSIDE_DATABASE_URL": "not a url"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "TRACKSIDE_DATABASE_URL is not a database URL" in result.stderr, result
    result = subprocess.run(
        command, env={**base, "TRACKSIDE_SECRET_KEY": "short"}, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2 and "TRACKSIDE_SECRET_KEY" in result.stderr, result
    assert "Traceback" not in result.stderr
