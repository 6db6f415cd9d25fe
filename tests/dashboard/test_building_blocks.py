"""The dashboard's parts that need no platform: the in-process transport to the lifecycle, the
lifecycle client's errors, the jobs list, the manifest highlighting, times, CSRF tokens and a
deployment's phases."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import httpx
import pytest

from dashboard.asgi_transport import InProcessTransport
from dashboard.csrf import CsrfGuard
from dashboard.job_list import build, version_key
from dashboard.lifecycle_api import IN_PROCESS_BASE, LifecycleAPI, LifecycleError
from dashboard.pages.deployments import PHASES, parse_manifest_text, phase_view
from dashboard.rendering import ago, badge, duration, when
from dashboard.yaml_highlight import highlight_yaml
from tests.conftest import free_port

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


# ---- the in-process transport -------------------------------------------------------------------


def test_the_in_process_transport_streams_and_tells_the_app_the_client_left() -> None:
    seen: dict[str, Any] = {}

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen["path"], seen["query"] = scope["path"], scope["query_string"]
        seen["auth"] = dict(scope["headers"]).get(b"x-racetrack-auth")
        seen["body"] = (await receive())["body"]
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        for n in range(3):
            await send({"type": "http.response.body", "body": f"data: {n}\n\n".encode(), "more_body": True})
        seen["disconnect"] = (await receive())["type"]  # blocks until the client goes

    async def scenario() -> list[bytes]:
        async with httpx.AsyncClient(transport=InProcessTransport(app), base_url=IN_PROCESS_BASE) as client:
            request = client.build_request(
                "POST", "/a%20b/c", params={"x": "1"}, headers={"X-Racetrack-Auth": "t"}, content=b"hi"
            )
            response = await client.send(request, stream=True)
            chunks = []
            async for chunk in response.aiter_raw():
                chunks.append(chunk)
                if len(chunks) == 3:  # the stream never ends by itself: the body came piece by piece
                    break
            await response.aclose()
            return chunks

    chunks = asyncio.run(asyncio.wait_for(scenario(), 10))
    assert chunks == [b"data: 0\n\n", b"data: 1\n\n", b"data: 2\n\n"]
    assert seen == {
        "path": "/a b/c",
        "query": b"x=1",
        "auth": b"t",
        "body": b"hi",
        "disconnect": "http.disconnect",
    }


def test_an_app_that_fails_before_answering_is_a_transport_error() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("boom")

    async def scenario() -> None:
        async with httpx.AsyncClient(transport=InProcessTransport(app), base_url=IN_PROCESS_BASE) as client:
            await client.get("/")

    with pytest.raises(httpx.RemoteProtocolError, match="boom"):
        asyncio.run(scenario())


# ---- the lifecycle client -----------------------------------------------------------------------


def _answering(status: int, body: bytes, content_type: bytes = b"application/json") -> Any:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": status, "headers": [(b"content-type", content_type)]}
        )
        await send({"type": "http.response.body", "body": body})

    return app


def test_the_lifecycle_s_refusals_become_errors_with_its_message() -> None:
    refusal = {
        "error": "invalid request: name: required",
        "type": "InvalidRequest",
        "errors": [{"field": "name", "message": "required"}],
    }

    async def call(app: Any) -> Any:
        api = LifecycleAPI.in_process(app)
        try:
            return await api.get("/jobs/overview", "tst_x", empty="", none=None)
        finally:
            await api.aclose()

    with pytest.raises(LifecycleError) as refused:
        asyncio.run(call(_answering(400, json.dumps(refusal).encode())))
    assert (refused.value.status, refused.value.message, refused.value.type) == (
        400,
        refusal["error"],
        "InvalidRequest",
    )
    assert refused.value.errors == [{"field": "name", "message": "required"}]
    with pytest.raises(LifecycleError) as crashed:
        asyncio.run(call(_answering(500, b"<html>oops</html>", b"text/html")))
    assert (
        crashed.value.status == 500
        and crashed.value.message == "the lifecycle answered 500: <html>oops</html>"
    )
    assert asyncio.run(call(_answering(200, b'{"jobs": []}'))) == {"jobs": []}


def test_an_unreachable_lifecycle_is_a_503_naming_it() -> None:
    url = f"http://127.0.0.1:{free_port()}"

    async def call() -> None:
        api = LifecycleAPI.over_http(url + "/lifecycle")
        try:
            await api.get("/users/me", "tst_x")
        finally:
            await api.aclose()

    with pytest.raises(LifecycleError) as error:
        asyncio.run(call())
    assert error.value.status == 503
    assert error.value.message == f"the lifecycle ({url}) cannot be reached: ConnectError"


# ---- the jobs list ------------------------------------------------------------------------------


def _job(name: str, version: str, status: str = "running", **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "version": version,
        "status": status,
        "error": None,
        "owner_email": f"{name}@example.com",
        "deployed_by": "User admin",
        "replicas": 1,
        "update_time": 1000.0,
        "last_call_time": None,
        "pub_url": f"http://h:7200/pub/job/{name}/{version}",
        "latest": False,
        "webview": False,
        **extra,
    }


def test_versions_sort_as_semantic_versions() -> None:
    ordered = ["0.9.0", "1.0.0-rc.1", "1.0.0-rc.2", "1.0.0", "1.2.0", "1.10.0", "10.0.0"]
    assert sorted(reversed(ordered), key=version_key) == ordered


def test_the_jobs_list_groups_filters_and_sorts() -> None:
    jobs = [
        _job("beta", "1.9.0"),
        _job("alpha", "1.0.0", "error", error="it <crashed>"),
        _job("beta", "1.10.0", last_call_time=990.0),
        _job("gamma", "0.1.0", "stopped", update_time=1090.0),
    ]
    listing = build(jobs, now=1100.0, link=lambda url: url.removeprefix("http://h:7200"))
    assert [(f.name, [r.version for r in f.versions]) for f in listing.groups] == [
        ("alpha", ["1.0.0"]),
        ("beta", ["1.10.0", "1.9.0"]),
        ("gamma", ["0.1.0"]),
    ]
    beta_new, beta_old = listing.groups[1].versions
    assert not beta_new.repeat and beta_old.repeat  # the family's name is shown once
    assert beta_new.last_call == "1 min ago" and beta_old.last_call == "never"
    assert beta_new.gateway == "/pub/job/beta/1.10.0" and listing.groups[2].versions[0].gateway is None
    alpha = listing.groups[0].versions[0]
    assert (
        alpha.badge
        == '<span class="badge badge-bad" data-status="error" title="it &lt;crashed&gt;">error</span>'
    )
    assert (listing.total, listing.shown, listing.families) == (4, 4, 3)
    assert listing.by_status == {"running": 2, "error": 1, "stopped": 1}

    assert [r.name for f in build(jobs, "GAMMA", now=0).groups for r in f.versions] == ["gamma"]
    assert [r.version for f in build(jobs, "beta 1.9", now=0).groups for r in f.versions] == ["1.9.0"]
    assert build(jobs, status="lost", now=0).shown == 0
    by_status = build(jobs, sort="status", now=0).groups
    assert [f.name for f in by_status] == [""]
    assert [r.status for r in by_status[0].versions] == ["error", "running", "running", "stopped"]
    recent = [r.name for r in build(jobs, sort="updated", now=0).groups[0].versions]
    assert recent[0] == "gamma"  # newest first by default
    assert [f.name for f in build(jobs, sort="name", order="desc", now=0).groups] == [
        "gamma",
        "beta",
        "alpha",
    ]


# ---- what pages print ---------------------------------------------------------------------------


def test_manifests_are_highlighted_and_escaped() -> None:
    text = "name: adder  # the name\nversion: 1.0.0\nreplicas: 2\nflag: true\nlabels:\n  team: '<b>#1</b>'\nlist:\n- a\n"
    html = str(highlight_yaml(text))
    assert (
        '<span class="y-key">name</span>: <span class="y-str">adder</span>  <span class="y-comment"># the name</span>'
        in html
    )
    assert '<span class="y-key">replicas</span>: <span class="y-num">2</span>' in html
    assert '<span class="y-lit">true</span>' in html
    assert "&#39;&lt;b&gt;#1&lt;/b&gt;&#39;" in html and "<b>" not in html  # a # inside quotes is no comment
    assert '<span class="y-dash">-</span> <span class="y-str">a</span>' in html
    assert (
        str(highlight_yaml("<script>alert(1)</script>"))
        == '<span class="y-str">&lt;script&gt;alert(1)&lt;/script&gt;</span>'
    )


def test_times_and_durations_read_naturally() -> None:
    assert ago(None) == "never"
    assert [ago(1000 - s, now=1000) for s in (0, 5, 125, 7200, 86400, 3 * 86400)] == [
        "just now",
        "5 s ago",
        "2 min ago",
        "2 h ago",
        "1 day ago",
        "3 days ago",
    ]
    assert [duration(s) for s in (None, 0.042, 1.5, 12.34, 245, 7380)] == [
        "—",
        "42 ms",
        "1.50 s",
        "12.3 s",
        "4 min 05 s",
        "2 h 03 min",
    ]
    assert (
        when(0) == "1970-01-01 00:00:00 UTC"
        and when("2026-01-02T03:04:05+00:00") == "2026-01-02 03:04:05 UTC"
    )
    assert (
        badge("in_progress") == '<span class="badge badge-busy" data-status="in_progress">in progress</span>'
    )


def test_csrf_tokens_are_bound_to_one_session_and_one_purpose() -> None:
    guard = CsrfGuard(b"k" * 32)
    token = guard.token("session-a")
    assert guard.valid(token, "session-a")
    assert not guard.valid(token, "session-b")
    assert not guard.valid(token, "session-a", "sign-in")
    assert not guard.valid("", "session-a") and not guard.valid(token, None)
    assert not CsrfGuard(b"other key" * 4).valid(token, "session-a")


def test_a_deployment_s_phases_with_states_and_durations() -> None:
    in_flight = {
        "status": "in_progress",
        "finish_time": None,
        "phases": [
            {"name": PHASES[0], "started_at": "2026-01-01T00:00:00+00:00"},
            {"name": PHASES[1], "started_at": "2026-01-01T00:00:01.5+00:00"},
        ],
    }
    start = 1767225600.0  # 2026-01-01T00:00:00Z
    view = phase_view(in_flight, now=start + 4)
    assert [(p["name"], p["state"], p["duration_s"]) for p in view] == [
        (PHASES[0], "done", 1.5),
        (PHASES[1], "current", 2.5),
        *((name, "waiting", None) for name in PHASES[2:]),
    ]
    failed = {**in_flight, "status": "failed", "finish_time": start + 3}
    assert phase_view(failed, now=start + 100)[1] == {
        "name": PHASES[1],
        "state": "failed",
        "started_at": "2026-01-01T00:00:01.5+00:00",
        "duration_s": 1.5,
    }


def test_a_pasted_manifest_must_be_a_yaml_mapping() -> None:
    assert parse_manifest_text("name: adder\nversion: 1.0.0\n") == {"name": "adder", "version": "1.0.0"}
    with pytest.raises(
        ValueError, match=r"not valid YAML \(line 2, column 7\): mapping values are not allowed"
    ):
        parse_manifest_text("name: a\nbad: x: y\n")
    with pytest.raises(ValueError, match="must be a YAML mapping"):
        parse_manifest_text("- a\n- b\n")
