"""The lifecycle API the dashboard reads beyond Racetrack's: the job overview and its changes,
deployment history with phase durations, a job's metrics summary, its public endpoints, redeploy,
`/users/me` and `/users/logout`.

One real control plane behind uvicorn on a free port for the module, with real deployments (a
file:// git repository and an uploaded directory).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from lifecycle.api.app import create_app
from lifecycle.api.job_metrics import quantile
from lifecycle.control_plane import ControlPlane
from lifecycle.store import jobs as job_store
from lifecycle.store.models import JobStatus
from tests.conftest import SAMPLE_JOBS
from tests.gitservers import commit_files, file_url, make_repo
from tests.lifecycle.platform import lifecycle_config, store_only_job
from tests.lifecycle.test_streams import EventReader
from tests.served_app import served
from trackside.build_context import pack_directory

API = "/api/v1"
PASSWORD = "correct horse battery"
ADDER = (SAMPLE_JOBS / "adder" / "entrypoint.py").read_text()
WEBVIEW = """
class Page:
    def perform(self) -> str:
        return "ok"

    def webview_app(self, base_url: str):
        async def app(scope, receive, send):
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"webview"})
        return app
"""
_names = itertools.count(1)


def manifest(
    name: str, remote: str = "https://github.com/trackside/trackside", **extra: Any
) -> dict[str, Any]:
    return {
        "name": name,
        "owner_email": "owner@example.com",
        "jobtype": "python3:latest",
        "version": "0.0.1",
        "git": {"remote": remote},
        "jobtype_extra": {"entrypoint_path": "entrypoint.py"},
        **extra,
    }


class Lifecycle:
    def __init__(self, plane: ControlPlane, base_url: str, token: str) -> None:
        self.plane = plane
        self.base_url = base_url
        self.token = token
        self.client = httpx.Client(base_url=base_url + API, timeout=30, headers={"X-Racetrack-Auth": token})

    def as_(self, token: str | None) -> httpx.Client:
        headers = {} if token is None else {"X-Racetrack-Auth": token}
        return httpx.Client(base_url=self.base_url + API, timeout=30, headers=headers)

    def ok(self, method: str, path: str, **kwargs: Any) -> Any:
        r = self.client.request(method, path, **kwargs)
        assert r.status_code in (200, 201, 202), r.text
        return r.json()

    def user(self, read_family: str | None = None, defaults: bool = True) -> tuple[str, str]:
        """A new user and a login token of it; `read_family`: read_job on that family only."""
        name = f"dashuser{next(_names)}"
        self.ok("POST", "/users", json={"username": name, "password": PASSWORD})
        if not defaults or read_family is not None:
            for p in self.ok("GET", "/permissions", params={"subject_type": "user", "subject_name": name}):
                self.ok("DELETE", f"/permissions/{p['id']}")
        if read_family is not None:
            self.ok(
                "POST",
                "/permissions",
                json={
                    "subject_type": "user",
                    "subject_name": name,
                    "scope": "read_job",
                    "job_family": read_family,
                },
            )
        token = self.ok("POST", "/users/login", json={"username": name, "password": PASSWORD})["token"]
        return name, token

    def deploy(self, body: dict[str, Any], **extra: Any) -> dict[str, Any]:
        deployment_id = self.ok("POST", "/deploy", json={"manifest": body, **extra})["id"]
        return self.wait(deployment_id)

    def wait(self, deployment_id: str) -> dict[str, Any]:
        deadline = time.monotonic() + 180
        while (body := self.ok("GET", f"/deploy/{deployment_id}"))["status"] == "in_progress":
            assert time.monotonic() < deadline, body
            time.sleep(0.05)
        assert body["status"] == "done", body
        return dict(body)

    def store_job(self, name: str, version: str, status: JobStatus = JobStatus.STOPPED) -> None:
        """A version in the store only (no process), like the listing benchmark's."""
        store_only_job(self.plane, name, version, status)


@pytest.fixture(scope="module")
def lifecycle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lifecycle]:
    data = tmp_path_factory.mktemp("dashboard-api")
    plane = ControlPlane(lifecycle_config(data), pub_url="http://127.0.0.1:7200/pub")
    report = plane.start()
    assert report.admin_token
    with served(create_app(plane), timeout_graceful_shutdown=2) as url:
        lifecycle = Lifecycle(plane, url, report.admin_token)
        try:
            yield lifecycle
        finally:
            lifecycle.client.close()
            plane.stop()


@pytest.fixture(scope="module")
def adder_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_repo(tmp_path_factory.mktemp("repos") / "adder", {"entrypoint.py": ADDER})


@pytest.fixture(scope="module")
def adder(lifecycle: Lifecycle, adder_repo: Path) -> dict[str, Any]:
    """`dash-adder` 0.0.1 from git, with a public endpoint requested."""
    return lifecycle.deploy(
        manifest("dash-adder", file_url(adder_repo), public_endpoints=["/api/v1/perform"])
    )


# ---- the overview -------------------------------------------------------------------------------


def test_the_overview_shows_each_caller_what_it_may_read(lifecycle: Lifecycle, tmp_path: Path) -> None:
    lifecycle.store_job("ov-seen", "1.0.0")
    lifecycle.store_job("ov-seen", "1.1.0")
    lifecycle.store_job("ov-hidden", "1.0.0")
    webview_dir = tmp_path / "page"
    webview_dir.mkdir()
    (webview_dir / "entrypoint.py").write_text(WEBVIEW)
    context = pack_directory(webview_dir)
    lifecycle.deploy(manifest("ov-page"), build_context=context)

    body = lifecycle.ok("GET", "/jobs/overview")
    assert body["readable"] == "all" and body["pub_url"] == "http://127.0.0.1:7200/pub"
    jobs = {(j["name"], j["version"]): j for j in body["jobs"]}
    assert {("ov-seen", "1.0.0"), ("ov-seen", "1.1.0"), ("ov-hidden", "1.0.0"), ("ov-page", "0.0.1")} <= set(
        jobs
    )
    page = jobs[("ov-page", "0.0.1")]
    assert page["status"] == "running" and page["latest"] is True and page["webview"] is True
    assert page["pub_url"] == "http://127.0.0.1:7200/pub/job/ov-page/0.0.1"
    assert page["deployed_by"] == "User admin" and page["owner_email"] == "owner@example.com"
    assert page["replicas"] == 1 and page["last_call_time"] is None and page["update_time"] > 0
    one_family = lifecycle.ok("GET", "/jobs/overview", params={"name": "ov-seen"})["jobs"]
    assert [(j["name"], j["version"]) for j in one_family] == [("ov-seen", "1.0.0"), ("ov-seen", "1.1.0")]
    stopped = jobs[("ov-seen", "1.1.0")]
    assert stopped["status"] == "stopped" and stopped["latest"] is False and stopped["webview"] is False

    _, partial = lifecycle.user(read_family="ov-seen")
    with lifecycle.as_(partial) as client:
        body = client.get("/jobs/overview").json()
        assert body["readable"] == "some"
        assert {(j["name"], j["version"]) for j in body["jobs"]} == {
            ("ov-seen", "1.0.0"),
            ("ov-seen", "1.1.0"),
        }
        # Racetrack's listing shows the same
        assert {j["name"] for j in client.get("/job").json()} == {"ov-seen"}
    _, none = lifecycle.user(defaults=False)
    with lifecycle.as_(none) as client:
        assert client.get("/jobs/overview").json() == {
            "readable": "none",
            "pub_url": "http://127.0.0.1:7200/pub",
            "jobs": [],
        }
    with lifecycle.as_(None) as client:
        assert client.get("/jobs/overview").status_code == 401


def test_overview_events_send_a_snapshot_then_changes_the_caller_may_read(lifecycle: Lifecycle) -> None:
    lifecycle.store_job("ev-seen", "1.0.0")
    _, token = lifecycle.user(read_family="ev-seen")
    reader = EventReader(lifecycle.base_url, f"{API}/jobs/overview/events", {"X-Racetrack-Auth": token})
    assert reader.status == 200
    snapshot = reader.next()
    assert snapshot is not None and snapshot.event == "snapshot"
    assert snapshot.json() == {"jobs": [["ev-seen", "1.0.0", "stopped", None, None, 1]]}

    lifecycle.store_job("ev-hidden", "1.0.0")
    lifecycle.store_job("ev-seen", "2.0.0", JobStatus.STARTING)
    change = reader.until(lambda e: e.event == "change")[-1]
    assert change.json() == {"jobs": [["ev-seen", "2.0.0", "starting", None, None, 1]]}

    with lifecycle.plane.db.session() as session:
        job_store.set_job_status(session, "ev-seen", "2.0.0", JobStatus.ERROR, "it keeps failing")
    change = reader.until(lambda e: e.event == "change")[-1]
    assert change.json() == {"jobs": [["ev-seen", "2.0.0", "error", "it keeps failing", None, 1]]}

    with lifecycle.plane.db.session() as session:
        job_store.delete_job(session, "ev-seen", "1.0.0")
    removed = reader.until(lambda e: e.event == "removed")[-1]
    assert removed.json() == {"jobs": [["ev-seen", "1.0.0"]]}


# ---- deployments --------------------------------------------------------------------------------


def test_deployment_history_has_each_phase_with_its_duration(
    lifecycle: Lifecycle, adder: dict[str, Any]
) -> None:
    history = lifecycle.ok("GET", "/deployments", params={"job_name": "dash-adder", "job_version": "0.0.1"})
    assert [d["id"] for d in history][-1] == adder["id"]
    entry = next(d for d in history if d["id"] == adder["id"])
    assert entry["status"] == "done" and entry["deployed_by"] == "User admin" and entry["error"] is None
    names = [p["name"] for p in entry["phases"]]
    assert names[0] == "fetching the source code" and names[-1] == "done"
    assert all(p["duration_s"] is not None and p["duration_s"] >= 0 for p in entry["phases"])
    assert not any(p["current"] for p in entry["phases"])
    assert entry["finish_time"] >= entry["create_time"]
    # the phases lie within the deployment: they add up to at most its whole duration
    assert sum(p["duration_s"] for p in entry["phases"]) <= entry["duration_s"] + 0.01
    assert "build_log" not in entry

    assert (
        lifecycle.ok("GET", "/deployments", params={"job_name": "dash-adder", "job_version": "9.9.9"}) == []
    )
    _, other = lifecycle.user(read_family="someone-else")
    with lifecycle.as_(other) as client:
        assert all(d["job_name"] == "someone-else" for d in client.get("/deployments").json())
        assert client.get("/deployments", params={"job_name": "dash-adder"}).json() == []
    r = lifecycle.client.get("/deployments", params={"limit": 0})
    assert r.status_code == 400 and "limit" in r.json()["error"]


def test_deployment_events_follow_a_deployment_to_its_end(
    lifecycle: Lifecycle, adder: dict[str, Any], adder_repo: Path
) -> None:
    reader = EventReader(
        lifecycle.base_url,
        f"{API}/deployments/events?job_name=dash-adder",
        {"X-Racetrack-Auth": lifecycle.token},
    )
    assert reader.status == 200
    deployment_id = lifecycle.ok(
        "POST",
        "/deploy",
        # --no-cache rebuilds the environment: long enough to be seen in flight even when the
        # machine's uv cache would make the deploy finish between two polls of the stream
        json={
            "manifest": manifest("dash-adder", file_url(adder_repo), version="0.0.2"),
            "build_flags": ["--no-cache"],
        },
    )["id"]
    seen = reader.until(
        lambda e: e.json()["id"] == deployment_id and e.json()["status"] != "in_progress", 120
    )
    mine = [e.json() for e in seen if e.json()["id"] == deployment_id]
    assert {e.event for e in seen} == {"deployment"}
    assert mine[-1]["status"] == "done" and mine[-1]["phases"][-1]["name"] == "done"
    assert any(d["status"] == "in_progress" for d in mine)  # seen while in flight
    assert lifecycle.ok("DELETE", "/job/dash-adder/0.0.2")["deleted"] is True


# ---- one job ------------------------------------------------------------------------------------


def test_the_metrics_summary_is_read_from_the_job(lifecycle: Lifecycle, adder: dict[str, Any]) -> None:
    address = lifecycle.plane.runner.serving("dash-adder", "0.0.1")[0].address
    for numbers in ([1, 2], [3, 4], [5]):
        assert httpx.post(address + "/api/v1/perform", json={"numbers": numbers}).status_code == 200
    assert httpx.post(address + "/api/v1/perform", json={"numbers": "x"}).status_code == 422

    summary = lifecycle.ok("GET", "/job/dash-adder/latest/metrics-summary")
    assert summary["name"] == "dash-adder" and summary["version"] == "0.0.1"
    assert summary["replicas"] == 1 and summary["replicas_read"] == 1 and summary["errors"] == []
    # the deploy's own input-example check is a call too
    assert summary["calls"] >= 4 and summary["status_4xx"] == 1 and summary["status_5xx"] == 0
    assert summary["status_2xx"] == summary["calls"] - 1
    assert 0 < summary["latency_p50_ms"] <= summary["latency_p95_ms"]
    assert summary["in_flight"] == 0 and summary["cold_start_s"] > 0 and summary["last_call_time"] > 0
    perform = next(e for e in summary["endpoints"] if e["endpoint"] == "/api/v1/perform")
    assert perform["calls"] >= 4 and perform["status_4xx"] == 1
    assert sum(e["calls"] for e in summary["endpoints"]) == summary["calls"]

    _, outsider = lifecycle.user(read_family="someone-else")
    with lifecycle.as_(outsider) as client:
        r = client.get("/job/dash-adder/0.0.1/metrics-summary")
        assert r.status_code == 403 and "read_job" in r.json()["error"]
    assert lifecycle.client.get("/job/dash-adder/7.0.0/metrics-summary").status_code == 404


def test_public_endpoints_of_a_job_are_readable_by_its_readers(
    lifecycle: Lifecycle, adder: dict[str, Any]
) -> None:
    _, reader = lifecycle.user(read_family="dash-adder")
    with lifecycle.as_(reader) as client:
        [request] = client.get("/job/dash-adder/0.0.1/public-endpoints").json()
        assert request["endpoint"] == "/api/v1/perform" and request["status"] == "pending"
        assert client.post(f"/public-endpoints/{request['id']}/approve").status_code == 403
    lifecycle.ok("POST", f"/public-endpoints/{request['id']}/approve")
    with lifecycle.as_(reader) as client:
        [decided] = client.get("/job/dash-adder/latest/public-endpoints").json()
        assert decided["status"] == "approved" and decided["decided_by"] == "User admin"
    _, outsider = lifecycle.user(read_family="someone-else")
    with lifecycle.as_(outsider) as client:
        assert client.get("/job/dash-adder/0.0.1/public-endpoints").status_code == 403


def test_redeploy_fetches_the_source_again_with_the_stored_secrets(
    lifecycle: Lifecycle, tmp_path: Path
) -> None:
    repo = make_repo(
        tmp_path / "greeter",
        {
            "entrypoint.py": "import os\n\nclass Greeter:\n    def perform(self) -> str:\n"
            "        return 'hello ' + os.environ['SECRET_NAME']\n"
        },
    )
    lifecycle.deploy(
        manifest("dash-greeter", file_url(repo)), secret_vars={"runtime_env": {"SECRET_NAME": "ada"}}
    )

    def greeting() -> Any:
        address = lifecycle.plane.runner.serving("dash-greeter", "0.0.1")[0].address
        return httpx.post(address + "/api/v1/perform", json={}).json()

    assert greeting() == "hello ada"
    commit_files(
        repo,
        {
            "entrypoint.py": "import os\n\nclass Greeter:\n    def perform(self) -> str:\n"
            "        return 'goodbye ' + os.environ['SECRET_NAME']\n"
        },
    )
    r = lifecycle.client.post("/job/dash-greeter/latest/redeploy")
    assert r.status_code == 202, r.text
    done = lifecycle.wait(r.json()["id"])
    assert done["job"]["version"] == "0.0.1"
    assert greeting() == "goodbye ada"

    _, reader = lifecycle.user(read_family="dash-greeter")
    with lifecycle.as_(reader) as client:
        r = client.post("/job/dash-greeter/0.0.1/redeploy")
        assert r.status_code == 403 and "deploy_job" in r.json()["error"]
    assert lifecycle.client.post("/job/nobody-here/0.0.1/redeploy").status_code == 404


def test_a_version_from_an_uploaded_directory_cannot_be_redeployed(lifecycle: Lifecycle) -> None:
    context = pack_directory(SAMPLE_JOBS / "adder")
    lifecycle.deploy(manifest("dash-uploaded"), build_context=context)
    r = lifecycle.client.post("/job/dash-uploaded/0.0.1/redeploy")
    assert r.status_code == 409 and "uploaded directory" in r.json()["error"]


# ---- the caller ---------------------------------------------------------------------------------


def test_me_and_logout(lifecycle: Lifecycle) -> None:
    me = lifecycle.ok("GET", "/users/me")
    assert me["username"] == "admin" and me["is_admin"] and me["can_administer"]
    name, token = lifecycle.user()
    with lifecycle.as_(token) as client:
        me = client.get("/users/me").json()
        assert me["username"] == name and me["subject"] == f"User {name}" and me["subject_type"] == "user"
        assert me["is_admin"] is False and me["can_administer"] is False and me["token_id"] > 0
        assert client.post("/users/logout").json() == {"token_id": me["token_id"], "revoked": True}
        r = client.get("/users/me")
        assert r.status_code == 401 and "revoked" in r.json()["error"]
    event = lifecycle.ok("GET", "/audit", params={"action": "token.revoke", "actor": f"User {name}"})[
        "events"
    ]
    assert event and event[0]["details"]["token_id"] == me["token_id"]


# ---- latency estimate ----------------------------------------------------------------------------


def test_quantiles_from_cumulative_buckets() -> None:
    buckets = {0.001: 0.0, 0.01: 50.0, 0.1: 100.0, float("inf"): 100.0}
    assert quantile(0.5, buckets) == pytest.approx(0.01)
    assert quantile(0.75, buckets) == pytest.approx(0.055)
    assert quantile(0.25, buckets) == pytest.approx(0.001 + 0.009 * 0.5)
    assert quantile(0.5, {0.1: 0.0, float("inf"): 0.0}) is None
    assert quantile(0.99, {0.1: 1.0, float("inf"): 10.0}) == 0.1  # past the highest finite bound
