"""The gateway's HTTP/1.1 forwarding against a scripted upstream (raw sockets): framing, hop-by-hop
headers, interim responses, bodies delimited by the connection's end, invalid responses, stale
pooled connections, refused replicas. The registry is a stub, so no lifecycle runs here."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from pub.app import Gateway
from pub.registry import CallDecision, JobTarget
from tests.conftest import free_port
from tests.pub.gateway_platform import ServerThread


class StubRegistry:
    def __init__(self) -> None:
        self.replicas: tuple[str, ...] = ()

    def resolve(self, name: str, version: str) -> JobTarget | None:
        if name != "fake":
            return None
        return JobTarget(name, "1.0.0", self.replicas, "running")

    def authorize(self, token: str | None, name: str, version: str, endpoint: str) -> CallDecision:
        if token == "good":
            return CallDecision(True, 200, "ESC tester", "permitted", "esc:1")
        return CallDecision(False, 401, None, "missing auth token")


@dataclass
class Upstream:
    """An HTTP/1.1 server on a thread whose answers are scripted per path."""

    port: int = field(default_factory=free_port)
    heads: list[bytes] = field(default_factory=list)
    connections: int = 0
    aborted: int = 0  # endless responses whose reader went away

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Upstream:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self.loop = loop
            server = loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", self.port))
            self.server = server
            ready.set()
            loop.run_forever()
            server.close()
            loop.run_until_complete(server.wait_closed())
            loop.close()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        ready.wait(5)
        return self

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        served = 0
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                self.heads.append(head)
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ")
                headers = {
                    k.strip().lower(): v.strip() for k, v in (x.split(":", 1) for x in lines[1:] if ":" in x)
                }
                body = b""
                if "content-length" in headers:
                    body = await reader.readexactly(int(headers["content-length"]))
                elif headers.get("transfer-encoding") == "chunked":
                    while True:
                        size = int((await reader.readuntil(b"\r\n")).strip(), 16)
                        chunk = await reader.readexactly(size + 2)
                        if size == 0:
                            break
                        body += chunk[:-2]
                path = target.split("?")[0].removeprefix("/pub/job/fake/1.0.0")
                served += 1
                if path == "/stale" and served > 1:
                    return  # a keep-alive connection closed instead of answering
                if path == "/forever":
                    await self._forever(writer)
                    return
                answer = self._answer(path, method, head, body)
                writer.write(answer)
                await writer.drain()
                if path in ("/eof", "/garbage", "/close"):
                    return
        finally:
            writer.close()

    async def _forever(self, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        try:
            while True:
                writer.write(b"5\r\ntick\n\r\n")
                await writer.drain()
                await asyncio.sleep(0.02)
        except ConnectionError:
            self.aborted += 1

    def _answer(self, path: str, method: str, head: bytes, body: bytes) -> bytes:
        if path == "/eof":
            return b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil the end"
        if path == "/close":
            return b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
        if path == "/hints":
            return b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
        if path == "/garbage":
            return b"SPEAKING NONSENSE\r\n\r\n"
        if path == "/hop":
            return (
                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: keep-alive, x-private\r\n"
                b"x-private: 1\r\nkeep-alive: timeout=5\r\nx-fine: yes\r\nserver: fake\r\n"
                b"date: Mon, 01 Jan 2024 00:00:00 GMT\r\nx-request-tracing-id: upstream-id\r\n\r\nok"
            )
        if path == "/chunked":
            return b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
        reply = head + b"--body:" + body
        return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(reply), reply)


@dataclass
class Rig:
    registry: StubRegistry
    upstream: Upstream
    server: ServerThread

    def url(self, path: str) -> str:
        return f"{self.server.url}/pub/job/fake/1.0.0{path}"


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    registry = StubRegistry()
    upstream = Upstream().start()
    registry.replicas = (upstream.address,)
    server = ServerThread(Gateway(registry))
    try:
        yield Rig(registry, upstream, server)
    finally:
        server.stop()
        upstream.stop()


AUTH = {"X-Racetrack-Auth": "good"}


def test_request_head_as_the_job_gets_it(rig: Rig) -> None:
    headers = {
        **AUTH,
        "Connection": "keep-alive, x-hop",
        "X-Hop": "dropped",
        "TE": "trailers",
        "Upgrade": "h2c",
        "Proxy-Authorization": "Basic Zm9vOmJhcg==",
        "Keep-Alive": "timeout=5",
        "X-Caller-Name": "User mallory",
        "X-Kept": "yes",
    }
    r = httpx.post(rig.url("/head?q=1"), content=b"12345", headers=headers)
    head, _, body = r.content.partition(b"--body:")
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /pub/job/fake/1.0.0/head?q=1 HTTP/1.1"
    sent = {k.lower(): v.strip() for k, v in (x.split(":", 1) for x in lines[1:] if ":" in x)}
    assert sent["host"] == f"127.0.0.1:{rig.upstream.port}"
    assert sent["x-kept"] == "yes" and sent["x-caller-name"] == "ESC tester"
    assert sent["content-length"] == "5" and body == b"12345"
    for dropped in (
        "connection",
        "x-hop",
        "te",
        "upgrade",
        "proxy-authorization",
        "keep-alive",
        "x-racetrack-auth",
    ):
        assert dropped not in sent, dropped


def test_chunked_requests_are_sent_with_a_length_when_complete(rig: Rig) -> None:
    r = httpx.post(rig.url("/head"), content=iter([b"ab", b"cd"]), headers=AUTH)
    head, _, body = r.content.partition(b"--body:")
    assert body == b"abcd"
    assert b"content-length: 4" in head or b"transfer-encoding: chunked" in head


def test_response_headers_hop_by_hop_and_tracing(rig: Rig) -> None:
    r = httpx.get(rig.url("/hop"), headers={**AUTH, "X-Request-Tracing-Id": "mine"})
    assert r.status_code == 200 and r.text == "ok"
    assert r.headers["x-fine"] == "yes"
    assert "x-private" not in r.headers and "keep-alive" not in r.headers
    assert r.headers.get("server") != "fake" and r.headers.get_list("date") != [
        "Mon, 01 Jan 2024 00:00:00 GMT"
    ]
    assert r.headers.get_list("x-request-tracing-id") == ["mine"]


def test_bodies_until_eof_interim_responses_and_chunks(rig: Rig) -> None:
    eof = httpx.get(rig.url("/eof"), headers=AUTH)
    assert eof.status_code == 200 and eof.text == "until the end"
    hints = httpx.get(rig.url("/hints"), headers=AUTH)
    assert hints.status_code == 200 and hints.text == "ok" and "link" not in hints.headers
    chunked = httpx.get(rig.url("/chunked"), headers=AUTH)
    assert chunked.text == "abcde"
    close = httpx.get(rig.url("/close"), headers=AUTH)
    assert close.text == "ok"


def test_an_invalid_response_is_502(rig: Rig) -> None:
    r = httpx.get(rig.url("/garbage"), headers=AUTH)
    assert r.status_code == 502 and "invalid HTTP response" in r.json()["error"]


def test_keep_alive_connections_are_reused(rig: Rig) -> None:
    with httpx.Client(headers=AUTH) as client:
        client.get(rig.url("/warm"))
        before = rig.upstream.connections
        for _ in range(20):
            assert client.get(rig.url("/warm")).status_code == 200
    assert rig.upstream.connections == before


def test_a_stale_pooled_connection_is_retried_for_idempotent_requests(rig: Rig) -> None:
    assert httpx.get(rig.url("/stale"), headers=AUTH).status_code == 200
    # the pooled connection now closes instead of answering: GET is retried on a fresh one
    assert httpx.get(rig.url("/stale"), headers=AUTH).status_code == 200
    # POST is not repeated: it might have been acted on
    r = httpx.post(rig.url("/stale"), content=b"x", headers=AUTH)
    assert r.status_code == 502 and r.json()["reason"] == "reset"


def test_refused_replicas_are_skipped_and_all_refused_is_502_at_once(rig: Rig) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    rig.registry.replicas = (dead, rig.upstream.address)
    try:
        assert all(httpx.get(rig.url("/x"), headers=AUTH).status_code == 200 for _ in range(4))
        rig.registry.replicas = (dead, f"http://127.0.0.1:{free_port()}")
        started = time.monotonic()
        r = httpx.get(rig.url("/x"), headers=AUTH)
        assert r.status_code == 502 and r.json()["reason"] == "refused"
        assert time.monotonic() - started < 0.5
        metrics = httpx.get(f"{rig.server.url}/pub/metrics").text
        assert 'pub_upstream_errors_total{job="fake",kind="refused",version="1.0.0"}' in metrics
        rig.registry.replicas = ()
        r = httpx.get(rig.url("/x"), headers=AUTH)
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
    finally:
        rig.registry.replicas = (rig.upstream.address,)


def test_a_caller_who_leaves_mid_stream_ends_the_upstream_exchange(rig: Rig) -> None:
    with socket.create_connection(("127.0.0.1", rig.server.port)) as sock:
        sock.sendall(b"GET /pub/job/fake/1.0.0/forever HTTP/1.1\r\nHost: x\r\nX-Racetrack-Auth: good\r\n\r\n")
        received = b""
        while b"tick" not in received:
            received += sock.recv(4096)
    deadline = time.monotonic() + 5
    while rig.upstream.aborted == 0:
        assert time.monotonic() < deadline, "the gateway kept reading for a caller that left"
        time.sleep(0.02)
    metrics = httpx.get(f"{rig.server.url}/pub/metrics").text
    assert "pub_requests_in_flight 0.0" in metrics
