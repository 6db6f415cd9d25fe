"""Durable records of calls made through `/pub/async`: request, state and result."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from lifecycle.store.column_types import utcnow
from lifecycle.store.errors import NotFound, flush_new
from lifecycle.store.models import AsyncCall, AsyncCallStatus, SubjectType


def create_async_call(
    session: Session,
    *,
    job_name: str,
    job_version: str,
    method: str,
    path: str,
    request_body: bytes = b"",
    request_headers: dict[str, str] | None = None,
    subject_type: SubjectType | None = None,
    subject_id: int | None = None,
    idempotency_key: str | None = None,
    expires_at: datetime | None = None,
) -> AsyncCall:
    """request_headers must already be stripped of the caller's token and cookies."""
    call = AsyncCall(
        job_name=job_name,
        job_version=job_version,
        method=method,
        path=path,
        request_body=request_body,
        request_headers=request_headers or {},
        subject_type=subject_type,
        subject_id=subject_id,
        idempotency_key=idempotency_key,
        expires_at=expires_at,
    )
    session.add(call)
    flush_new(session, f"async call with idempotency key {idempotency_key!r}")
    return call


def get_async_call(session: Session, call_id: str) -> AsyncCall | None:
    return session.get(AsyncCall, call_id)


def find_by_idempotency_key(
    session: Session, subject_type: SubjectType | None, subject_id: int | None, key: str
) -> AsyncCall | None:
    return session.scalar(
        select(AsyncCall).where(
            AsyncCall.subject_type == subject_type,
            AsyncCall.subject_id == subject_id,
            AsyncCall.idempotency_key == key,
        )
    )


def mark_running(session: Session, call_id: str, now: datetime | None = None) -> AsyncCall:
    call = _require(session, call_id)
    call.status = AsyncCallStatus.RUNNING
    call.started_at = now or utcnow()
    return call


def finish_async_call(
    session: Session,
    call_id: str,
    *,
    status_code: int,
    headers: dict[str, str],
    body: bytes,
    now: datetime | None = None,
) -> AsyncCall:
    call = _require(session, call_id)
    call.status = AsyncCallStatus.DONE
    call.result_status = status_code
    call.result_headers = headers
    call.result_body = body
    call.finished_at = now or utcnow()
    return call


def fail_async_call(session: Session, call_id: str, error: str, now: datetime | None = None) -> AsyncCall:
    call = _require(session, call_id)
    call.status = AsyncCallStatus.FAILED
    call.error = error
    call.finished_at = now or utcnow()
    return call


def unfinished_async_calls(session: Session) -> list[AsyncCall]:
    """Pending and running calls, oldest first (to resume after a restart)."""
    return list(
        session.scalars(
            select(AsyncCall)
            .where(AsyncCall.status.in_([AsyncCallStatus.PENDING, AsyncCallStatus.RUNNING]))
            .order_by(AsyncCall.created_at)
        )
    )


def delete_expired_async_calls(session: Session, now: datetime | None = None) -> int:
    result = session.execute(
        delete(AsyncCall)
        .where(AsyncCall.expires_at.is_not(None), AsyncCall.expires_at < (now or utcnow()))
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0))


def _require(session: Session, call_id: str) -> AsyncCall:
    call = get_async_call(session, call_id)
    if call is None:
        raise NotFound(f"async call {call_id} not found")
    return call
