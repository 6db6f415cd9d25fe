"""Async calls through the gateway (Racetrack-compatible), as a pure-ASGI app.

    POST|PUT|PATCH|DELETE /pub/async/new/job/{name}/{version}/{path}
        201 {"task_id", "status": "pending"}, Location: .../status. The same checks as a
        synchronous call (pub.routing, pub.headers, Registry.resolve and .authorize): 400 unsafe
        path or header, 404 unknown job or version, 401 no valid token, 403 no permission, 503 job
        not running; 413 body over `max_request_bytes` (16 MiB). With an `Idempotency-Key` header
        (1-255 printable ASCII characters; an authenticated caller only, else 400) a live task of
        the same caller and key is returned instead: 200 {"task_id", "status"} with
        `Idempotent-Replayed: true`, or 422 when that key was used for a different request (job,
        method, path or body).
    GET /pub/async/task/{id}/poll?timeout=SECONDS   (default 30, at most 60)
        Waits until the task is finished or the timeout passes. Done: the job's own answer, its
        status code, headers and body (plus X-Trackside-Task-Id; X-Request-Tracing-Id is the one
        the call carried). Failed: 500 {"error", "requestId", "status": 500, "task_id",
        "task_status": "failed"}. Not finished yet: 202 {"task_id", "status"}: poll again.
        A result can be polled any number of times until it expires (`result_ttl`, default 2 h).
    GET /pub/async/task/{id}/status
        At once: 200 {"task_id", "status", "job_name", "job_version", "method", "endpoint",
        "created_at", "started_at", "finished_at", "expires_at", "retried"} plus "status_code"
        when done and "error" when failed.

A task is visible only to the subject that started it (the `subject_key` of the token's
decision). Any other caller, one without a token included, gets the same 404 as for an id that
does not exist, so the answer never tells whether a task exists. A task started anonymously (on
an approved public endpoint, without a token) is readable by whoever holds its id: a random UUID.

The request stored for the background call is what a synchronous call would forward
(pub.headers.scan): the caller's headers minus its X-Racetrack-Auth header and cookie, its
X-Caller-Name, hop-by-hop headers (and Idempotency-Key); X-Request-Tracing-Id (the caller's, or a
new one) and X-Caller-Name (from the auth decision) are set.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs

import httpx

from pub.async_runner import SET_COOKIE_SEPARATOR, AsyncRunner, AsyncSettings, Recovery, resolve, utcnow
from pub.async_store import AsyncCallStore, AsyncTask, NewAsyncTask, StoreUnavailable, TaskStatus
from pub.errors import send_error
from pub.headers import UnsafeHeader, new_tracing_id, scan
from pub.registry import CallDecision, JobTarget, Registry
from pub.routing import BadPath, JobPath, parse_job_path

logger = logging.getLogger("trackside.pub.async")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

PREFIX = "/pub/async/"
NEW_PREFIX = "/pub/async/new/job/"
TASK_PREFIX = "/pub/async/task/"
TRACING_HEADER = "x-request-tracing-id"
CALLER_HEADER = "x-caller-name"
TASK_ID_HEADER = "x-trackside-task-id"
IDEMPOTENCY_HEADER = b"idempotency-key"
NEW_METHODS = ("POST", "PUT", "PATCH", "DELETE")
IDEMPOTENCY_KEY = re.compile(rb"[\x21-\x7e]([\x20-\x7e]{0,253}[\x21-\x7e])?")


class HttpError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.extra = extra or {}


class _ClientGone(Exception):
    pass


class AsyncCalls:
    """The three async routes.

    Wiring: `calls = AsyncCalls(registry, store, AsyncSettings.from_env())`, then either mount it
    as an ASGI app for `/pub/async/` (it answers 404 JSON for other paths under it), or call
    `await calls.handle_async(scope, receive, send)` (False: not an async route, nothing sent).
    `await calls.start()` at the server's start resumes the tasks a previous gateway left
    unfinished and starts the cleanup of expired results; the first async request starts it too
    when nobody did. `await calls.aclose()` at shutdown. Given a `lifespan` scope it does both
    itself (when it is the server's only app).
    """

    def __init__(
        self,
        registry: Registry,
        store: AsyncCallStore,
        settings: AsyncSettings | None = None,
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.registry = registry
        self.store = store
        self.settings = settings or AsyncSettings()
        self.clock = clock
        self.runner = AsyncRunner(store, registry, self.settings, client, clock)
        self._start: asyncio.Task[Recovery] | None = None

    async def start(self) -> Recovery:
        """Idempotent: the first call starts the runner, later ones wait for it to have started."""
        if self._start is None or (
            self._start.done() and (self._start.cancelled() or self._start.exception() is not None)
        ):
            self._start = asyncio.ensure_future(self.runner.start())  # again after a failed start
        return await asyncio.shield(self._start)

    @property
    def recovery(self) -> Recovery | None:
        """What the start found unfinished; None until started."""
        if self._start is None or not self._start.done() or self._start.cancelled():
            return None
        return None if self._start.exception() else self._start.result()

    async def aclose(self) -> None:
        await self.runner.aclose()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif not await self.handle_async(scope, receive, send) and scope["type"] == "http":
            await send_error(send, 404, f"not found: {scope.get('path')}", new_tracing_id())

    async def handle_async(self, scope: Scope, receive: Receive, send: Send) -> bool:
        """Answer an HTTP request under /pub/async/; False (nothing sent) for any other request."""
        if scope.get("type") != "http" or not str(scope.get("path", "")).startswith(PREFIX):
            return False
        headers: list[tuple[bytes, bytes]] = list(scope.get("headers", []))
        tracing_id = new_tracing_id()
        try:
            if self.recovery is None:
                await self.start()  # again after a start that failed (e.g. the store was unreachable)
            try:
                caller = scan(headers, also_drop=frozenset({IDEMPOTENCY_HEADER}))
            except UnsafeHeader as error:
                raise HttpError(400, str(error)) from None
            tracing_id = caller.tracing_id
            path: str = scope["path"]
            if path.startswith(NEW_PREFIX):
                await self._new(scope, receive, send, headers, caller.token, caller.pairs, tracing_id)
            elif path.startswith(TASK_PREFIX):
                await self._task(scope, receive, send, caller.token, tracing_id)
            else:
                raise HttpError(404, f"no such async route: {path}")
        except HttpError as error:
            extra_headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in error.headers.items()]
            await send_error(send, error.status, error.message, tracing_id, extra_headers, **error.extra)
        except StoreUnavailable as error:
            await send_error(send, 503, str(error), tracing_id, [(b"retry-after", b"1")])
        except _ClientGone:
            pass
        return True

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- the registry, sync or async ---------------------------------------------------------

    async def _resolve(self, name: str, version: str) -> JobTarget | None:
        try:
            return await resolve(self.registry, name, version)
        except Exception as error:  # a registry that cannot answer now says so with a status (503)
            status = getattr(error, "status", None)
            if not isinstance(status, int):
                raise
            message = f"cannot resolve job {name} {version} now: {error}"
            raise HttpError(status, message, headers={"retry-after": "1"}) from None

    async def _authorize(self, token: str | None, name: str, version: str, endpoint: str) -> CallDecision:
        authorize_async = getattr(self.registry, "authorize_async", None)
        if authorize_async is not None:
            decision: CallDecision = await authorize_async(token, name, version, endpoint)
            return decision
        return self.registry.authorize(token, name, version, endpoint)

    # -- POST /pub/async/new/job/{name}/{version}/{path} -----------------------------------

    async def _new(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        headers: list[tuple[bytes, bytes]],
        token: str | None,
        forwarded: Callable[[str | None], list[tuple[str, str]]],
        tracing_id: str,
    ) -> None:
        method = str(scope["method"]).upper()
        if method not in NEW_METHODS:
            raise HttpError(
                405,
                f"an async call is started with {', '.join(NEW_METHODS)}, not {method}",
                {"allow": ", ".join(NEW_METHODS)},
            )
        job = parse_new_path(scope)
        key_bytes = next((v for k, v in headers if k == IDEMPOTENCY_HEADER), None)
        if key_bytes is not None and not IDEMPOTENCY_KEY.fullmatch(key_bytes):
            raise HttpError(400, "Idempotency-Key must be 1-255 printable ASCII characters")
        key = key_bytes.decode("ascii") if key_bytes is not None else None

        target = await self._resolve(job.name, job.version)
        if target is None:
            raise HttpError(404, f"job {job.name} version {job.version} not found")
        decision = await self._authorize(token, job.name, target.version, job.endpoint)
        if not decision.allowed:
            raise HttpError(decision.status, decision.reason)
        if not target.replicas and target.status in ("error", "lost", "stopped"):
            raise HttpError(503, f"job {job.name} {target.version} is not running (status {target.status})")
        if key is not None and decision.subject_key is None:
            raise HttpError(400, "an Idempotency-Key needs an authenticated caller (send a token)")

        declared = next((v for k, v in headers if k == b"content-length"), None)
        if declared is not None and declared.isdigit() and int(declared) > self.settings.max_request_bytes:
            raise HttpError(413, self._too_large())
        body = await read_body(receive, self.settings.max_request_bytes, self._too_large)

        try:
            caller_pairs = forwarded(decision.caller_name)
        except UnsafeHeader as error:
            raise HttpError(400, str(error)) from None
        query = bytes(scope.get("query_string", b"")).decode("latin-1")
        stored = NewAsyncTask(
            job_name=job.name,
            job_version=target.version,
            method=method,
            path=job.rest.decode("ascii") + (f"?{query}" if query else ""),
            request_headers=_joined(
                (name, value) for name, value in caller_pairs if name != "content-length"
            ),
            request_body=body,
            subject_key=decision.subject_key,
            idempotency_key=key,
        )
        task, created = await self.store.create(stored)
        extra = {"location": f"{TASK_PREFIX}{task.id}/status"}
        if created:
            self.runner.submit(task.id)
            await send_json(send, 201, {"task_id": task.id, "status": task.status.value}, tracing_id, extra)
            return
        if (task.job_name, task.method, task.path, task.request_body) != (
            stored.job_name,
            stored.method,
            stored.path,
            stored.request_body,
        ):
            raise HttpError(
                422,
                f"Idempotency-Key {key!r} was used for a different request (task {task.id}): "
                "use a new key for a new request",
            )
        extra["idempotent-replayed"] = "true"
        await send_json(send, 200, {"task_id": task.id, "status": task.status.value}, tracing_id, extra)

    def _too_large(self) -> str:
        return (
            f"the request body is larger than {self.settings.max_request_bytes} bytes, "
            "the most an async call takes"
        )

    # -- GET /pub/async/task/{id}/poll|status -----------------------------------------------

    async def _task(
        self, scope: Scope, receive: Receive, send: Send, token: str | None, tracing_id: str
    ) -> None:
        rest = str(scope["path"])[len(TASK_PREFIX) :]
        task_text, _, action = rest.partition("/")
        if action not in ("poll", "status"):
            raise HttpError(404, f"no such async route: {scope['path']}")
        if str(scope["method"]).upper() != "GET":
            raise HttpError(405, f"{action} takes GET", {"allow": "GET"})
        try:
            task_id = str(uuid.UUID(task_text))
        except ValueError:
            raise _not_found(task_text) from None
        timeout = self._poll_timeout(scope) if action == "poll" else 0.0

        task = await self._visible(task_id, token)
        if action == "status":
            await send_json(send, 200, status_document(task), tracing_id)
            return

        gone = asyncio.Event()
        watcher = asyncio.create_task(_watch_disconnect(receive, gone))
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while not task.status.finished and not gone.is_set():
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                await self.runner.wait_finished(
                    task_id, min(remaining, self.settings.poll_recheck_interval), also=gone
                )
                task = await self._visible(task_id, None, known=task)
        finally:
            watcher.cancel()

        if task.status is TaskStatus.DONE:
            full = await self.store.get(task_id)
            if full is None or full.expired(self.clock()):
                raise _not_found(task_id)
            await send_result(send, full, tracing_id)
        elif task.status is TaskStatus.FAILED:
            raise HttpError(
                500,
                f"the async call failed: {task.error}",
                extra={"task_id": task.id, "task_status": task.status.value},
            )
        else:
            await send_json(send, 202, {"task_id": task.id, "status": task.status.value}, tracing_id)

    def _poll_timeout(self, scope: Scope) -> float:
        query = parse_qs(bytes(scope.get("query_string", b"")).decode("latin-1"))
        values = query.get("timeout")
        if not values:
            return self.settings.default_poll_timeout
        try:
            timeout = float(values[-1])
        except ValueError:
            raise HttpError(400, f"timeout must be a number of seconds, got {values[-1]!r}") from None
        if not 0 <= timeout < float("inf"):
            raise HttpError(400, f"timeout must be 0 or more seconds, got {values[-1]!r}")
        return min(timeout, self.settings.max_poll_timeout)

    async def _visible(self, task_id: str, token: str | None, known: AsyncTask | None = None) -> AsyncTask:
        """The task (without bodies) when the caller may see it, else 404 as for a missing one.

        `known`: the caller was checked already (a long poll re-reading the task)."""
        task = await self.store.get(task_id, bodies=False)
        if task is None or task.expired(self.clock()):
            raise _not_found(task_id)
        if known is not None or task.subject_key is None:
            return task
        if token is None:
            raise _not_found(task_id)
        # any decision names the token's subject (the permission itself may have gone since)
        decision = await self._authorize(token, task.job_name, task.job_version, task.endpoint)
        if decision.subject_key != task.subject_key:
            raise _not_found(task_id)
        return task


def _not_found(task_id: str) -> HttpError:
    return HttpError(
        404,
        f"async task {task_id} not found (tasks are visible only to the caller that started them, "
        "until their results expire)",
    )


# -- requests --------------------------------------------------------------------------------


def parse_new_path(scope: Scope) -> JobPath:
    """/pub/async/new/job/{name}/{version}/{path}, parsed and checked as the synchronous gateway
    parses /pub/job/... (pub.routing): 400 for a path that could leave the job, 404 for one that
    names no job."""
    raw = bytes(scope.get("raw_path") or str(scope["path"]).encode()).split(b"?", 1)[0]
    prefix = NEW_PREFIX.encode()
    if not raw.startswith(prefix):
        raise HttpError(404, "an async call names the job and version: /pub/async/new/job/NAME/VERSION/PATH")
    try:
        return parse_job_path(b"/pub/job/" + raw[len(prefix) :], bytes(scope.get("query_string", b"")))
    except BadPath as error:
        raise HttpError(error.status, error.message.replace("/pub/job/", NEW_PREFIX)) from None


async def read_body(receive: Receive, limit: int, too_large: Callable[[], str]) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone
        chunk = bytes(message.get("body", b""))
        size += len(chunk)
        if size > limit:
            raise HttpError(413, too_large())
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _watch_disconnect(receive: Receive, gone: asyncio.Event) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            gone.set()
            return


def _joined(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Header pairs as one dict (the store's shape): repeated names joined with ', '."""
    joined: dict[str, str] = {}
    for name, value in pairs:
        joined[name] = f"{joined[name]}, {value}" if name in joined else value
    return joined


# -- responses -------------------------------------------------------------------------------


def status_document(task: AsyncTask) -> dict[str, Any]:
    document: dict[str, Any] = {
        "task_id": task.id,
        "status": task.status.value,
        "job_name": task.job_name,
        "job_version": task.job_version,
        "method": task.method,
        "endpoint": task.endpoint,
        "created_at": _iso(task.created_at),
        "started_at": _iso(task.started_at),
        "finished_at": _iso(task.finished_at),
        "expires_at": _iso(task.expires_at),
        "retried": task.retried,
    }
    if task.status is TaskStatus.DONE:
        document["status_code"] = task.result_status
    if task.status is TaskStatus.FAILED:
        document["error"] = task.error
    return document


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


async def send_json(
    send: Send, status: int, payload: Any, tracing_id: str, headers: dict[str, str] | None = None
) -> None:
    body = json.dumps(payload).encode()
    raw = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (TRACING_HEADER.encode(), tracing_id.encode("latin-1")),
    ]
    raw += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def send_result(send: Send, task: AsyncTask, tracing_id: str) -> None:
    """The job's own answer: its status code, headers and body."""
    body = task.result_body or b""
    raw: list[tuple[bytes, bytes]] = []
    for name, value in task.result_headers.items():
        values = value.split(SET_COOKIE_SEPARATOR) if name == "set-cookie" else [value]
        raw += [(name.encode("latin-1"), v.encode("latin-1")) for v in values]
    call_tracing_id = task.request_headers.get(TRACING_HEADER, tracing_id)
    raw.append((TRACING_HEADER.encode(), call_tracing_id.encode("latin-1")))
    raw.append((TASK_ID_HEADER.encode(), task.id.encode()))
    raw.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": task.result_status or 200, "headers": raw})
    await send({"type": "http.response.body", "body": body})
