"""Path parsing and normalisation, header rules, round-robin order, the gateway's settings and the
embedded registry's version choice: the gateway's pure parts."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pub.app import Gateway, GatewayConfig
from pub.balancer import RoundRobin
from pub.dispatch import PathDispatcher
from pub.headers import UnsafeHeader, scan, strip_auth_cookie
from pub.registry import CallDecision, JobTarget
from pub.routing import BadPath, parse_job_path
from trackside.embedded_registry import _choose


@pytest.mark.parametrize(
    ("raw", "name", "version", "rest", "endpoint"),
    [
        (b"/pub/job/adder/1.0.0/api/v1/perform", "adder", "1.0.0", b"/api/v1/perform", "/api/v1/perform"),
        (b"/pub/job/adder/latest", "adder", "latest", b"", "/"),
        (b"/pub/job/adder/1.x/", "adder", "1.x", b"/", "/"),
        (b"/pub/job/adder/*/api/v1/webview/", "adder", "*", b"/api/v1/webview/", "/api/v1/webview/"),
        (b"/pub/job/a/2.0.0-rc.1+b7/x", "a", "2.0.0-rc.1+b7", b"/x", "/x"),
        (b"/pub//job//adder//1.0.0//api///v1/", "adder", "1.0.0", b"/api/v1/", "/api/v1/"),
        (b"/pub/job/adder/1.0.0/files/a%20b%3Fc", "adder", "1.0.0", b"/files/a%20b%3Fc", "/files/a b?c"),
        (b"/pub/job/adder/1.0.0/.well-known/x", "adder", "1.0.0", b"/.well-known/x", "/.well-known/x"),
        (b"/pub/job/adder/1.0.0/a..b/c.", "adder", "1.0.0", b"/a..b/c.", "/a..b/c."),
    ],
)
def test_job_paths(raw: bytes, name: str, version: str, rest: bytes, endpoint: str) -> None:
    path = parse_job_path(raw)
    assert (path.name, path.version, path.rest, path.endpoint) == (name, version, rest, endpoint)


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"/pub/job/adder/1.0.0/../../other/1.0.0/x", 400),
        (b"/pub/job/adder/1.0.0/./x", 400),
        (b"/pub/job/adder/1.0.0/%2e%2E/x", 400),
        (b"/pub/job/adder/1.0.0/%2e/x", 400),
        (b"/pub/job/adder/1.0.0/a%2Fb", 400),
        (b"/pub/job/adder/1.0.0/a%2fb", 400),
        (b"/pub/job/adder/1.0.0/a%5Cb", 400),
        (b"/pub/job/adder/1.0.0/a\\b", 400),
        (b"/pub/job/adder/1.0.0/a%0d%0aX-Evil:%201", 400),
        (b"/pub/job/adder/1.0.0/a%00", 400),
        (b"/pub/job/adder/1.0.0/a\xc3\xa9", 400),
        (b"/pub/job/adder/1.0.0/a b", 400),
        (b"/pub/job/Adder/1.0.0/x", 404),
        (b"/pub/job/ad%64er/1.0.0/x", 404),
        (b"/pub/job/adder%2F1.0.0/x", 404),
        (b"/pub/job/../other/1.0.0/x", 404),
        (b"/pub/job/adder/../x", 404),
        (b"/pub/job/adder/%2e%2e/x", 404),
        (b"/pub/job/adder", 404),
        (b"/pub/job/", 404),
        (b"/pub/jobs/adder/1.0.0", 404),
        (b"/pub/job/-adder/1.0.0", 404),
    ],
)
def test_unsafe_or_foreign_paths_are_refused(raw: bytes, status: int) -> None:
    with pytest.raises(BadPath) as refused:
        parse_job_path(raw)
    assert refused.value.status == status


def test_queries_are_forwarded_as_sent_unless_unsafe() -> None:
    path = parse_job_path(b"/pub/job/adder/latest/x", b"a=%2F..%2F&b")
    assert path.upstream_target("1.2.0", b"a=%2F..%2F&b") == b"/pub/job/adder/1.2.0/x?a=%2F..%2F&b"
    assert path.upstream_target("1.2.0", b"") == b"/pub/job/adder/1.2.0/x"
    for query in (b"a=1\r\nX: y", b"a=1 b", b"a\x00"):
        with pytest.raises(BadPath):
            parse_job_path(b"/pub/job/adder/latest/x", query)


_SEGMENT = st.text(alphabet="abcxyz.%2fFeE5C0dD/\\:;@ -_~", max_size=12)


@given(st.lists(_SEGMENT, max_size=6))
def test_a_forwarded_target_never_leaves_its_job(segments: list[str]) -> None:
    raw = ("/pub/job/adder/1.0.0/" + "/".join(segments)).encode()
    try:
        path = parse_job_path(raw)
    except BadPath:
        return
    target = path.upstream_target("1.0.0", b"")
    assert target.startswith(b"/pub/job/adder/1.0.0")
    # whatever the job's server decodes, no segment climbs out and no slash is smuggled in
    decoded = path.endpoint.split("/")
    assert ".." not in decoded and "." not in decoded
    assert b"//" not in target and b"%2f" not in target.lower() and b"%5c" not in target.lower()


def test_headers_token_cookie_tracing_and_hop_by_hop() -> None:
    found = scan(
        [
            (b"host", b"gateway"),
            (b"x-racetrack-auth", b"tok-header"),
            (b"cookie", b"a=1; X-Racetrack-Auth=tok-cookie; b=2"),
            (b"x-caller-name", b"User admin"),
            (b"connection", b"keep-alive, X-Private"),
            (b"x-private", b"secret"),
            (b"te", b"trailers"),
            (b"transfer-encoding", b"chunked"),
            (b"x-request-tracing-id", b"abc-123"),
            (b"x-other", b"kept"),
        ]
    )
    assert found.token == "tok-header" and found.tracing_id == "abc-123" and found.chunked
    assert found.kept == [(b"cookie", b"a=1; b=2"), (b"x-other", b"kept")]
    lines = found.lines("ESC billing")
    assert lines == (
        b"cookie: a=1; b=2\r\nx-other: kept\r\nx-request-tracing-id: abc-123\r\nx-caller-name: ESC billing\r\n"
    )

    by_cookie = scan([(b"cookie", b"x-racetrack-auth=tok; theme=dark")])
    assert by_cookie.token == "tok" and by_cookie.kept == [(b"cookie", b"theme=dark")]
    assert len(by_cookie.tracing_id) == 36 and by_cookie.tracing_id[14] == "4"
    weird = scan([(b"x-request-tracing-id", b"has space")])
    assert weird.tracing_id != "has space"
    for bad in (b"a\rb", b"a\nb", b"a\x00b", b"a\r\nX-Injected: 1"):
        with pytest.raises(UnsafeHeader):
            scan([(b"x-any", bad)]).lines(None)
        with pytest.raises(UnsafeHeader):
            scan([(b"x-any", bad)]).pairs(None)
    with pytest.raises(UnsafeHeader):
        scan([(b"x-a\nb", b"1")]).lines(None)
    with pytest.raises(UnsafeHeader):
        scan([]).lines("User evil\r\nX-Injected: 1")


def test_auth_cookie_stripping() -> None:
    assert strip_auth_cookie(b"a=1") == (b"a=1", None)
    assert strip_auth_cookie(b'X-Racetrack-Auth="t1"') == (b"", "t1")
    assert strip_auth_cookie(b"a=1;x-racetrack-auth=t1;X-RACETRACK-AUTH=t2; c=3") == (b"a=1; c=3", "t1")
    assert strip_auth_cookie(b"my-racetrack-auth=keep") == (b"my-racetrack-auth=keep", None)


def test_round_robin_order() -> None:
    rr = RoundRobin()
    replicas = ("a", "b", "c")
    firsts = [rr.order("job", "1.0.0", replicas)[0] for _ in range(6)]
    assert firsts == ["a", "b", "c", "a", "b", "c"]
    assert list(rr.order("job", "1.0.0", replicas)) == ["a", "b", "c"]
    assert list(rr.order("job", "1.0.0", replicas)) == ["b", "c", "a"]
    assert rr.order("job", "2.0.0", ("only",)) == ("only",)


def test_gateway_config_from_the_environment() -> None:
    assert GatewayConfig.from_env({}).upstream_timeout is None
    assert GatewayConfig.from_env({"TRACKSIDE_PUB_UPSTREAM_TIMEOUT": "none"}).upstream_timeout is None
    config = GatewayConfig.from_env(
        {"TRACKSIDE_PUB_UPSTREAM_TIMEOUT": "2.5", "TRACKSIDE_PUB_CONNECT_TIMEOUT": "1"}
    )
    assert (config.upstream_timeout, config.connect_timeout) == (2.5, 1.0)
    for bad in ("soon", "-1"):
        with pytest.raises(ValueError, match="TRACKSIDE_PUB_UPSTREAM_TIMEOUT"):
            GatewayConfig.from_env({"TRACKSIDE_PUB_UPSTREAM_TIMEOUT": bad})


def test_version_choice_of_the_embedded_registry() -> None:
    statuses = {
        "1.0.0": "running",
        "1.5.0": "starting",
        "1.4.0": "error",
        "1.3.0": "running",
        "2.0.0-rc.1": "running",
        "3.0.0": "stopped",
    }
    assert _choose("latest", statuses) == "1.3.0"
    assert _choose("1.x", statuses) == "1.3.0"
    assert _choose("1.5.0", statuses) == "1.5.0"  # exact: whatever its status (the gateway says 503)
    assert _choose("2.0.0-rc.1", statuses) == "2.0.0-rc.1"
    assert _choose("2.x", statuses) is None
    assert _choose("3.x", statuses) is None  # stopped only
    assert _choose("1.5.x", statuses) == "1.5.0"  # nothing running matches: the starting one (503)
    assert _choose("9.9.9", statuses) is None
    assert _choose("latest", {"1.0.0": "starting"}) == "1.0.0"


def test_dispatch_by_prefix_and_gateway_mounts() -> None:

    class NoJobs:
        def resolve(self, name: str, version: str) -> JobTarget | None:
            return None

        def authorize(self, token: str | None, name: str, version: str, endpoint: str) -> CallDecision:
            return CallDecision(False, 401, None, "no")

    def answering(label: str) -> Any:
        async def app(scope: Any, receive: Any, send: Any) -> None:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": label.encode()})

        return app

    gateway = Gateway(NoJobs(), mounts={"/pub/async/": answering("async")})
    app = PathDispatcher({"/pub": gateway}, answering("lifecycle"))

    async def get(path: str) -> tuple[int, bytes]:
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Any) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "method": "GET",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "headers": [],
        }
        await app(scope, receive, send)
        return sent[0]["status"], sent[1].get("body", b"")

    async def main() -> None:
        assert await get("/lifecycle/api/v1/info") == (200, b"lifecycle")
        assert await get("/public") == (200, b"lifecycle")  # a prefix is a path segment
        assert await get("/pub/async/task/1/poll") == (200, b"async")
        assert await get("/pub/async//task") == (200, b"async")
        status, body = await get("/pub/job/nope/latest/x")
        assert status == 404 and b"requestId" in body
        assert (await get("/pub"))[0] == 404
        assert (await get("/pub/live"))[0] == 200

    asyncio.run(main())
