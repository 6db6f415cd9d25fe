"""`GET /dashboard/live`, the dashboard's liveness probe: `trackside serve dashboard` answers it at
once while its lifecycle is unreachable (nothing listening) or hung (connects, never answers), so a
lifecycle outage does not get the dashboard restarted; and every probe the dashboard's Deployment
names answers within the probe's own timeout then."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import REPO, free_port
from tests.lifecycle.platform import ServedComponent

DASHBOARD_YAML = REPO / "kustomize" / "base" / "dashboard.yaml"
PROBES = ("startupProbe", "livenessProbe", "readinessProbe")


class Dashboard(ServedComponent):
    lifecycle = ""  # how its lifecycle is unusable: "refused" or "hung"


def dashboard_container() -> dict[str, Any]:
    for document in yaml.safe_load_all(DASHBOARD_YAML.read_text()):
        if document and document["kind"] == "Deployment" and document["metadata"]["name"] == "dashboard":
            (container,) = document["spec"]["template"]["spec"]["containers"]
            return dict(container)
    raise AssertionError(f"no dashboard Deployment in {DASHBOARD_YAML}")


@pytest.fixture(scope="module", params=["refused", "hung"])
def dashboard(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Dashboard]:
    """`trackside serve dashboard` whose TRACKSIDE_LIFECYCLE_URL leads nowhere useful."""
    root = tmp_path_factory.mktemp(f"dashboard-live-{request.param}")
    hung: socket.socket | None = None
    if request.param == "hung":
        # accepts connections (the kernel does) and never reads or answers a request
        hung = socket.socket()
        hung.bind(("127.0.0.1", 0))
        hung.listen(64)
        port = int(hung.getsockname()[1])
    else:
        port = free_port()  # closed again: nothing listens there
    served = Dashboard(
        "dashboard", root / "dashboard.log", {"TRACKSIDE_LIFECYCLE_URL": f"http://127.0.0.1:{port}"}
    )
    served.lifecycle = request.param
    try:
        yield served
    finally:
        served.stop()
        if hung is not None:
            hung.close()


def test_live_answers_ok_at_once_without_the_lifecycle(dashboard: Dashboard) -> None:
    for cookies in ({}, {"X-Racetrack-Auth": "a session the lifecycle would have to check"}):
        started = time.monotonic()
        r = httpx.get(dashboard.url + "/dashboard/live", cookies=cookies, timeout=5)
        assert r.status_code == 200, r.text
        assert r.json() == {"status": "ok"}
        assert r.headers["content-type"] == "application/json"
        assert time.monotonic() - started < 1
    assert httpx.head(dashboard.url + "/dashboard/live", timeout=5).status_code == 200
    assert httpx.post(dashboard.url + "/dashboard/live", timeout=5).status_code == 405


def test_a_page_that_needs_the_lifecycle_does_not_answer(dashboard: Dashboard) -> None:
    """What the probe must not depend on: a signed-in page asks the lifecycle and fails (503), or
    gets no answer within a probe's timeout from a hung lifecycle."""
    page = dashboard.url + "/dashboard/jobs"
    cookies = {"X-Racetrack-Auth": "some token"}
    if dashboard.lifecycle == "hung":
        with pytest.raises(httpx.ReadTimeout):
            httpx.get(page, cookies=cookies, timeout=2)
        return
    r = httpx.get(page, cookies=cookies, timeout=10)
    assert r.status_code == 503, r.text
    assert "cannot be reached" in r.text


def test_every_probe_of_the_deployment_answers_within_its_timeout(dashboard: Dashboard) -> None:
    container = dashboard_container()
    assert container["livenessProbe"]["httpGet"]["path"] == "/dashboard/live"
    for probe in PROBES:
        spec = container[probe]
        path = spec["httpGet"]["path"]
        r = httpx.get(dashboard.url + path, timeout=spec.get("timeoutSeconds", 1))  # Kubernetes' default: 1 s
        assert r.status_code == 200, f"{probe} {path}: {r.status_code} {r.text[:200]}"
