import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from tests.conftest import SAMPLE_JOBS, RunningJob, free_port
from tests.sample_jobs.api_docs import argument_types, assert_swagger_page, openapi_document, request_body

JOB = SAMPLE_JOBS / "chain"
TOKEN = "chain-job-token-7f3a"
ADDER_PATH = "/pub/job/adder/latest/api/v1/perform"

Responder = Callable[[str, Message, bytes], tuple[int, bytes]]


@dataclass
class Received:
    path: str
    headers: Message
    body: bytes


def answer(status: int, payload: object) -> Responder:
    return lambda path, headers, body: (status, json.dumps(payload).encode())


class FakeGateway:
    """Stands in for Trackside's gateway at PUB_URL: records each request, answers with `respond`."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.respond: Responder = answer(404, {"error": "no such job"})
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                gateway.received.append(Received(self.path, self.headers, body))
                status, payload = gateway.respond(self.path, self.headers, body)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def pub_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/pub"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def gateway() -> Iterator[FakeGateway]:
    fake = FakeGateway()
    yield fake
    fake.close()


def forward_to(job: RunningJob) -> Responder:
    """Proxy like the gateway does: same path, tracing id passed on, the caller's token not."""

    def respond(path: str, headers: Message, body: bytes) -> tuple[int, bytes]:
        response = httpx.post(
            job.url + path,
            content=body,
            headers={
                "Content-Type": "application/json",
                "X-Request-Tracing-Id": headers.get("X-Request-Tracing-Id", ""),
            },
        )
        return response.status_code, response.content

    return respond


def chain_env(pub_url: str) -> dict[str, str]:
    return {"PUB_URL": pub_url, "AUTH_TOKEN": TOKEN}


def test_calls_adder_through_the_gateway(run_job: Callable[..., RunningJob], gateway: FakeGateway) -> None:
    adder = run_job(SAMPLE_JOBS / "adder")
    gateway.respond = forward_to(adder)
    chain = run_job(JOB, env=chain_env(gateway.pub_url))

    response = chain.client.post(
        "/api/v1/perform",
        json={"numbers": [40, 2], "factor": 3},
        headers={"X-Request-Tracing-Id": "trace-chain-1"},
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"sum": 42, "scaled": 126}

    [call] = gateway.received
    assert call.path == ADDER_PATH
    assert call.headers["X-Racetrack-Auth"] == TOKEN
    assert call.headers["X-Request-Tracing-Id"] == "trace-chain-1"
    assert call.headers["Content-Type"] == "application/json"
    assert json.loads(call.body) == {"numbers": [40, 2]}
    adder.wait_for_log(f'[trace-chain-1] trackside.access: "POST {ADDER_PATH}" 200')
    chain.wait_for_log('[trace-chain-1] trackside.access: "POST /api/v1/perform" 200')


def test_generated_tracing_id_is_passed_on(run_job: Callable[..., RunningJob], gateway: FakeGateway) -> None:
    gateway.respond = answer(200, 10)
    chain = run_job(JOB, env=chain_env(gateway.pub_url))

    response = chain.client.post("/api/v1/perform", json={"numbers": [4, 6]})
    assert response.json() == {"sum": 10, "scaled": 20}
    tracing_id = response.headers["X-Request-Tracing-Id"]
    assert tracing_id
    [call] = gateway.received
    assert call.headers["X-Request-Tracing-Id"] == tracing_id


def test_failing_adder_fails_the_chain(run_job: Callable[..., RunningJob], gateway: FakeGateway) -> None:
    chain = run_job(JOB, env=chain_env(gateway.pub_url))

    gateway.respond = answer(500, {"error": "adder exploded", "type": "RuntimeError"})
    response = chain.client.post(
        "/api/v1/perform", json={"numbers": [1]}, headers={"X-Request-Tracing-Id": "t-500"}
    )
    assert response.status_code == 500
    body = response.json()
    assert body["type"] == "JobCallError"
    assert "adder" in body["error"]
    assert "500" in body["error"]
    assert "adder exploded" in body["error"]
    assert TOKEN not in response.text
    chain.wait_for_log("JobCallError")

    gateway.respond = answer(401, {"error": "token revoked", "requestId": "r1"})
    unauthorised = chain.client.post("/api/v1/perform", json={"numbers": [1]})
    assert unauthorised.status_code == 500
    assert unauthorised.json()["type"] == "JobCallError"
    assert "401" in unauthorised.json()["error"]
    assert "token revoked" in unauthorised.json()["error"]

    assert TOKEN not in chain.logs()


def test_unreachable_gateway(run_job: Callable[..., RunningJob]) -> None:
    chain = run_job(JOB, env=chain_env(f"http://127.0.0.1:{free_port()}/pub"))
    response = chain.client.post("/api/v1/perform", json={"numbers": [1]})
    assert response.status_code == 500
    assert response.json()["type"] == "JobCallError"
    assert "adder" in response.json()["error"]


def test_openapi_and_docs(run_job: Callable[..., RunningJob], gateway: FakeGateway) -> None:
    job = run_job(JOB, env=chain_env(gateway.pub_url))
    document = openapi_document(job)
    assert argument_types(document, "/api/v1/perform") == {"numbers": ["number"], "factor": "number"}
    assert request_body(document, "/api/v1/perform")[1] == {"numbers": [40, 2], "factor": 2}
    assert_swagger_page(job)
    assert gateway.received == []
