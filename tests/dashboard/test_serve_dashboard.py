"""`trackside serve dashboard`: the dashboard alone, a client of a lifecycle over HTTP
(TRACKSIDE_LIFECYCLE_URL), here the one of a real `trackside up` with a deployed job. What a
browser does is done with httpx: the pages, the sign-in cookie, the CSRF tokens, the event
streams passed through with the user's token."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import SAMPLE_JOBS, free_port
from tests.gitservers import file_url, make_repo
from tests.lifecycle.platform import ServedComponent, TracksideUp, job_manifest


def signed_in(url: str, token: str) -> httpx.Client:
    client = httpx.Client(base_url=url, timeout=30)
    form = client.get("/dashboard/sign-in").text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form)
    assert csrf
    r = client.post(
        "/dashboard/sign-in", data={"csrf_token": csrf.group(1), "token": token, "next": "/dashboard/jobs"}
    )
    assert r.status_code == 303 and r.headers["location"] == "/dashboard/jobs", r.text
    return client


@dataclass
class Arrangement:
    up: TracksideUp
    dashboard: ServedComponent


@pytest.fixture(scope="module")
def arrangement(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Arrangement]:
    root = tmp_path_factory.mktemp("serve-dashboard")
    up = TracksideUp(root / "data", root / "up.log")
    dashboard: ServedComponent | None = None
    try:
        repo = make_repo(
            root / "adder", {"entrypoint.py": (SAMPLE_JOBS / "adder" / "entrypoint.py").read_text()}
        )
        assert up.wait(up.deploy(job_manifest("adder", file_url(repo))))["status"] == "done"
        dashboard = ServedComponent(
            "dashboard",
            root / "dashboard.log",
            {"TRACKSIDE_LIFECYCLE_URL": up.url, "TRACKSIDE_DASHBOARD_SECRET": "a shared secret for replicas"},
        )
        yield Arrangement(up, dashboard)
    finally:
        if dashboard is not None:
            dashboard.stop()
        up.stop()


def test_the_dashboard_alone_shows_the_lifecycle_s_jobs(arrangement: Arrangement) -> None:
    dashboard, up = arrangement.dashboard, arrangement.up
    assert f"lifecycle at {up.url}" in dashboard.output()
    assert httpx.get(dashboard.url + "/").headers["location"] == "/dashboard/jobs"
    with contextlib.closing(signed_in(dashboard.url, up.token)) as client:
        page = client.get("/dashboard/jobs")
        assert page.status_code == 200
        assert 'data-job="adder/0.0.1"' in page.text
        # the gateway is another origin here: the links are its absolute addresses
        assert f'href="{up.url}/pub/job/adder/0.0.1/docs"' in page.text
        job = client.get("/dashboard/jobs/adder/0.0.1")
        assert job.status_code == 200 and "name</span>: <span" in job.text
        assert re.search(r"page;dur=[0-9.]+", job.headers["Server-Timing"])

        # event streams come through, with the user's token
        with client.stream("GET", "/dashboard/jobs/events") as events:
            assert events.status_code == 200
            assert events.headers["content-type"].startswith("text/event-stream")
            lines = events.iter_lines()
            assert next(lines) == "event: snapshot"
            assert '["adder","0.0.1","running"' in next(lines)
        with client.stream("GET", "/dashboard/jobs/adder/0.0.1/logs/stream?tail=5") as log:
            lines = log.iter_lines()
            assert next(lines).startswith(": log of adder 0.0.1")
            assert any(line.startswith("data: ") for _, line in zip(range(10), lines, strict=False))

    # without a session: no stream, and pages send the browser to sign in
    r = httpx.get(dashboard.url + "/dashboard/jobs/events")
    assert r.status_code == 303 and r.headers["location"].startswith("/dashboard/sign-in?next=")


def test_a_shared_secret_makes_forms_valid_across_replicas(arrangement: Arrangement, tmp_path: Path) -> None:
    """Two dashboard processes with one TRACKSIDE_DASHBOARD_SECRET accept each other's forms."""
    up = arrangement.up
    other = ServedComponent(
        "dashboard",
        tmp_path / "other.log",
        {"TRACKSIDE_LIFECYCLE_URL": up.url, "TRACKSIDE_DASHBOARD_SECRET": "a shared secret for replicas"},
    )
    try:
        with contextlib.closing(signed_in(arrangement.dashboard.url, up.token)) as client:
            profile = client.get("/dashboard/profile").text
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', profile)
            assert csrf
            session = client.cookies["X-Racetrack-Auth"]
        with httpx.Client(base_url=other.url, cookies={"X-Racetrack-Auth": session}) as replica:
            r = replica.post("/dashboard/profile/token", data={"csrf_token": csrf.group(1)})
            assert r.status_code == 200 and "trackside login tst_" in r.text
    finally:
        other.stop()


def test_an_unreachable_lifecycle_is_a_page_saying_so(tmp_path: Path) -> None:
    closed = free_port()
    dashboard = ServedComponent(
        "dashboard", tmp_path / "dashboard.log", {"TRACKSIDE_LIFECYCLE_URL": f"http://127.0.0.1:{closed}"}
    )
    try:
        with httpx.Client(base_url=dashboard.url) as client:
            form = client.get("/dashboard/sign-in").text
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', form)
            assert csrf
            r = client.post(
                "/dashboard/sign-in",
                data={"csrf_token": csrf.group(1), "username": "someone", "password": "x" * 8},
            )
            assert r.status_code == 503
            assert f"the lifecycle (http://127.0.0.1:{closed}) cannot be reached" in r.text
            assert "Traceback" not in r.text
        with httpx.Client(base_url=dashboard.url, cookies={"X-Racetrack-Auth": "tst_whatever"}) as client:
            r = client.get("/dashboard/jobs")
            assert r.status_code == 503 and "cannot be reached" in r.text
    finally:
        dashboard.stop()


def test_the_lifecycle_url_is_required(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "TRACKSIDE_LIFECYCLE_URL"}
    done = subprocess.run(
        [sys.executable, "-m", "trackside", "serve", "dashboard", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert (
        "TRACKSIDE_LIFECYCLE_URL is not set (e.g. TRACKSIDE_LIFECYCLE_URL=http://127.0.0.1:7200)"
        in done.stderr
    )
    done = subprocess.run(
        [sys.executable, "-m", "trackside", "serve", "dashboard", "--port", str(free_port())],
        env={**env, "TRACKSIDE_LIFECYCLE_URL": "http://127.0.0.1:1", "TRACKSIDE_DASHBOARD_SECRET": "short"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "TRACKSIDE_DASHBOARD_SECRET must be at least 16 characters" in done.stderr
