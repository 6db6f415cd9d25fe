"""What the gateway needs to keep async tasks durably: `AsyncCallStore`, and the records it deals in.

The gateway never imports the lifecycle (DESIGN §1). In embedded mode
`trackside.embedded_async_store.EmbeddedAsyncStore` implements this over the lifecycle's
`async_calls` table; for a gateway in a process of its own `pub.lifecycle_async_store` implements it
over the lifecycle's HTTP API.

Callers are identified by `subject_key` (`CallDecision.subject_key`, e.g. "user:3"); None is an
anonymous caller of a public endpoint. Methods are coroutines: an implementation may block on a
database or the network, never the gateway's event loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol
from urllib.parse import unquote


class StoreUnavailable(Exception):
    """The store cannot reach its storage now (e.g. the lifecycle is down): the gateway answers 503."""

    status = 503


class TaskStatus(StrEnum):
    PENDING = "pending"  # stored, not started (or waiting for a free slot)
    RUNNING = "running"  # the call to the job is under way
    DONE = "done"  # the job answered (any status code); the answer is stored
    FAILED = "failed"  # no answer could be had; `error` says why

    @property
    def finished(self) -> bool:
        return self in (TaskStatus.DONE, TaskStatus.FAILED)


@dataclass(frozen=True)
class NewAsyncTask:
    job_name: str
    job_version: str  # exact: `latest` and wildcards are resolved before a task is stored
    method: str
    path: str  # inside the job, as the caller encoded it, with the query string: "/api/v1/perform?x=1"
    request_headers: dict[str, str]  # already stripped of the caller's token and cookies
    request_body: bytes
    subject_key: str | None
    idempotency_key: str | None = None


@dataclass(frozen=True)
class AsyncTask:
    id: str
    job_name: str
    job_version: str
    method: str
    path: str
    status: TaskStatus
    subject_key: str | None
    idempotency_key: str | None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    expires_at: datetime | None = None  # set when the task finishes; deleted after it
    retried: bool = False  # it was running when a gateway stopped, and was started again
    error: str | None = None  # why it failed (status FAILED)
    # the request and the job's answer; empty when read with bodies=False
    request_headers: dict[str, str] = field(default_factory=dict)
    request_body: bytes = b""
    result_status: int | None = None
    result_headers: dict[str, str] = field(default_factory=dict)
    result_body: bytes | None = None

    @property
    def endpoint(self) -> str:
        """The path inside the job, decoded, without the query string (what permissions are about)."""
        return unquote(self.path.split("?", 1)[0]) or "/"

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now


class AsyncCallStore(Protocol):
    async def create(self, task: NewAsyncTask) -> tuple[AsyncTask, bool]:
        """Store a pending task; (task, True).

        With an idempotency key, a live task of the same subject and key is returned instead:
        (existing task, False), also when two requests race. An expired one is replaced.
        """
        ...

    async def get(self, task_id: str, *, bodies: bool = True) -> AsyncTask | None:
        """The task or None; bodies=False leaves out request and result bodies and headers (cheap)."""
        ...

    async def mark_running(self, task_id: str) -> None: ...

    async def mark_retried(self, task_id: str, note: str) -> None:
        """Record that an interrupted task is started again (it is retried at most once)."""
        ...

    async def finish(
        self,
        task_id: str,
        *,
        status_code: int,
        headers: dict[str, str],
        body: bytes,
        expires_at: datetime,
    ) -> None: ...

    async def fail(self, task_id: str, error: str, *, expires_at: datetime) -> None: ...

    async def unfinished(self) -> list[AsyncTask]:
        """Pending and running tasks, oldest first, without bodies (what a starting gateway resumes)."""
        ...

    async def delete_expired(self, now: datetime) -> int:
        """Delete tasks whose `expires_at` has passed; how many went."""
        ...
