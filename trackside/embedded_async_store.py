"""The gateway's AsyncCallStore over the lifecycle's `async_calls` table, in-process (`trackside
up`): lifecycle.async_call_records does the work in worker threads, so the gateway's event loop
never waits on the database."""

from __future__ import annotations

import asyncio
from datetime import datetime

from lifecycle.async_call_records import AsyncCallRecords, failure, retried, subject_key
from lifecycle.store.database import Database
from lifecycle.store.models import AsyncCall
from pub.async_store import AsyncTask, NewAsyncTask, TaskStatus


def to_task(call: AsyncCall, bodies: bool = True) -> AsyncTask:
    status = TaskStatus(call.status.value)
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
        retried=retried(call),
        error=failure(call),
        request_headers=dict(call.request_headers) if bodies else {},
        request_body=bytes(call.request_body) if bodies else b"",
        result_status=call.result_status,
        result_headers=dict(call.result_headers or {}) if bodies and status.finished else {},
        result_body=bytes(call.result_body) if bodies and call.result_body is not None else None,
    )


class EmbeddedAsyncStore:
    def __init__(self, db: Database) -> None:
        self.records = AsyncCallRecords(db, to_task)

    async def create(self, task: NewAsyncTask) -> tuple[AsyncTask, bool]:
        return await asyncio.to_thread(
            lambda: self.records.create(
                job_name=task.job_name,
                job_version=task.job_version,
                method=task.method,
                path=task.path,
                request_headers=task.request_headers,
                request_body=task.request_body,
                subject_key=task.subject_key,
                idempotency_key=task.idempotency_key,
            )
        )

    async def get(self, task_id: str, *, bodies: bool = True) -> AsyncTask | None:
        return await asyncio.to_thread(self.records.get, task_id, bodies)

    async def mark_running(self, task_id: str) -> None:
        await asyncio.to_thread(self.records.mark_running, task_id)

    async def mark_retried(self, task_id: str, note: str) -> None:
        await asyncio.to_thread(self.records.mark_retried, task_id, note)

    async def finish(
        self, task_id: str, *, status_code: int, headers: dict[str, str], body: bytes, expires_at: datetime
    ) -> None:
        await asyncio.to_thread(
            lambda: self.records.finish(
                task_id, status_code=status_code, headers=headers, body=body, expires_at=expires_at
            )
        )

    async def fail(self, task_id: str, error: str, *, expires_at: datetime) -> None:
        await asyncio.to_thread(lambda: self.records.fail(task_id, error, expires_at=expires_at))

    async def unfinished(self) -> list[AsyncTask]:
        return await asyncio.to_thread(self.records.unfinished)

    async def delete_expired(self, now: datetime) -> int:
        return await asyncio.to_thread(self.records.delete_expired, now)
