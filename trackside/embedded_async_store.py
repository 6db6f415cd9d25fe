"""The gateway's AsyncCallStore over the lifecycle's `async_calls` table (embedded mode).

Subjects: the gateway knows a caller by `CallDecision.subject_key`, "<type>:<id>" with the
lifecycle's SubjectType value and the subject's id ("user:3", "esc:1", "family:2"); the table
keeps them as subject_type and subject_id. The database is used from worker threads, so the
gateway's event loop never waits on it.

The table has no attempt counter: a task started again after a gateway restart carries the note
of that restart in `error` while it is unfinished (an unfinished task has no error otherwise),
which is what `AsyncTask.retried` reads.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, defer

from lifecycle.store.async_calls import (
    create_async_call,
    delete_expired_async_calls,
    fail_async_call,
    find_by_idempotency_key,
    finish_async_call,
    mark_running,
    unfinished_async_calls,
)
from lifecycle.store.column_types import utcnow
from lifecycle.store.database import Database
from lifecycle.store.errors import AlreadyExists, NotFound
from lifecycle.store.models import AsyncCall, SubjectType
from pub.async_store import AsyncTask, NewAsyncTask, TaskStatus


def subject_columns(subject_key: str | None) -> tuple[SubjectType | None, int | None]:
    if subject_key is None:
        return None, None
    kind, _, number = subject_key.partition(":")
    try:
        return SubjectType(kind), int(number)
    except ValueError:
        raise ValueError(f"subject key {subject_key!r} is not '<user|esc|family>:<id>'") from None


def subject_key(subject_type: SubjectType | None, subject_id: int | None) -> str | None:
    if subject_type is None or subject_id is None:
        return None
    return f"{subject_type.value}:{subject_id}"


def to_task(call: AsyncCall, bodies: bool = True) -> AsyncTask:
    status = TaskStatus(call.status.value)
    finished = status.finished
    return AsyncTask(
        id=call.id,
        job_name=call.job_name,
        job_version=call.job_version,
        method=call.method,
        path=call.path,
        status=status,
        subject_key=subject_key(call.subject_type, call.subject_id),
        idempotency_key=call.idempotency_key,
        created_at=call.created_at,
        started_at=call.started_at,
        finished_at=call.finished_at,
        expires_at=call.expires_at,
        retried=call.error is not None and status is not TaskStatus.FAILED,
        error=call.error if status is TaskStatus.FAILED else None,
        request_headers=dict(call.request_headers) if bodies else {},
        request_body=bytes(call.request_body) if bodies else b"",
        result_status=call.result_status,
        result_headers=dict(call.result_headers or {}) if bodies and finished else {},
        result_body=bytes(call.result_body) if bodies and call.result_body is not None else None,
    )


class EmbeddedAsyncStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(self, task: NewAsyncTask) -> tuple[AsyncTask, bool]:
        return await asyncio.to_thread(self._create, task)

    async def get(self, task_id: str, *, bodies: bool = True) -> AsyncTask | None:
        return await asyncio.to_thread(self._get, task_id, bodies)

    async def mark_running(self, task_id: str) -> None:
        await asyncio.to_thread(self._update, task_id, lambda session: mark_running(session, task_id))

    async def mark_retried(self, task_id: str, note: str) -> None:
        def retried(session: Session) -> None:
            call = session.get(AsyncCall, task_id)
            if call is None:
                raise NotFound(f"async call {task_id} not found")
            call.error = note

        await asyncio.to_thread(self._update, task_id, retried)

    async def finish(
        self,
        task_id: str,
        *,
        status_code: int,
        headers: dict[str, str],
        body: bytes,
        expires_at: datetime,
    ) -> None:
        def finish(session: Session) -> None:
            call = finish_async_call(session, task_id, status_code=status_code, headers=headers, body=body)
            call.expires_at = expires_at

        await asyncio.to_thread(self._update, task_id, finish)

    async def fail(self, task_id: str, error: str, *, expires_at: datetime) -> None:
        def fail(session: Session) -> None:
            fail_async_call(session, task_id, error).expires_at = expires_at

        await asyncio.to_thread(self._update, task_id, fail)

    async def unfinished(self) -> list[AsyncTask]:
        return await asyncio.to_thread(self._unfinished)

    async def delete_expired(self, now: datetime) -> int:
        return await asyncio.to_thread(self._delete_expired, now)

    # -- in worker threads ------------------------------------------------------------------

    def _create(self, task: NewAsyncTask) -> tuple[AsyncTask, bool]:
        subject_type, subject_id = subject_columns(task.subject_key)
        key = task.idempotency_key
        try:
            with self.db.session() as session:
                if key is not None:
                    existing = find_by_idempotency_key(session, subject_type, subject_id, key)
                    if existing is not None:
                        if existing.expires_at is None or existing.expires_at > utcnow():
                            return to_task(existing), False
                        session.delete(existing)  # expired: the key is free again
                        session.flush()
                call = create_async_call(
                    session,
                    job_name=task.job_name,
                    job_version=task.job_version,
                    method=task.method,
                    path=task.path,
                    request_body=task.request_body,
                    request_headers=task.request_headers,
                    subject_type=subject_type,
                    subject_id=subject_id,
                    idempotency_key=key,
                )
                return to_task(call), True
        except AlreadyExists:
            # another request with the same key won the race: its task is the one
            assert key is not None
            with self.db.session() as session:
                existing = find_by_idempotency_key(session, subject_type, subject_id, key)
                if existing is None:
                    raise
                return to_task(existing), False

    def _get(self, task_id: str, bodies: bool) -> AsyncTask | None:
        query = select(AsyncCall).where(AsyncCall.id == task_id)
        if not bodies:
            query = query.options(
                defer(AsyncCall.request_body),
                defer(AsyncCall.request_headers),
                defer(AsyncCall.result_body),
                defer(AsyncCall.result_headers),
            )
        with self.db.session() as session:
            call = session.scalar(query)
            return None if call is None else to_task(call, bodies)

    def _update(self, task_id: str, change: Callable[[Session], object]) -> None:
        try:
            with self.db.session() as session:
                change(session)
        except NotFound:
            pass  # deleted meanwhile: nothing left to update

    def _unfinished(self) -> list[AsyncTask]:
        with self.db.session() as session:
            return [to_task(call, bodies=False) for call in unfinished_async_calls(session)]

    def _delete_expired(self, now: datetime) -> int:
        with self.db.session() as session:
            return delete_expired_async_calls(session, now)
