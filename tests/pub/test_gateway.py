"""The gateway in front of real jobs: routing, auth, headers, path safety, streaming, WebSockets,
replicas. One embedded platform (lifecycle + gateway on one port) for the module; jobs deployed
from a file:// repository through the lifecycle API."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from pub.app import Gateway, GatewayConfig
from tests.conftest import raw_http
from tests.pub.gateway_platform import (
    GatewayPlatform,
    ServerThread,
    echo_repo,
    gateway_platform,
    manifest,
)
from trackside.embedded_registry import EmbeddedRegistry

UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
ECHO = "/api/v1/webview/echo"


@dataclass
class Scenario:
    platform: GatewayPlatform
    strict: ServerThread  # a second gateway on the same platform, with a 0.5 s upstream timeout
    remote: str
    flag: Path
    billing: str  # ESC token with call_job on echo
    nobody: str  # ESC token without permissions

    @property
    def admin(self) -> str:
        return self.platform.token

    def get(self, name: str, version: str, path: str, token: str | None = None, **kw: Any) -> httpx.Response:
        headers = dict(kw.pop("headers", {}))
        if token is not None:
            headers["X-Racetrack-Auth"] = token
        return httpx.get(self.platform.pub(name, version, path), headers=headers, timeout=30, **kw)

    def echo(self, version: str, token: str | None = None, **kw: Any) -> dict[str, Any]:
        r = self.get("echo", version, ECHO, token or self.admin, **kw)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body


@pytest.fixture(scope="module")
def s(module_tmp: Path) -> Iterator[Scenario]:
    flag = module_tmp / "release-3.0.0"
    with gateway_platform(module_tmp / "data") as platform:
        remote = echo_repo(module_tmp / "echo")
        public = ["/api/v1/webview/public"]
        # two at a time (the lifecycle deploys two at once), and the first version of a family
        # alone: concurrent first deploys of one family race on its owner's permission
        batches = [
            [manifest("echo", "1.0.0", remote), manifest("other", "1.0.0", remote)],
            [
                manifest("echo", "1.2.0", remote, replicas=2, public_endpoints=public),
                manifest("echo", "2.0.0-rc.1", remote),
            ],
        ]
        for batch in batches:
            for deployment_id in [platform.deploy(m) for m in batch]:
                result = platform.wait(deployment_id)
                assert result["status"] == "done", result
        billing = platform.issue_esc_token("billing", "echo")
        nobody = platform.issue_esc_token("nobody", None)
        strict = ServerThread(Gateway(EmbeddedRegistry(platform.plane), GatewayConfig(upstream_timeout=0.5)))
        try:
            yield Scenario(platform, strict, remote, flag, billing, nobody)
        finally:
            flag.touch()  # a deployment still waiting on it must end before the lifecycle stops
            strict.stop()


def seen_headers(body: dict[str, Any]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in body["headers"]:
        out.setdefault(name, []).append(value)
    return out


# ---- routing ---------------------------------------------------------------------------------


def test_versions_exact_latest_and_wildcards(s: Scenario) -> None:
    expected = {
        "1.0.0": "1.0.0",
        "1.2.0": "1.2.0",
        "latest": "1.2.0",
        "1.x": "1.2.0",
        "1.0.x": "1.0.0",
        "1.2.*": "1.2.0",
        "*": "1.2.0",
        "2.0.0-rc.1": "2.0.0-rc.1",  # a prerelease is reachable by its exact version only
    }
    for requested, exact in expected.items():
        body = s.echo(requested)
        assert (body["job"], body["version"]) == ("echo", exact), requested
        assert body["path"] == f"/pub/job/echo/{exact}{ECHO}"

    for name, version in (("echo", "2.x"), ("echo", "9.9.9"), ("nope", "latest"), ("echo", "banana")):
        r = s.get(name, version, ECHO, s.admin)
        assert r.status_code == 404, (name, version, r.text)
        assert r.json()["requestId"] == r.headers["x-request-tracing-id"]
        assert "error" in r.json()

    # made-up job names are answered from the set of known names, not with a query each
    registry = s.platform.gateway.registry
    assert isinstance(registry, EmbeddedRegistry)
    reads = registry.store_reads
    with httpx.Client(headers={"X-Racetrack-Auth": s.admin}) as client:
        for i in range(40):
            assert client.get(s.platform.pub(f"made-up-{i}", "latest", ECHO)).status_code == 404
    assert registry.store_reads - reads <= 3


def test_the_job_receives_the_resolved_version_in_the_path(s: Scenario) -> None:
    probe = f"/api/v1/webview/probe-{time.monotonic_ns()}"
    assert s.get("echo", "1.x", probe + "?a=1", s.admin).status_code == 200
    deadline = time.monotonic() + 10
    while f'"GET /pub/job/echo/1.2.0{probe}" 200' not in s.platform.job_logs("echo", "1.2.0"):
        assert time.monotonic() < deadline, s.platform.job_logs("echo", "1.2.0")[-2000:]
        time.sleep(0.1)


def test_methods_query_strings_and_bodies_pass_unchanged(s: Scenario) -> None:
    url = s.platform.pub("echo", "1.0.0", ECHO + "?a=1&b=%20x&c=%2F")
    headers = {"X-Racetrack-Auth": s.admin, "X-Custom": "kept", "Content-Type": "text/plain"}
    for method in ("POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
        r = httpx.request(method, url, content=b"payload", headers=headers)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["method"] == method and body["query"] == "a=1&b=%20x&c=%2F"
        assert body["size"] == 7 and body["sha256"] == hashlib.sha256(b"payload").hexdigest()
        assert seen_headers(body)["x-custom"] == ["kept"]
    head = httpx.head(url, headers=headers)
    assert head.status_code == 200 and int(head.headers["content-length"]) > 0 and head.content == b""
    # the same connection keeps working after HEAD
    with httpx.Client(headers=headers) as client:
        for _ in range(3):
            assert client.head(url).status_code == 200
            assert client.get(url).json()["method"] == "GET"


# ---- auth --------------------------------------------------------------------------------------


def test_tokens_without_and_with_permission(s: Scenario) -> None:
    missing = s.get("echo", "1.0.0", ECHO)
    assert missing.status_code == 401 and "missing auth token" in missing.json()["error"]
    bad = s.get("echo", "1.0.0", ECHO, "not-a-token")
    assert bad.status_code == 401 and "invalid auth token" in bad.json()["error"]
    denied = s.get("echo", "1.0.0", ECHO, s.nobody)
    assert denied.status_code == 403
    message = denied.json()["error"]
    assert "ESC nobody" in message and "call_job" in message and "echo" in message and "1.0.0" in message
    assert denied.json()["requestId"] == denied.headers["x-request-tracing-id"]
    assert s.echo("1.0.0", s.billing)["job"] == "echo"
    other = s.get("other", "1.0.0", ECHO, s.billing)  # billing may call echo, not other
    assert other.status_code == 403 and "other" in other.json()["error"]


def test_probes_are_public_and_nothing_else_is(s: Scenario) -> None:
    for probe in ("/live", "/ready", "/health"):
        r = s.get("echo", "1.0.0", probe)
        assert r.status_code == 200, (probe, r.text)
    assert s.get("echo", "1.0.0", "/metrics").status_code == 401
    assert s.get("echo", "1.0.0", "/live/../metrics").status_code == 401  # httpx resolves the dots


def test_approved_public_endpoints_need_no_token(s: Scenario) -> None:
    assert s.get("echo", "1.2.0", "/api/v1/webview/public").status_code == 401
    requests = s.platform.api.get(
        "/public-endpoints", params={"job_name": "echo", "job_version": "1.2.0"}
    ).json()
    [request] = requests
    assert s.platform.api.post(f"/public-endpoints/{request['id']}/approve").status_code == 200
    r = s.get("echo", "1.2.0", "/api/v1/webview/public/page")
    assert r.status_code == 200 and "x-caller-name" not in seen_headers(r.json())
    assert s.get("echo", "1.2.0", "/api/v1/webview/publicity").status_code == 401  # prefix, not substring
    assert s.get("echo", "1.0.0", "/api/v1/webview/public").status_code == 401  # that version only
    with_token = s.get("echo", "1.2.0", "/api/v1/webview/public", s.billing)
    assert seen_headers(with_token.json())["x-caller-name"] == ["ESC billing"]


# ---- headers -------------------------------------------------------------------------------------


def test_the_job_never_sees_the_token_header_or_cookie(s: Scenario) -> None:
    body = s.echo("1.0.0", s.billing, headers={"Cookie": "theme=dark; lang=en"})
    headers = seen_headers(body)
    assert "x-racetrack-auth" not in headers
    assert headers["cookie"] == ["theme=dark; lang=en"]

    via_cookie = s.get(
        "echo", "1.0.0", ECHO, headers={"Cookie": f"theme=dark; X-Racetrack-Auth={s.billing}; lang=en"}
    )
    assert via_cookie.status_code == 200, via_cookie.text
    headers = seen_headers(via_cookie.json())
    assert headers["cookie"] == ["theme=dark; lang=en"]
    assert headers["x-caller-name"] == ["ESC billing"]
    assert s.billing not in json.dumps(via_cookie.json())

    only_cookie = s.get("echo", "1.0.0", ECHO, headers={"Cookie": f"X-Racetrack-Auth={s.billing}"})
    assert only_cookie.status_code == 200 and "cookie" not in seen_headers(only_cookie.json())


def test_tracing_id_is_created_forwarded_and_returned(s: Scenario) -> None:
    r = s.get("echo", "1.0.0", ECHO, s.admin)
    created = r.headers["x-request-tracing-id"]
    assert UUID4.fullmatch(created)
    assert seen_headers(r.json())["x-request-tracing-id"] == [created]

    r = s.get("echo", "1.0.0", ECHO, s.admin, headers={"X-Request-Tracing-Id": "trace-me-42"})
    assert r.headers["x-request-tracing-id"] == "trace-me-42"
    assert seen_headers(r.json())["x-request-tracing-id"] == ["trace-me-42"]
    errors = s.get("echo", "1.0.0", ECHO, headers={"X-Request-Tracing-Id": "trace-401"})
    assert errors.json()["requestId"] == "trace-401" == errors.headers["x-request-tracing-id"]


def test_caller_name_comes_from_the_decision_only(s: Scenario) -> None:
    spoofed = {"X-Caller-Name": "User admin"}
    assert seen_headers(s.echo("1.0.0", s.billing, headers=spoofed))["x-caller-name"] == ["ESC billing"]
    assert seen_headers(s.echo("1.0.0", s.admin))["x-caller-name"] == ["User admin"]
    probe = s.get("echo", "1.0.0", "/live", headers=spoofed)
    assert probe.status_code == 200  # public: no decision, so no caller (and never the caller's own)


def test_header_values_with_line_breaks_never_reach_the_job(s: Scenario) -> None:
    token = s.admin
    for injected in (
        b"X-Test: a\rX-Injected: 1\r\n",
        b"X-Test: a\nX-Injected: 1\r\n",
        b"X-Test: a\r\n X-Injected: 1\r\n",  # obsolete line folding
        b"X-Test: a\x00X-Injected: 1\r\n",
    ):
        request = (
            b"GET /pub/job/echo/1.0.0" + ECHO.encode() + b" HTTP/1.1\r\nHost: x\r\n"
            b"X-Racetrack-Auth: " + token.encode() + b"\r\n" + injected + b"Connection: close\r\n\r\n"
        )
        status, _, body = raw_http(s.platform.port, request)
        if status == 200:
            headers = seen_headers(json.loads(body))
            assert "x-injected" not in headers, injected
        else:
            assert status == 400, (injected, status, body)


# ---- path safety ---------------------------------------------------------------------------------


def raw_get(s: Scenario, target: bytes, token: str | None = None) -> tuple[int, dict[str, str], bytes]:
    auth = b"X-Racetrack-Auth: " + (token or s.admin).encode() + b"\r\n"
    return raw_http(
        s.platform.port, b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n" + auth + b"Connection: close\r\n\r\n"
    )


def test_paths_cannot_reach_another_job_or_anything_else(s: Scenario) -> None:
    other = f"/other/1.0.0{ECHO}".encode()
    attacks = [
        b"/pub/job/echo/1.0.0/../.." + other,
        b"/pub/job/echo/1.0.0/%2e%2e/%2E%2E" + other,
        b"/pub/job/echo/1.0.0/.%2e/%2e." + other,
        b"/pub/job/echo/1.0.0/..%2F..%2Fother%2F1.0.0%2Fapi%2Fv1%2Fwebview%2Fecho",
        b"/pub/job/echo/1.0.0/api/v1/webview%2Fecho",
        b"/pub/job/echo/1.0.0/api/v1/webview%5Cecho",
        b"/pub/job/echo/1.0.0/api/v1/webview/echo/%0d%0aX-Injected:%201",
        b"/pub/job/echo/1.0.0/api/v1/webview/./echo",
        b"/pub/job/echo%2F1.0.0" + ECHO.encode(),
        b"/pub/job/../job/other/1.0.0" + ECHO.encode(),
        b"/pub/job/%2e%2e/other/1.0.0" + ECHO.encode(),
        b"/pub/job/echo/..%2F..%2Fother/1.0.0" + ECHO.encode(),
        b"/pub/../lifecycle/api/v1/users",
        b"/pub/%2e%2e/lifecycle/api/v1/users",
        b"/pub/job/echo/1.0.0/api/v1/webview/echo\\..\\..\\other",
        b"http://127.0.0.1:1/pub/job/echo/1.0.0/../../other/1.0.0" + ECHO.encode(),
    ]
    for target in attacks:
        status, headers, body = raw_get(s, target)
        assert status in (400, 404), (target, status, body[:300])
        if headers.get("content-type") == "application/json":
            assert b'"job"' not in body and b"username" not in body, (target, body[:300])

    # repeated slashes are collapsed: the same job, the normalised path
    status, _, body = raw_get(s, b"/pub//job//echo//1.0.0//api/v1/webview//echo")
    assert status == 200 and json.loads(body)["path"] == f"/pub/job/echo/1.0.0{ECHO}"

    # an absolute-form target names a host: the gateway ignores it, the registry chooses
    other_replica = s.platform.plane.runner.serving("other", "1.0.0")[0].address
    status, _, body = raw_get(s, other_replica.encode() + b"/pub/job/echo/1.0.0" + ECHO.encode())
    assert status == 200 and json.loads(body)["job"] == "echo"


# ---- streaming -----------------------------------------------------------------------------------


def test_responses_stream(s: Scenario) -> None:
    url = s.platform.pub("echo", "1.0.0", "/api/v1/webview/stream?mb=8")
    expected = hashlib.sha256(bytes(range(256)) * 256 * 16 * 8).hexdigest()
    digest = hashlib.sha256()
    size = 0
    with httpx.stream("GET", url, headers={"X-Racetrack-Auth": s.admin}, timeout=30) as r:
        assert r.status_code == 200 and "content-length" not in r.headers
        for chunk in r.iter_bytes():
            digest.update(chunk)
            size += len(chunk)
    assert size == 8 * 1024 * 1024 and digest.hexdigest() == expected

    # the first bytes arrive while the job is still producing the rest: nothing is buffered
    started = time.monotonic()
    paused = s.platform.pub("echo", "1.0.0", "/api/v1/webview/stream?mb=1&pause=1.5")
    with httpx.stream("GET", paused, headers={"X-Racetrack-Auth": s.admin}, timeout=30) as r:
        chunks = r.iter_raw()
        first = next(chunks)
        first_at = time.monotonic() - started
        rest = sum(len(c) for c in chunks)
    assert first and first_at < 1.0, first_at
    assert len(first) + rest == 1024 * 1024 and time.monotonic() - started >= 1.5


def test_request_bodies_stream(s: Scenario) -> None:
    piece = os.urandom(64 * 1024)

    def pieces() -> Iterator[bytes]:
        for _ in range(96):  # 6 MiB, sent chunked
            yield piece

    url = s.platform.pub("echo", "1.0.0", ECHO)
    r = httpx.post(url, content=pieces(), headers={"X-Racetrack-Auth": s.admin}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["size"] == 96 * len(piece)
    assert r.json()["sha256"] == hashlib.sha256(piece * 96).hexdigest()

    whole = os.urandom(3 * 1024 * 1024)
    r = httpx.put(url, content=whole, headers={"X-Racetrack-Auth": s.admin}, timeout=30)
    assert r.json()["size"] == len(whole) and r.json()["sha256"] == hashlib.sha256(whole).hexdigest()


# ---- WebSockets ----------------------------------------------------------------------------------


def test_websockets_through_the_gateway(s: Scenario) -> None:
    base = s.platform.url.replace("http://", "ws://") + "/pub/job/echo/1.x/api/v1/webview/ws"

    async def talk() -> None:
        async with connect(
            base,
            additional_headers={"X-Racetrack-Auth": s.billing},
            subprotocols=["chat"],  # type: ignore[list-item]
        ) as ws:
            assert ws.subprotocol == "chat"
            await ws.send("hello")
            assert await ws.recv() == "HELLO"
            await ws.send(b"\x01\x02\x03")
            assert await ws.recv() == b"\x03\x02\x01"
            await ws.send("headers")
            headers = json.loads(await ws.recv())
            assert "x-racetrack-auth" not in headers and headers["x-caller-name"] == "ESC billing"
            assert UUID4.fullmatch(headers["x-request-tracing-id"])
            await ws.send("close")
            with pytest.raises(ConnectionClosed):
                await ws.recv()
            assert ws.close_code == 4001

        cookie = {"Cookie": f"X-Racetrack-Auth={s.billing}"}
        async with connect(base, additional_headers=cookie) as ws:
            await ws.send("cookie")
            assert await ws.recv() == "COOKIE"

        for token, status in ((None, 401), (s.nobody, 403)):
            extra = {"X-Racetrack-Auth": token} if token else {}
            with pytest.raises(InvalidStatus) as refused:
                async with connect(base, additional_headers=extra):
                    pass
            assert refused.value.response.status_code == status
            assert b"requestId" in (refused.value.response.body or b"")

    asyncio.run(talk())


# ---- replicas ------------------------------------------------------------------------------------


def test_round_robin_across_two_replicas(s: Scenario) -> None:
    pids = set(s.platform.replica_pids("echo", "1.2.0"))
    assert len(pids) == 2
    answered = [s.echo("1.2.0")["pid"] for _ in range(8)]
    assert set(answered) == pids
    assert all(a != b for a, b in itertools.pairwise(answered)), answered


def test_a_configured_timeout_gives_504(s: Scenario) -> None:
    url = f"{s.strict.url}/pub/job/echo/1.0.0/api/v1/webview/sleep?s=2"
    started = time.monotonic()
    r = httpx.get(url, headers={"X-Racetrack-Auth": s.admin}, timeout=30)
    assert r.status_code == 504 and "did not answer within 0.5 s" in r.json()["error"], r.text
    assert time.monotonic() - started < 1.5
    # the default gateway has no timeout
    slow = s.get("echo", "1.0.0", "/api/v1/webview/sleep?s=1", s.admin)
    assert slow.status_code == 200


def test_gateway_probes_and_metrics(s: Scenario) -> None:
    for probe in ("live", "ready", "health"):
        r = httpx.get(f"{s.platform.url}/pub/{probe}")
        assert r.status_code == 200 and r.json()["service"] == "pub"
    metrics = httpx.get(f"{s.platform.url}/pub/metrics").text
    assert 'pub_requests_total{job="echo",status="2xx",version="1.2.0"}' in metrics
    assert 'pub_requests_total{job="",status="4xx",version=""}' in metrics
    assert 'pub_request_duration_seconds_bucket{job="echo",le="0.005"}' in metrics
    assert "pub_requests_in_flight 0.0" in metrics
    hits = re.search(r"^pub_auth_cache_hits_total (\S+)$", metrics, re.M)
    assert hits and float(hits.group(1)) > 0
    assert re.search(r"^pub_auth_cache_misses_total (\S+)$", metrics, re.M)
    assert 'pub_auth_decisions_total{result="403"}' in metrics
    # the lifecycle still answers next to it
    assert httpx.get(f"{s.platform.url}/lifecycle/live").json()["service"] == "lifecycle"


def test_latest_ignores_a_starting_version_until_it_runs(s: Scenario) -> None:
    deployment = s.platform.deploy(
        manifest("echo", "3.0.0", s.remote, runtime_env={"INIT_FLAG": str(s.flag)})
    )
    assert s.platform.wait(deployment, phase="initialising the entrypoint")["status"] == "in_progress"
    assert s.echo("latest")["version"] == "1.2.0"
    assert s.echo("*")["version"] == "1.2.0"
    for version in ("3.0.0", "3.x"):
        r = s.get("echo", version, ECHO, s.admin)
        assert r.status_code == 503, r.text
        assert r.headers["retry-after"] == "1" and "starting" in r.json()["error"]
    s.flag.touch()
    assert s.platform.wait(deployment)["status"] == "done"
    assert s.echo("latest")["version"] == "3.0.0"  # at once: a committed job change drops the snapshot
    assert s.echo("3.x")["version"] == "3.0.0"


def test_killed_replicas(s: Scenario) -> None:
    # a request in flight when its replica dies gets 502 JSON at once
    [pid] = s.platform.replica_pids("echo", "1.0.0")
    result: dict[str, Any] = {}

    def call() -> None:
        started = time.monotonic()
        result["response"] = s.get("echo", "1.0.0", "/api/v1/webview/sleep?s=5", s.admin)
        result["elapsed"] = time.monotonic() - started

    caller = threading.Thread(target=call)
    caller.start()
    time.sleep(0.5)
    os.kill(pid, signal.SIGKILL)
    caller.join(10)
    r = result["response"]
    assert r.status_code == 502 and r.json()["requestId"] and result["elapsed"] < 2, r.text

    # one of two replicas killed: the other answers every request
    first, second = s.platform.replica_pids("echo", "1.2.0")
    os.kill(first, signal.SIGKILL)
    answered = [s.echo("1.2.0")["pid"] for _ in range(6)]  # each one answered, none by the dead one
    assert first not in answered and second in answered, answered  # (its restart may answer too)

    # none left: 502 (refused) or 503 (no ready replica) at once, never a hang; on a loaded machine
    # the supervisor may have the first one back already, and then that one answers
    killed = {first, second, *s.platform.replica_pids("echo", "1.2.0")}
    for pid in killed - {first}:
        os.kill(pid, signal.SIGKILL)
    started = time.monotonic()
    r = s.get("echo", "1.2.0", ECHO, s.admin)
    if r.status_code == 200:
        assert r.json()["pid"] not in killed, r.text
    else:
        assert r.status_code in (502, 503) and time.monotonic() - started < 1, r.text
        assert r.json()["requestId"] == r.headers["x-request-tracing-id"]

    # and once the supervisor has them back, 200 again
    deadline = time.monotonic() + 30
    while s.get("echo", "1.2.0", ECHO, s.admin).status_code != 200:
        assert time.monotonic() < deadline, "echo 1.2.0 did not come back"
        time.sleep(0.2)
