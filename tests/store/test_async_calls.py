"""Async call records: created, run, finished or failed, found by idempotency key, expired."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from lifecycle.store import AlreadyExists, Database
from lifecycle.store.async_calls import (
    create_async_call,
    delete_expired_async_calls,
    fail_async_call,
    find_by_idempotency_key,
    finish_async_call,
    get_async_call,
    mark_running,
    unfinished_async_calls,
)
from lifecycle.store.models import AsyncCallStatus, SubjectType

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def _call(db: Database, key: str | None = None, expires_at: datetime | None = None) -> str:
    with db.session() as session:
        return create_async_call(
            session,
            job_name="adder",
            job_version="1.0.0",
            method="POST",
            path="/api/v1/perform",
            request_body=b'{"numbers": [1, 2]}',
            request_headers={"content-type": "application/json"},
            subject_type=SubjectType.USER,
            subject_id=1,
            idempotency_key=key,
            expires_at=expires_at,
        ).id


def test_a_call_runs_and_keeps_its_result(database: Database) -> None:
    call_id = _call(database)
    with database.session() as session:
        assert [c.id for c in unfinished_async_calls(session)] == [call_id]
        mark_running(session, call_id, NOW)
    with database.session() as session:
        finish_async_call(session, call_id, status_code=200, headers={"x": "y"}, body=b"3", now=NOW)
    with database.session() as session:
        call = get_async_call(session, call_id)
        assert call is not None
        assert call.status is AsyncCallStatus.DONE
        assert (call.result_status, call.result_headers, call.result_body) == (200, {"x": "y"}, b"3")
        assert call.request_body == b'{"numbers": [1, 2]}'
        assert (call.started_at, call.finished_at) == (NOW, NOW)
        assert unfinished_async_calls(session) == []


def test_a_failed_call(database: Database) -> None:
    call_id = _call(database)
    with database.session() as session:
        fail_async_call(session, call_id, "job unreachable")
    with database.session() as session:
        call = get_async_call(session, call_id)
        assert call is not None and (call.status, call.error) == (AsyncCallStatus.FAILED, "job unreachable")


def test_idempotency_keys_are_unique_per_subject(database: Database) -> None:
    call_id = _call(database, key="k1")
    _call(database)
    _call(database)  # calls without a key never collide
    with database.session() as session:
        found = find_by_idempotency_key(session, SubjectType.USER, 1, "k1")
        assert found is not None and found.id == call_id
        assert find_by_idempotency_key(session, SubjectType.USER, 2, "k1") is None
    with pytest.raises(AlreadyExists):
        _call(database, key="k1")


def test_expired_calls_are_deleted(database: Database) -> None:
    old = _call(database, expires_at=NOW - timedelta(seconds=1))
    fresh = _call(database, expires_at=NOW + timedelta(hours=1))
    with database.session() as session:
        assert delete_expired_async_calls(session, NOW) == 1
    with database.session() as session:
        assert get_async_call(session, old) is None
        assert get_async_call(session, fresh) is not None
