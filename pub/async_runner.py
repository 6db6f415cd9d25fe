"""Running async tasks in the background: the call to the job, its answer stored, restarts survived.

`AsyncRunner.start()` (at the gateway's start) resumes what the store holds unfinished: a pending
task is started; a task that was running when the last gateway stopped is started again once
(`retried`); one that was running and had been retried already is marked failed with the reason
(the job may have run it twice already; a third run is not the gateway's call to make). Tasks run
as asyncio tasks, at most `max_concurrent_calls` at a time; `aclose()` cancels them and leaves
them `running` in the store, which is what the next start resumes. A periodic cleanup deletes
tasks whose results have expired (`result_ttl` after they finished).

The call goes to one of the job's ready replicas, as the synchronous gateway would send it:
`METHOD {replica}/pub/job/{name}/{version}{path}` with the stored headers (X-Request-Tracing-Id
and X-Caller-Name among them) and body. A replica that refuses the connection is skipped for the
next; when none takes it, or the job has no ready replica, the task waits for one up to
`unavailable_grace` seconds. Any answer of the job, whatever its status code, is the task's
result; failures are: no such job any more, unreachable, the connection broken mid-answer, no
answer within `call_timeout`, an answer over `max_result_bytes`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.cookiejar import CookieJar, DefaultCookiePolicy

import httpx

from pub.async_store import AsyncCallStore, AsyncTask, TaskStatus
from pub.registry import JobTarget, Registry

logger = logging.getLogger("trackside.pub.async")

MiB = 1024 * 1024

# hop-by-hop headers of a response: they describe the connection to the job, not the answer
RESPONSE_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "proxy-authenticate",
        "content-length",  # recomputed when the answer is served
        # as the synchronous proxy: the serving gateway writes its own Date and Server, and the
        # tracing id is the call's
        "date",
        "server",
        "x-request-tracing-id",
    }
)
SET_COOKIE_SEPARATOR = "\n"  # several Set-Cookie headers are kept in one value, split when served


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class AsyncSettings:
    max_request_bytes: int = 16 * MiB  # a larger request body is refused with 413
    max_result_bytes: int = 64 * MiB  # a larger answer fails the task
    result_ttl: float = 2 * 3600.0  # seconds a finished task (and its result) is kept
    call_timeout: float | None = 2 * 3600.0  # the job must answer within; None: wait as long as it takes
    connect_timeout: float = 5.0
    unavailable_grace: float = 30.0  # how long a task waits for a job without a replica that answers
    default_poll_timeout: float = 30.0
    max_poll_timeout: float = 60.0
    poll_recheck_interval: float = 1.0  # a long poll re-reads the store this often (tasks run elsewhere)
    cleanup_interval: float = 60.0
    max_concurrent_calls: int = 256

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> AsyncSettings:
        """TRACKSIDE_ASYNC_RESULT_TTL (seconds, default 7200), TRACKSIDE_ASYNC_CALL_TIMEOUT (seconds;
        0 or "none": no limit; default 7200), TRACKSIDE_ASYNC_MAX_REQUEST_BYTES (default 16 MiB),
        TRACKSIDE_ASYNC_MAX_RESULT_BYTES (default 64 MiB)."""
        env = os.environ if environ is None else environ
        default = cls()

        def number(name: str, fallback: float) -> float:
            text = env.get(name, "").strip()
            if not text:
                return fallback
            try:
                value = float(text)
            except ValueError:
                raise ValueError(f"{name} must be a number, got {text!r}") from None
            if value < 0:
                raise ValueError(f"{name} must not be negative, got {text!r}")
            return value

        call_timeout_text = env.get("TRACKSIDE_ASYNC_CALL_TIMEOUT", "").strip().lower()
        call_timeout: float | None = default.call_timeout
        if call_timeout_text in ("0", "none"):
            call_timeout = None
        elif call_timeout_text:
            call_timeout = number("TRACKSIDE_ASYNC_CALL_TIMEOUT", 0)
        return cls(
            result_ttl=number("TRACKSIDE_ASYNC_RESULT_TTL", default.result_ttl),
            call_timeout=call_timeout,
            max_request_bytes=int(number("TRACKSIDE_ASYNC_MAX_REQUEST_BYTES", default.max_request_bytes)),
            max_result_bytes=int(number("TRACKSIDE_ASYNC_MAX_RESULT_BYTES", default.max_result_bytes)),
        )


@dataclass
class Recovery:
    """What `AsyncRunner.start()` found unfinished in the store (task ids)."""

    resumed: list[str] = field(default_factory=list)  # pending: started
    retried: list[str] = field(default_factory=list)  # running when a gateway stopped: started again
    failed: list[str] = field(default_factory=list)  # interrupted a second time: marked failed


@dataclass(frozen=True)
class _Answer:
    status_code: int
    headers: dict[str, str]
    body: bytes


class _CallFailed(Exception):
    """The task gets no answer from the job; the message says why (it is shown to the caller)."""


def new_job_client(settings: AsyncSettings) -> httpx.AsyncClient:
    """The client that calls jobs: no proxies from the environment, no redirects followed, no
    cookie jar (a job's Set-Cookie must never travel to another caller's call), and no default
    headers of its own beyond what the caller sent."""
    client = httpx.AsyncClient(
        trust_env=False,
        follow_redirects=False,
        cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
        timeout=httpx.Timeout(None, connect=settings.connect_timeout),
        limits=httpx.Limits(max_connections=None, max_keepalive_connections=64),
    )
    for name in ("accept", "accept-encoding", "user-agent"):
        del client.headers[name]
    return client


class AsyncRunner:
    def __init__(
        self,
        store: AsyncCallStore,
        registry: Registry,
        settings: AsyncSettings | None = None,
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.registry = registry
        self.settings = settings or AsyncSettings()
        self._client = client
        self._owns_client = client is None
        self._clock = clock
        self._active: dict[str, asyncio.Task[None]] = {}
        self._finished: dict[str, asyncio.Event] = {}  # one per task someone waits on
        self._waiting: dict[str, int] = {}
        self._slots: asyncio.Semaphore | None = None
        self._cleanup: asyncio.Task[None] | None = None
        self._next_replica = itertools.count()
        self._closed = False

    # -- life cycle -------------------------------------------------------------------------

    async def start(self) -> Recovery:
        """Resume the store's unfinished tasks and start the periodic cleanup. Call it once,
        in the gateway's event loop, before serving async requests."""
        if self._client is None:
            self._client = new_job_client(self.settings)
        self._slots = asyncio.Semaphore(self.settings.max_concurrent_calls)
        report = await self.recover()
        self._cleanup = asyncio.create_task(self._cleanup_loop(), name="async-call-cleanup")
        for task_id in report.failed:
            logger.warning("async task %s was interrupted twice by a gateway restart: failed", task_id)
        if report.retried:
            logger.warning("%d async task(s) interrupted by a restart are retried", len(report.retried))
        return report

    async def recover(self) -> Recovery:
        report = Recovery()
        for task in await self.store.unfinished():
            if task.id in self._active:
                continue
            if task.status is TaskStatus.PENDING:
                report.resumed.append(task.id)
            elif not task.retried:
                note = (
                    f"the gateway stopped while this call was running ({self._clock():%Y-%m-%d %H:%M:%SZ}); "
                    "it was started again"
                )
                await self.store.mark_retried(task.id, note)
                report.retried.append(task.id)
            else:
                await self.store.fail(
                    task.id,
                    "the gateway stopped twice while this call was running; it was retried once "
                    "after the first stop and is not retried again",
                    expires_at=self._expiry(),
                )
                report.failed.append(task.id)
                self._notify(task.id)
                continue
            self.submit(task.id)
        return report

    async def aclose(self) -> None:
        """Stop: running calls are cancelled and stay `running` in the store (the next start retries them)."""
        self._closed = True
        tasks = [t for t in (self._cleanup, *self._active.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._active.clear()
        for event in self._finished.values():
            event.set()  # long polls re-read the store and answer
        if self._owns_client and self._client is not None:
            await self._client.aclose()
            self._client = None

    # -- running ----------------------------------------------------------------------------

    def submit(self, task_id: str) -> None:
        """Run a stored task in the background (a no-op when it runs already)."""
        if self._closed:
            raise RuntimeError("the async runner is closed")
        if task_id in self._active:
            return
        task = asyncio.create_task(self._execute(task_id), name=f"async-call-{task_id}")
        self._active[task_id] = task
        task.add_done_callback(lambda _: self._active.pop(task_id, None))

    @property
    def active(self) -> int:
        return len(self._active)

    async def _execute(self, task_id: str) -> None:
        assert self._slots is not None, "AsyncRunner.start() was not called"
        try:
            async with self._slots:
                task = await self.store.get(task_id)
                if task is None or task.status.finished:
                    return
                await self.store.mark_running(task_id)
                try:
                    answer = await asyncio.wait_for(self._call(task), self.settings.call_timeout)
                except TimeoutError:
                    await self.store.fail(
                        task_id,
                        f"job {task.job_name} {task.job_version} did not answer within "
                        f"{self.settings.call_timeout:g} s",
                        expires_at=self._expiry(),
                    )
                except _CallFailed as failure:
                    await self.store.fail(task_id, str(failure), expires_at=self._expiry())
                else:
                    await self.store.finish(
                        task_id,
                        status_code=answer.status_code,
                        headers=answer.headers,
                        body=answer.body,
                        expires_at=self._expiry(),
                    )
        except asyncio.CancelledError:
            raise  # the gateway stops: the task stays as the store has it
        except Exception:
            # most likely the store itself failed; the task stays unfinished and the next start resumes it
            logger.exception("async task %s could not be run", task_id)
        finally:
            self._notify(task_id)

    async def _call(self, task: AsyncTask) -> _Answer:
        grace_ends = time.monotonic() + self.settings.unavailable_grace
        while True:
            try:
                target = await resolve(self.registry, task.job_name, task.job_version)
            except Exception as error:  # the registry cannot answer now (e.g. the lifecycle is down)
                if not isinstance(getattr(error, "status", None), int):
                    raise
                target, problem = None, f"cannot resolve job {task.job_name} {task.job_version}: {error}"
            else:
                if target is None or target.version != task.job_version:
                    raise _CallFailed(f"job {task.job_name} {task.job_version} does not exist any more")
                problem = (
                    f"job {task.job_name} {task.job_version} has no ready replica (status {target.status})"
                )
            replicas = list(target.replicas) if target is not None else []
            if replicas:
                first = next(self._next_replica) % len(replicas)
                for base in replicas[first:] + replicas[:first]:
                    try:
                        return await self._send(base, task)
                    except (httpx.ConnectError, httpx.ConnectTimeout) as error:
                        reason = str(error) or type(error).__name__
                        problem = f"job {task.job_name} {task.job_version} is unreachable: {reason}"
            remaining = grace_ends - time.monotonic()
            if remaining <= 0:
                raise _CallFailed(problem)
            await asyncio.sleep(min(1.0, remaining))

    async def _send(self, base: str, task: AsyncTask) -> _Answer:
        assert self._client is not None
        url = f"{base.rstrip('/')}/pub/job/{task.job_name}/{task.job_version}{task.path}"
        limit = self.settings.max_result_bytes
        try:
            headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in task.request_headers.items()]
            async with self._client.stream(
                task.method, url, headers=headers, content=task.request_body
            ) as response:
                body = bytearray()
                async for chunk in response.aiter_raw():
                    body += chunk
                    if len(body) > limit:
                        raise _CallFailed(
                            f"the answer of job {task.job_name} {task.job_version} is larger than "
                            f"{limit} bytes, the most an async call keeps"
                        )
                return _Answer(response.status_code, result_headers(response.headers), bytes(body))
        except (httpx.ConnectError, httpx.ConnectTimeout):
            raise  # nothing reached the job: the caller may try another replica
        except httpx.TransportError as error:
            raise _CallFailed(
                f"the connection to job {task.job_name} {task.job_version} broke before it answered: "
                f"{error or type(error).__name__}"
            ) from error

    # -- waiting for a task -----------------------------------------------------------------

    async def wait_finished(self, task_id: str, timeout: float, also: asyncio.Event | None = None) -> None:
        """Return when this runner finished `task_id`, `also` is set, or after `timeout` seconds."""
        event = self._finished.get(task_id)
        if event is None:
            event = self._finished[task_id] = asyncio.Event()
        self._waiting[task_id] = self._waiting.get(task_id, 0) + 1
        waits = [asyncio.ensure_future(event.wait())]
        if also is not None:
            waits.append(asyncio.ensure_future(also.wait()))
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
            left = self._waiting.pop(task_id) - 1
            if left:
                self._waiting[task_id] = left
            elif self._finished.get(task_id) is event:
                del self._finished[task_id]

    def _notify(self, task_id: str) -> None:
        event = self._finished.pop(task_id, None)
        if event is not None:
            event.set()

    # -- expiry -----------------------------------------------------------------------------

    def _expiry(self) -> datetime:
        return self._clock() + timedelta(seconds=self.settings.result_ttl)

    async def cleanup(self) -> int:
        """Delete expired tasks now; how many went."""
        removed = await self.store.delete_expired(self._clock())
        if removed:
            logger.info("deleted %d expired async task(s)", removed)
        return removed

    async def _cleanup_loop(self) -> None:
        while True:
            try:
                await self.cleanup()
            except Exception:
                logger.exception("cleaning up expired async tasks failed (tried again later)")
            await asyncio.sleep(self.settings.cleanup_interval)


async def resolve(registry: Registry, name: str, version: str) -> JobTarget | None:
    """Registry.resolve, or its `resolve_async` where the registry offers one (see pub.app)."""
    resolve_async = getattr(registry, "resolve_async", None)
    if resolve_async is not None:
        target: JobTarget | None = await resolve_async(name, version)
        return target
    return registry.resolve(name, version)


def result_headers(headers: httpx.Headers) -> dict[str, str]:
    """The job's response headers as stored: hop-by-hop ones dropped, repeated ones joined."""
    connection_named = {
        token.strip().lower() for value in headers.get_list("connection") for token in value.split(",")
    }
    kept: dict[str, str] = {}
    for raw_name, value in headers.multi_items():
        name = raw_name.lower()
        if name in RESPONSE_HOP_BY_HOP or name in connection_named:
            continue
        if name in kept:
            separator = SET_COOKIE_SEPARATOR if name == "set-cookie" else ", "
            kept[name] = kept[name] + separator + value
        else:
            kept[name] = value
    return kept
