"""Both AsyncCallStore implementations keep the same contract: the in-process one of `trackside up`
(trackside.embedded_async_store) and the HTTP one of `trackside serve pub`
(pub.lifecycle_async_store, against the real lifecycle API served by uvicorn)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest

from lifecycle.api.app import create_app
from lifecycle.auth.gateway_credential import ensure_gateway_credential
from lifecycle.control_plane import ControlPlane
from pub.async_store import AsyncCallStore, NewAsyncTask, StoreUnavailable, TaskStatus
from pub.lifecycle_async_store import LifecycleAsyncStore
from tests.conftest import free_port
from tests.lifecycle.platform import lifecycle_config
from tests.pub.gateway_platform import ServerThread
from trackside.embedded_async_store import EmbeddedAsyncStore

T = TypeVar("T")
GATEWAY_TOKEN = "tst_" + "contract-gateway-credential-0123456789abcdef"


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    plane = ControlPlane(
        lifecycle_config(tmp_path_factory.mktemp("contract")), pub_url="http://127.0.0.1:1/pub"
    )
    plane.start()
    assert ensure_gateway_credential(plane.db, GATEWAY_TOKEN) is True
    assert ensure_gateway_credential(plane.db, GATEWAY_TOKEN) is False  # once only
    yield plane
    plane.stop()


@pytest.fixture(scope="module")
def lifecycle_url(plane: ControlPlane) -> Iterator[str]:
    server = ServerThread(create_app(plane))
    yield server.url
    server.stop()


@pytest.fixture(params=["embedded", "http"])
def store(
    request: pytest.FixtureRequest, plane: ControlPlane, lifecycle_url: str
) -> Iterator[AsyncCallStore]:
    if request.param == "embedded":
        yield EmbeddedAsyncStore(plane.db)
        return
    # a client per test: asyncio.run gives each call a loop of its own, so no connection is reused
    # across loops (the store makes its client on first use)
    yield _PerCallHttpStore(lifecycle_url)


class _PerCallHttpStore:
    """LifecycleAsyncStore with a fresh client for each asyncio.run of the test."""

    def __init__(self, url: str) -> None:
        self.url = url

    def __getattr__(self, name: str) -> Any:
        async def call(*args: Any, **kwargs: Any) -> Any:
            store = LifecycleAsyncStore(self.url, GATEWAY_TOKEN)
            try:
                return await getattr(store, name)(*args, **kwargs)
            finally:
                await store.aclose()

        return call


def new(key: str | None = None, subject: str | None = "esc:1", body: bytes = b'{"x": 1}') -> NewAsyncTask:
    return NewAsyncTask(
        job_name="adder",
        job_version="1.0.0",
        method="POST",
        path="/api/v1/perform?debug=1",
        request_headers={"content-type": "application/json", "x-custom": "kept"},
        request_body=body,
        subject_key=subject,
        idempotency_key=key,
    )


def test_a_task_from_pending_to_done(store: AsyncCallStore) -> None:
    task, created = run(store.create(new(body=b"\x00\xffbinary")))
    assert created and task.status is TaskStatus.PENDING and task.subject_key == "esc:1"
    assert task.request_body == b"\x00\xffbinary" and task.endpoint == "/api/v1/perform"
    run(store.mark_running(task.id))
    light = run(store.get(task.id, bodies=False))
    assert light is not None and light.status is TaskStatus.RUNNING and light.started_at is not None
    assert light.request_body == b"" and light.request_headers == {}
    expires = datetime.now(UTC) + timedelta(hours=2)
    run(
        store.finish(
            task.id, status_code=201, headers={"content-type": "text/plain"}, body=b"ok\n", expires_at=expires
        )
    )
    done = run(store.get(task.id))
    assert done is not None and done.status is TaskStatus.DONE
    assert (done.result_status, done.result_headers, done.result_body) == (
        201,
        {"content-type": "text/plain"},
        b"ok\n",
    )
    assert done.request_headers["x-custom"] == "kept" and done.expires_at is not None
    assert abs((done.expires_at - expires).total_seconds()) < 1
    assert run(store.get("00000000-0000-4000-8000-000000000000")) is None


def test_idempotency_keys_are_per_subject(store: AsyncCallStore) -> None:
    key = f"key-{datetime.now(UTC).timestamp()}"
    first, created = run(store.create(new(key)))
    again, created_again = run(store.create(new(key)))
    assert created and not created_again and again.id == first.id
    other, created_other = run(store.create(new(key, subject="esc:2")))
    assert created_other and other.id != first.id


def test_restarts_failures_and_expiry(store: AsyncCallStore) -> None:
    task, _ = run(store.create(new()))
    run(store.mark_running(task.id))
    unfinished = {t.id: t for t in run(store.unfinished())}
    assert task.id in unfinished and unfinished[task.id].retried is False
    run(store.mark_retried(task.id, "the gateway stopped"))
    retried = run(store.get(task.id))
    assert retried is not None and retried.retried and retried.error is None
    past = datetime.now(UTC) - timedelta(seconds=1)
    run(store.fail(task.id, "no replica answered", expires_at=past))
    failed = run(store.get(task.id))
    assert failed is not None and failed.status is TaskStatus.FAILED and failed.error == "no replica answered"
    assert task.id not in {t.id for t in run(store.unfinished())}
    assert run(store.delete_expired(datetime.now(UTC))) >= 1
    assert run(store.get(task.id)) is None
    run(store.mark_running(task.id))  # deleted meanwhile: nothing to update, no error


def test_an_unreachable_lifecycle_is_store_unavailable() -> None:
    store = LifecycleAsyncStore(f"http://127.0.0.1:{free_port()}", GATEWAY_TOKEN, timeout=2)
    with pytest.raises(StoreUnavailable, match="unreachable"):
        run(store.get("any"))


def test_another_credential_is_refused(lifecycle_url: str) -> None:
    store = LifecycleAsyncStore(lifecycle_url, "tst_not-the-gateway")
    with pytest.raises(StoreUnavailable, match="401"):
        run(store.unfinished())


def test_the_gateway_credential_is_checked(plane: ControlPlane) -> None:
    from lifecycle.auth.gateway_credential import BadGatewayToken

    for bad in ("short", "tst_short", "no-prefix-" + "x" * 40, "tst_" + "x" * 40 + " y"):
        with pytest.raises(BadGatewayToken, match="TRACKSIDE_GATEWAY_TOKEN"):
            ensure_gateway_credential(plane.db, bad)
