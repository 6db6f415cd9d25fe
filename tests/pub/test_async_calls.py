"""Async calls through the gateway against a real job: deployed from a file:// git repository by a
ControlPlane, reached through the embedded registry, called by real HTTP through a uvicorn server
running `AsyncCalls`, tasks kept in a real SQLite database (the lifecycle's, or a fresh one where
a test restarts gateways)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from lifecycle.api.app import create_app
from lifecycle.auth.escs import create_esc
from lifecycle.auth.permissions import grant
from lifecycle.auth.subjects import esc_subject
from lifecycle.auth.tokens import issue_token
from lifecycle.control_plane import ControlPlane
from lifecycle.store.database import Database
from lifecycle.store.models import Scope
from pub.async_calls import AsyncCalls
from pub.async_runner import AsyncSettings, Recovery
from pub.async_store import AsyncCallStore, NewAsyncTask
from pub.registry import CallDecision, JobTarget, Registry
from tests.conftest import free_port
from tests.gitservers import file_url, make_repo
from tests.lifecycle.platform import lifecycle_config
from trackside.embedded_async_store import EmbeddedAsyncStore
from trackside.embedded_registry import EmbeddedRegistry

JOB = "sleeper"
VERSION = "0.0.1"
SLEEPER = '''\
import asyncio

from trackside_wrapper.logs import caller_name_var, tracing_id_var


class Sleeper:
    async def perform(self, value: int = 0, seconds: float = 0) -> dict:
        """
        Answer after a while, saying who called.
        :param value: Echoed back.
        :param seconds: How long to take.
        """
        await asyncio.sleep(seconds)
        return {"value": value, "tracing_id": tracing_id_var.get(), "caller": caller_name_var.get()}

    def refuse(self, reason: str = "no") -> None:
        """
        Always refuse.
        :param reason: The error message.
        """
        raise ValueError(reason)

    def auxiliary_endpoints(self) -> dict:
        return {"/refuse": self.refuse}

    def docs_input_example(self) -> dict:
        return {"value": 1}
'''
PERFORM = f"/pub/async/new/job/{JOB}/{VERSION}/api/v1/perform"


class Gateway:
    """A uvicorn server in a thread serving only the async routes; `stop()` is a gateway restart's
    first half (lifespan shutdown: running calls are cancelled and stay `running` in the store)."""

    def __init__(self, registry: Registry, store: AsyncCallStore, settings: AsyncSettings) -> None:
        self.calls = AsyncCalls(registry, store, settings)
        self.url = f"http://127.0.0.1:{free_port()}"
        config = uvicorn.Config(
            self.calls,  # its own lifespan: start (resume unfinished tasks) and aclose
            host="127.0.0.1",
            port=int(self.url.rsplit(":", 1)[1]),
            log_level="warning",
            lifespan="on",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "the gateway did not start"
            time.sleep(0.01)
        self.recovery = self.calls.recovery
        self.client = httpx.Client(base_url=self.url, timeout=30)

    def stop(self) -> None:
        self.client.close()
        self.server.should_exit = True
        self.thread.join(15)
        assert not self.thread.is_alive()

    def start_task(self, token: str, payload: dict[str, Any], **headers: str) -> str:
        r = self.client.post(PERFORM, json=payload, headers={"X-Racetrack-Auth": token, **headers})
        assert r.status_code == 201, r.text
        task_id: str = r.json()["task_id"]
        return task_id

    def status(self, task_id: str, token: str) -> dict[str, Any]:
        r = self.client.get(f"/pub/async/task/{task_id}/status", headers={"X-Racetrack-Auth": token})
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    def wait_status(self, task_id: str, token: str, status: str, timeout: float = 10) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            body = self.status(task_id, token)
            if body["status"] == status:
                return body
            assert time.monotonic() < deadline, f"task still {body['status']}, not {status}"
            time.sleep(0.05)

    def poll(self, task_id: str, token: str | None, timeout: float | None = None) -> httpx.Response:
        query = "" if timeout is None else f"?timeout={timeout}"
        headers = {"X-Racetrack-Auth": token} if token else {}
        return self.client.get(f"/pub/async/task/{task_id}/poll{query}", headers=headers)


class Platform:
    def __init__(self, plane: ControlPlane, tokens: dict[str, str]) -> None:
        self.plane = plane
        self.registry = EmbeddedRegistry(plane)
        self.tokens = tokens


def deploy(client: TestClient, admin_token: str, remote: str) -> None:
    manifest = {
        "name": JOB,
        "owner_email": "async@example.com",
        "jobtype": "python3:latest",
        "version": VERSION,
        "git": {"remote": remote},
        "jobtype_extra": {"entrypoint_path": "entrypoint.py"},
    }
    headers = {"X-Racetrack-Auth": admin_token}
    r = client.post("/api/v1/deploy", json={"manifest": manifest}, headers=headers)
    assert r.status_code == 202, r.text
    deadline = time.monotonic() + 180
    while True:
        body = client.get(f"/api/v1/deploy/{r.json()['id']}", headers=headers).json()
        if body["status"] != "in_progress":
            assert body["status"] == "done", body
            return
        assert time.monotonic() < deadline, body
        time.sleep(0.1)


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    data = tmp_path_factory.mktemp("async-lifecycle")
    config = lifecycle_config(data)
    plane = ControlPlane(config, pub_url="http://127.0.0.1:7200/pub")
    report = plane.start()
    assert report.admin_token
    try:
        repo = make_repo(tmp_path_factory.mktemp("repos") / JOB, {"entrypoint.py": SLEEPER})
        with TestClient(create_app(plane)) as client:
            deploy(client, report.admin_token, file_url(repo))
        tokens = {}
        with plane.db.session() as session:
            for name, may_call in (("alice", True), ("bob", True), ("carol", False)):
                subject = esc_subject(create_esc(session, name, actor="tests"))
                if may_call:
                    grant(session, subject, Scope.CALL_JOB, actor="tests", family=JOB)
                tokens[name] = issue_token(session, subject, actor="tests").token
        platform = Platform(plane, tokens)
        yield platform
        platform.registry.close()
    finally:
        plane.stop()


@pytest.fixture(scope="module")
def gateway(platform: Platform) -> Iterator[Gateway]:
    """The embedded arrangement: tasks in the lifecycle's own database."""
    gateway = Gateway(
        platform.registry, EmbeddedAsyncStore(platform.plane.db), AsyncSettings(max_request_bytes=64 * 1024)
    )
    yield gateway
    gateway.stop()


@pytest.fixture
def own_store(tmp_path: Path) -> Iterator[EmbeddedAsyncStore]:
    """A database of its own, for gateways that restart over it (no other test's tasks in it)."""
    db = Database(f"sqlite:///{tmp_path / 'async.db'}")
    yield EmbeddedAsyncStore(db)
    db.dispose()


def test_a_task_runs_in_the_background_and_poll_returns_the_jobs_answer(
    platform: Platform, gateway: Gateway
) -> None:
    alice = platform.tokens["alice"]
    r = gateway.client.post(
        PERFORM,
        json={"value": 7},
        headers={
            "X-Racetrack-Auth": alice,
            "Cookie": f"X-Racetrack-Auth={alice}; theme=dark",
            "X-Request-Tracing-Id": "trace-async-1",
            "X-Caller-Name": "User forged",
            "X-Custom": "kept",
        },
    )
    assert r.status_code == 201, r.text
    task_id = r.json()["task_id"]
    assert r.json() == {"task_id": task_id, "status": "pending"}
    assert r.headers["location"] == f"/pub/async/task/{task_id}/status"

    answer = gateway.poll(task_id, alice)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["x-trackside-task-id"] == task_id
    assert answer.headers["x-request-tracing-id"] == "trace-async-1"
    assert answer.json() == {"value": 7, "tracing_id": "trace-async-1", "caller": "ESC alice"}
    assert gateway.poll(task_id, alice).json() == answer.json()  # kept until it expires, not consumed

    status = gateway.status(task_id, alice)
    assert status["status"] == "done" and status["status_code"] == 200 and status["retried"] is False
    assert status["job_name"] == JOB and status["job_version"] == VERSION
    assert status["endpoint"] == "/api/v1/perform" and status["method"] == "POST"
    assert status["finished_at"] and status["expires_at"] > status["finished_at"]

    stored = asyncio.run(EmbeddedAsyncStore(platform.plane.db).get(task_id))
    assert stored is not None
    assert "x-racetrack-auth" not in stored.request_headers
    assert stored.request_headers["cookie"] == "theme=dark"  # the token's cookie is gone, not the others
    assert alice not in str(stored.request_headers)
    assert stored.request_headers["x-custom"] == "kept"
    assert stored.request_headers["x-caller-name"] == "ESC alice"
    assert stored.subject_key is not None and stored.subject_key.startswith("esc:")


def test_an_error_answer_of_the_job_is_the_result_with_its_status_code(
    platform: Platform, gateway: Gateway
) -> None:
    alice = platform.tokens["alice"]
    r = gateway.client.post(
        f"/pub/async/new/job/{JOB}/latest/api/v1/refuse",
        json={"reason": "not today"},
        headers={"X-Racetrack-Auth": alice},
    )
    assert r.status_code == 201, r.text
    answer = gateway.poll(r.json()["task_id"], alice)
    assert answer.status_code == 400
    assert "not today" in answer.text
    assert gateway.status(r.json()["task_id"], alice)["job_version"] == VERSION  # `latest` resolved


def test_long_poll_waits_for_the_result_and_status_answers_at_once(
    platform: Platform, gateway: Gateway
) -> None:
    alice = platform.tokens["alice"]
    started = time.monotonic()
    task_id = gateway.start_task(alice, {"value": 3, "seconds": 1.5})

    status = gateway.wait_status(task_id, alice, "running")
    assert status["started_at"] and status["finished_at"] is None and "status_code" not in status
    assert time.monotonic() - started < 1.0  # at once, not after the call

    before = time.monotonic()
    early = gateway.poll(task_id, alice, timeout=0.3)
    assert early.status_code == 202 and early.json() == {"task_id": task_id, "status": "running"}
    assert 0.25 < time.monotonic() - before < 1.0

    answer = gateway.poll(task_id, alice)  # waits, up to 30 s by default
    assert answer.status_code == 200 and answer.json()["value"] == 3
    assert 1.4 < time.monotonic() - started < 4.0  # answered when the job answered


def test_only_the_subject_that_started_a_task_may_read_it(platform: Platform, gateway: Gateway) -> None:
    alice, bob = platform.tokens["alice"], platform.tokens["bob"]
    task_id = gateway.start_task(alice, {"value": 1})
    assert gateway.poll(task_id, alice).status_code == 200

    unknown = "00000000-0000-4000-8000-000000000000"
    missing = gateway.poll(unknown, alice)
    assert missing.status_code == 404
    for token in (bob, None, "tst_not-a-token"):
        for r in (
            gateway.poll(task_id, token, timeout=0),
            gateway.client.get(
                f"/pub/async/task/{task_id}/status", headers={"X-Racetrack-Auth": token} if token else {}
            ),
        ):
            assert r.status_code == 404, r.text  # the same answer as for a task that does not exist
            assert r.json()["error"] == missing.json()["error"].replace(unknown, task_id)
    # the cookie is a token like the header
    by_cookie = gateway.client.get(
        f"/pub/async/task/{task_id}/status", headers={"Cookie": f"theme=dark; X-Racetrack-Auth={alice}"}
    )
    assert by_cookie.status_code == 200 and by_cookie.json()["status"] == "done"


def test_an_idempotency_key_returns_the_existing_task(platform: Platform, gateway: Gateway) -> None:
    alice, bob = platform.tokens["alice"], platform.tokens["bob"]
    first = gateway.client.post(
        PERFORM, json={"value": 5}, headers={"X-Racetrack-Auth": alice, "Idempotency-Key": "order-42"}
    )
    assert first.status_code == 201, first.text
    again = gateway.client.post(
        PERFORM, json={"value": 5}, headers={"X-Racetrack-Auth": alice, "Idempotency-Key": "order-42"}
    )
    assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
    assert again.json()["task_id"] == first.json()["task_id"]

    other_body = gateway.client.post(
        PERFORM, json={"value": 6}, headers={"X-Racetrack-Auth": alice, "Idempotency-Key": "order-42"}
    )
    assert other_body.status_code == 422 and "different request" in other_body.json()["error"]

    # keys belong to a subject: bob's order-42 is a task of his own
    bobs = gateway.client.post(
        PERFORM, json={"value": 5}, headers={"X-Racetrack-Auth": bob, "Idempotency-Key": "order-42"}
    )
    assert bobs.status_code == 201 and bobs.json()["task_id"] != first.json()["task_id"]
    assert gateway.poll(first.json()["task_id"], alice).json()["value"] == 5
    assert gateway.poll(bobs.json()["task_id"], bob).json()["caller"] == "ESC bob"


def test_refusals_match_the_synchronous_gateway(platform: Platform, gateway: Gateway) -> None:
    alice, carol = platform.tokens["alice"], platform.tokens["carol"]
    client = gateway.client

    def post(path: str, token: str | None = alice, **kwargs: Any) -> httpx.Response:
        headers = {"X-Racetrack-Auth": token} if token else {}
        return client.post(path, headers={**headers, **kwargs.pop("headers", {})}, **kwargs)

    assert post(PERFORM, token=None, json={}).status_code == 401
    assert post(PERFORM, token="tst_unknown", json={}).status_code == 401
    forbidden = post(PERFORM, token=carol, json={})
    assert forbidden.status_code == 403 and "ESC carol" in forbidden.json()["error"]
    assert post("/pub/async/new/job/nope/latest/api/v1/perform", json={}).status_code == 404
    assert post(f"/pub/async/new/job/{JOB}/9.9.9/api/v1/perform", json={}).status_code == 404
    too_big = post(PERFORM, content=b"x" * (64 * 1024 + 1))
    assert too_big.status_code == 413 and too_big.json()["requestId"]
    assert post(PERFORM, json={}, headers={"Idempotency-Key": "k" * 256}).status_code == 400
    escape = post(f"/pub/async/new/job/{JOB}/{VERSION}/api/%2e%2e/%2e%2e/other/1.0.0", json={})
    assert escape.status_code == 400
    assert client.get(PERFORM, headers={"X-Racetrack-Auth": alice}).status_code == 405
    assert client.get("/pub/async/task/not-a-uuid/poll").status_code == 404
    assert client.get("/pub/async/task/00000000-0000-4000-8000-000000000000/nothing").status_code == 404
    task_id = gateway.start_task(alice, {"value": 2})
    assert (
        client.get(
            f"/pub/async/task/{task_id}/poll?timeout=soon", headers={"X-Racetrack-Auth": alice}
        ).status_code
        == 400
    )


def test_a_gateway_restart_retries_a_running_task_once_then_fails_it(
    platform: Platform, own_store: EmbeddedAsyncStore
) -> None:
    alice = platform.tokens["alice"]
    settings = AsyncSettings()
    # a task stored by a gateway that stopped before starting it
    pending, _ = asyncio.run(
        own_store.create(
            NewAsyncTask(
                JOB,
                VERSION,
                "POST",
                "/api/v1/perform",
                {"content-type": "application/json"},
                b'{"value": 11}',
                subject_key=platform.registry.authorize(alice, JOB, VERSION, "/").subject_key,
            )
        )
    )

    first = Gateway(platform.registry, own_store, settings)
    assert first.recovery == Recovery(resumed=[pending.id])
    quick = first.start_task(alice, {"value": 1, "seconds": 3})
    slow = first.start_task(alice, {"value": 2, "seconds": 8})  # not longer: the job ends it before it stops
    first.wait_status(quick, alice, "running")
    first.wait_status(slow, alice, "running")
    assert first.poll(pending.id, alice).json()["value"] == 11
    first.stop()  # both calls are under way

    second = Gateway(platform.registry, own_store, settings)
    assert second.recovery is not None and sorted(second.recovery.retried) == sorted([quick, slow])
    answer = second.poll(quick, alice)
    assert answer.status_code == 200 and answer.json()["value"] == 1
    assert second.status(quick, alice)["retried"] is True
    assert second.wait_status(slow, alice, "running")["retried"] is True
    second.stop()  # the slow call is interrupted a second time

    third = Gateway(platform.registry, own_store, settings)
    try:
        assert third.recovery == Recovery(failed=[slow])
        failed = third.poll(slow, alice)
        assert failed.status_code == 500
        assert failed.json()["task_status"] == "failed" and failed.json()["task_id"] == slow
        assert "stopped twice" in failed.json()["error"] and "retried once" in failed.json()["error"]
        status = third.status(slow, alice)
        assert status["status"] == "failed" and "stopped twice" in status["error"]
        assert third.poll(quick, alice).json()["value"] == 1  # results survive restarts
    finally:
        third.stop()


def test_results_expire(platform: Platform, own_store: EmbeddedAsyncStore) -> None:
    alice = platform.tokens["alice"]
    gateway = Gateway(platform.registry, own_store, AsyncSettings(result_ttl=1.0, cleanup_interval=0.2))
    try:
        task_id = gateway.start_task(alice, {"value": 9})
        assert gateway.poll(task_id, alice).json()["value"] == 9
        deadline = time.monotonic() + 5
        while asyncio.run(own_store.get(task_id, bodies=False)) is not None:
            assert time.monotonic() < deadline, "the expired task was not deleted"
            time.sleep(0.1)
        assert gateway.poll(task_id, alice).status_code == 404
        unfinished = asyncio.run(own_store.unfinished())
        assert unfinished == []
    finally:
        gateway.stop()


class RefusingRegistry:
    """A job whose one replica refuses connections, callable by anyone (a public endpoint)."""

    def __init__(self) -> None:
        self.replica = f"http://127.0.0.1:{free_port()}"  # nothing listens there

    def resolve(self, name: str, version: str) -> JobTarget | None:
        return JobTarget(name, "1.0.0", (self.replica,), "running") if name == "gone" else None

    def authorize(self, token: str | None, name: str, version: str, endpoint: str) -> CallDecision:
        return CallDecision(True, 200, None, "public endpoint", None)


def test_an_unreachable_job_fails_the_task_and_anonymous_tasks_are_read_by_id(
    own_store: EmbeddedAsyncStore,
) -> None:
    gateway = Gateway(RefusingRegistry(), own_store, AsyncSettings(unavailable_grace=0.5))
    try:
        r = gateway.client.post("/pub/async/new/job/gone/latest/api/v1/perform", json={})
        assert r.status_code == 201, r.text
        task_id = r.json()["task_id"]
        failed = gateway.poll(task_id, None)
        assert failed.status_code == 500, failed.text
        assert "job gone 1.0.0 is unreachable" in failed.json()["error"]
        assert gateway.client.get(f"/pub/async/task/{task_id}/status").json()["status"] == "failed"
        keyed = gateway.client.post(
            "/pub/async/new/job/gone/latest/api/v1/perform", json={}, headers={"Idempotency-Key": "k"}
        )
        assert keyed.status_code == 400 and "authenticated caller" in keyed.json()["error"]
    finally:
        gateway.stop()
