"""The async calls of the gateway's `/pub/async`, kept in the lifecycle's `async_calls` table.

One implementation for both ways a gateway reaches it: in-process (`trackside up`, through
trackside.embedded_async_store) and over HTTP (lifecycle/api/async_calls.py, for `trackside serve
pub`). Each user converts the stored row into what it hands out (`convert(row, bodies)`), inside
the session, so nothing lazy is read after it closes.

Subjects: the gateway knows a caller by a subject key, "<type>:<id>" with the SubjectType value
and the subject's id ("user:3", "esc:1", "family:2"); the table keeps subject_type and subject_id.

The table has no attempt counter: a task started again after a gateway restart carries the note
of that restart in `error` while it is unfinished (an unfinished task has no error otherwise).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Generic, TypeVar

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
from lifecycle.store.models import AsyncCall, AsyncCallStatus, SubjectType

T = TypeVar("T")


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


def retried(call: AsyncCall) -> bool:
    """Started again after a gateway restart (see the module's doc)."""
    return call.error is not None and call.status is not AsyncCallStatus.FAILED


def failure(call: AsyncCall) -> str | None:
    """Why the call failed; None unless it did (`error` holds a restart note otherwise)."""
    return call.error if call.status is AsyncCallStatus.FAILED else None


class AsyncCallRecords(Generic[T]):
    """Blocking (call from worker threads); `convert(row, bodies)` makes what the methods return."""

    def __init__(self, db: Database, convert: Callable[[AsyncCall, bool], T]) -> None:
        self.db = db
        self._convert = convert

    def create(
        self,
        *,
        job_name: str,
        job_version: str,
        method: str,
        path: str,
        request_headers: dict[str, str],
        request_body: bytes,
        subject_key: str | None,
        idempotency_key: str | None = None,
    ) -> tuple[T, bool]:
        """A new pending call, (it, True); with an idempotency key, the live call of the same
        subject and key when there is one, (it, False), also when two requests race. An expired
        one is replaced."""
        subject_type, subject_id = subject_columns(subject_key)
        key = idempotency_key
        try:
            with self.db.session() as session:
                if key is not None:
                    existing = find_by_idempotency_key(session, subject_type, subject_id, key)
                    if existing is not None:
                        if existing.expires_at is None or existing.expires_at > utcnow():
                            return self._convert(existing, True), False
                        session.delete(existing)  # expired: the key is free again
                        session.flush()
                call = create_async_call(
                    session,
                    job_name=job_name,
                    job_version=job_version,
                    method=method,
                    path=path,
                    request_body=request_body,
                    request_headers=request_headers,
                    subject_type=subject_type,
                    subject_id=subject_id,
                    idempotency_key=key,
                )
                return self._convert(call, True), True
        except AlreadyExists:
            # another request with the same key won the race: its call is the one
            assert key is not None
            with self.db.session() as session:
                existing = find_by_idempotency_key(session, subject_type, subject_id, key)
                if existing is None:
                    raise
                return self._convert(existing, True), False

    def get(self, call_id: str, bodies: bool = True) -> T | None:
        """bodies=False leaves out request and result bodies and headers (cheap)."""
        query = select(AsyncCall).where(AsyncCall.id == call_id)
        if not bodies:
            query = query.options(
                defer(AsyncCall.request_body),
                defer(AsyncCall.request_headers),
                defer(AsyncCall.result_body),
                defer(AsyncCall.result_headers),
            )
        with self.db.session() as session:
            call = session.scalar(query)
            return None if call is None else self._convert(call, bodies)

    def mark_running(self, call_id: str) -> None:
        self._update(lambda session: mark_running(session, call_id))

    def mark_retried(self, call_id: str, note: str) -> None:
        def change(session: Session) -> None:
            call = session.get(AsyncCall, call_id)
            if call is None:
                raise NotFound(f"async call {call_id} not found")
            call.error = note

        self._update(change)

    def finish(
        self, call_id: str, *, status_code: int, headers: dict[str, str], body: bytes, expires_at: datetime
    ) -> None:
        def change(session: Session) -> None:
            call = finish_async_call(session, call_id, status_code=status_code, headers=headers, body=body)
            call.expires_at = expires_at

        self._update(change)

    def fail(self, call_id: str, error: str, *, expires_at: datetime) -> None:
        def change(session: Session) -> None:
            fail_async_call(session, call_id, error).expires_at = expires_at

        self._update(change)

    def unfinished(self) -> list[T]:
        """Pending and running calls, oldest first, without bodies (what a starting gateway resumes)."""
        with self.db.session() as session:
            return [self._convert(call, False) for call in unfinished_async_calls(session)]

    def delete_expired(self, now: datetime) -> int:
        with self.db.session() as session:
            return delete_expired_async_calls(session, now)

    def _update(self, change: Callable[[Session], object]) -> None:
        try:
            with self.db.session() as session:
                change(session)
        except NotFound:
            pass  # deleted meanwhile: nothing left to update
