"""call_job / call_job_async against a real HTTP server standing in for the gateway."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from trackside_wrapper import JobCallError, call_job, call_job_async
from trackside_wrapper.logs import tracing_id_var


class FakeGateway(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.seen: list[dict[str, object]] = []
        self.status = 200
        self.answer: object = {"sum": 3}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/pub"


class _Handler(BaseHTTPRequestHandler):
    server: FakeGateway

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        self.server.seen.append(
            {
                "path": self.path,
                "headers": dict(self.headers),
                "body": json.loads(self.rfile.read(length) or b"null"),
            }
        )
        body = json.dumps(self.server.answer).encode()
        self.send_response(self.server.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def gateway(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGateway]:
    server = FakeGateway()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("PUB_URL", server.url)
    monkeypatch.setenv("AUTH_TOKEN", "family-token-123")
    yield server
    server.shutdown()


def test_call_job_goes_through_the_gateway_with_token_and_tracing_id(gateway: FakeGateway) -> None:
    token = tracing_id_var.set("trace-abc")
    try:
        assert call_job("adder", payload={"numbers": [1, 2]}) == {"sum": 3}
    finally:
        tracing_id_var.reset(token)
    seen = gateway.seen[-1]
    assert seen["path"] == "/pub/job/adder/latest/api/v1/perform"
    headers = seen["headers"]
    assert isinstance(headers, dict)
    assert headers["X-Racetrack-Auth"] == "family-token-123"
    assert headers["X-Request-Tracing-Id"] == "trace-abc"
    assert seen["body"] == {"numbers": [1, 2]}


def test_call_job_async_with_version_and_path(gateway: FakeGateway) -> None:
    result = asyncio.run(call_job_async("other", path="/api/v1/explain", payload={"x": 1}, version="1.x"))
    assert result == {"sum": 3}
    assert gateway.seen[-1]["path"] == "/pub/job/other/1.x/api/v1/explain"


@pytest.mark.parametrize("use_async", [False, True])
def test_non_2xx_raises_with_status_and_body(gateway: FakeGateway, use_async: bool) -> None:
    gateway.status = 403
    gateway.answer = {"error": "no permission to call adder", "requestId": "r1"}
    with pytest.raises(JobCallError) as info:
        if use_async:
            asyncio.run(call_job_async("adder", payload={}))
        else:
            call_job("adder", payload={})
    assert info.value.status == 403
    assert info.value.body == {"error": "no permission to call adder", "requestId": "r1"}
    assert "failed with 403: no permission to call adder" in str(info.value)


def test_unreachable_gateway_and_missing_pub_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PUB_URL", "http://127.0.0.1:9/pub")
    with pytest.raises(JobCallError) as info:
        call_job("adder", payload={}, timeout=2)
    assert info.value.status is None and "calling job adder" in str(info.value)
    monkeypatch.delenv("PUB_URL")
    with pytest.raises(JobCallError, match="PUB_URL is not set"):
        call_job("adder")
