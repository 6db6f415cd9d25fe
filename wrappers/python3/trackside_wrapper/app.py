"""The job's ASGI application: routing, admission control, job calls, health and docs.

Pure ASGI on purpose: every layer of a framework's middleware costs a large share of a trivial
call. Routes are looked up in a dict; job routes appear once the entrypoint has loaded, which
happens in a background thread so that /live answers from the first moment.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import openapi, responses, static_files, swagger
from .arguments import InvalidArguments, MalformedJSON
from .asgi import Message, Receive, Scope, Send
from .body_limit import DEFAULT_MAX_BODY, max_body_from_env
from .concurrency import ConcurrencyLimiter, QueueFull
from .entrypoint import LoadFailure, describe_failure
from .loaded_job import API_PREFIX, WEBVIEW_PATH, LoadedJob, load
from .logs import (
    attach_to_loop,
    caller_name_var,
    detach_from_loop,
    env_flag,
    log_access,
    new_tracing_id,
    tracing_id_var,
)
from .manifest import JobSettings
from .metrics import JobMetrics
from .serialization import NotSerializableError, to_json

logger = logging.getLogger("trackside.wrapper")

DEFAULT_THREADS = 40
# Not counted as job traffic and never access-logged (probes and scrapes).
QUIET_PATHS = frozenset(("/live", "/ready", "/health", "/metrics"))

INITIALISING, READY, FAILED = "initialising", "ready", "failed"
_RETRY_AFTER = [(b"retry-after", b"1")]


class BodyTooLarge(Exception):
    pass


class ClientGone(Exception):
    pass


@dataclass
class AppOptions:
    max_body_size: int = DEFAULT_MAX_BODY
    deployment_timestamp: int = 0
    log_caller: bool = False


class JobApp:
    def __init__(
        self,
        job_dir: Path,
        settings: JobSettings | None,
        options: AppOptions,
        settings_failure: LoadFailure | None = None,
    ) -> None:
        self.job_dir = job_dir
        self.settings = settings
        self.options = options
        self.title = f"Job - {settings.name}" if settings else "Job"
        self.state = FAILED if settings_failure else INITIALISING
        self.failure: LoadFailure | None = settings_failure
        self.job: LoadedJob | None = None
        cap = settings.max_concurrency if settings else None
        self.limiter = ConcurrencyLimiter(cap, settings.max_concurrency_queue if settings and cap else None)
        self.executor = ThreadPoolExecutor(max_workers=cap or DEFAULT_THREADS, thread_name_prefix="job")
        self.metrics = JobMetrics(lambda: self.limiter.active, lambda: self.limiter.queued)
        self._openapi_cache: dict[str, bytes] = {}
        self._root = os.path.realpath(job_dir)  # static files are checked against it per request
        self._rejection_body: bytes | None = None
        self._load_task: asyncio.Task[None] | None = None
        self.routes: dict[str, Any] = {
            "/live": self._live,
            "/ready": self._ready,
            "/health": self._health,
            "/metrics": self._metrics,
            "/docs": self._docs,
            "/openapi.json": self._openapi,
            API_PREFIX + "/parameters": self._parameters,
            "/": self._home,
        }

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Start loading the job in the background (idempotent)."""
        if self._load_task is None and self.state == INITIALISING:
            self._load_task = asyncio.get_running_loop().create_task(self._load())

    async def _load(self) -> None:
        assert self.settings is not None
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        try:
            # a dedicated thread: the job pool must not be taken by a long __init__
            job = await loop.run_in_executor(None, load, self.job_dir, self.settings)
        except BaseException as e:
            self.failure = describe_failure(e, self.job_dir)
            self.state = FAILED
            logger.error(
                "the job failed to load: %s: %s at %s\n%s",
                self.failure.type,
                self.failure.error,
                self.failure.location,
                self.failure.traceback.rstrip(),
            )
            return
        self.job = job
        if job.metrics_source is not None:
            self.metrics.attach_job_metrics(job.metrics_source)
        self.metrics.init_duration.set(time.perf_counter() - started)
        self.state = READY
        logger.info(
            "job %s %s ready: initialised in %.0f ms",
            self.settings.name,
            self.settings.version,
            (time.perf_counter() - started) * 1000,
        )

    async def shutdown(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)

    # ---- ASGI ------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            try:
                await self._http(scope, receive, send)
            except Exception as e:
                logger.exception("unhandled error serving %s %s", scope.get("method"), scope.get("path"))
                with contextlib.suppress(Exception):
                    await responses.send_error(
                        send,
                        500,
                        f"internal error in the wrapper: {e.__class__.__name__}",
                        "InternalError",
                        tracing_id_var.get(),
                    )
        elif kind == "websocket":
            await self._websocket(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                attach_to_loop(asyncio.get_running_loop())
                self.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                detach_from_loop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    @staticmethod
    def _split_prefix(path: str) -> tuple[str, str]:
        """("/pub/job/NAME/VERSION", "/rest") for prefixed paths, ("", path) otherwise."""
        if path.startswith("/pub/job/") or path.startswith("/pub/fatman/"):
            parts = path.split("/", 5)
            if len(parts) >= 5 and parts[3] and parts[4]:
                return "/".join(parts[:5]), "/" + (parts[5] if len(parts) > 5 else "")
        return "", path

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._load_task is None and self.state == INITIALISING:
            self.start()
        prefix, path = self._split_prefix(scope["path"])
        tracing_id = ""
        caller = ""
        content_length = -1
        for key, value in scope["headers"]:
            if key == b"x-request-tracing-id":
                tracing_id = value.decode("latin-1")
            elif key == b"content-length":
                try:
                    content_length = int(value)
                except ValueError:
                    content_length = -1
            elif key == b"x-caller-name":
                caller = value.decode("latin-1")
        if not tracing_id:
            tracing_id = new_tracing_id()
        tracing_id_var.set(tracing_id)
        if caller:
            caller_name_var.set(caller)
        request = Request(scope, receive, send, prefix, path, tracing_id, content_length)

        handler = self.routes.get(path)
        if handler is not None:
            await handler(request)
            return
        job = self.job
        if job is not None:
            endpoint = job.endpoints.get(path)
            if endpoint is not None:
                await self._call(request, endpoint)
                return
            if (path in job.static_files or job.static_dirs) and await self._static(request, job):
                return
            if job.webview is not None and (
                path == WEBVIEW_PATH
                or path.startswith(WEBVIEW_PATH + "/")
                or path.startswith("/webview/static/")
            ):
                await self._webview(request, job)
                return
        if path.startswith("/docs/assets/"):
            await self._docs_asset(request)
            return
        if self.state != READY and path.startswith(API_PREFIX + "/"):
            await self._not_ready(request, path)
            return
        await self._finish_error(request, "unmatched", 404, f"not found: {scope['path']}", "NotFound")

    # ---- job calls -------------------------------------------------------------------------

    async def _call(self, request: Request, endpoint: openapi.CallableEndpoint) -> None:
        started = time.perf_counter()
        send = request.send
        if request.scope["method"] != "POST":
            await self._finish_error(
                request,
                endpoint.path,
                405,
                f"method {request.scope['method']} not allowed, use POST",
                "MethodNotAllowed",
                [(b"allow", b"POST")],
            )
            return
        limit = self.options.max_body_size
        if request.content_length > limit:
            await self._finish_error(
                request,
                endpoint.path,
                413,
                f"request body of {request.content_length} bytes exceeds the limit of {limit} bytes",
                "PayloadTooLarge",
            )
            return
        try:
            waiter = self.limiter.try_acquire()
        except QueueFull as e:
            # the cheapest path in the wrapper: the refusal is encoded once and reused
            self.metrics.rejected.inc()
            if self._rejection_body is None:
                self._rejection_body = responses.encode(responses.error_body(str(e), "TooManyRequests"))
            await responses.send_bytes(
                request.send, 429, self._rejection_body, responses.JSON, request.tracing_id, _RETRY_AFTER
            )
            self._account(request, endpoint.path, 429, started)
            return
        if waiter is not None:
            await self.limiter.wait(waiter)
        status = 500
        try:
            try:
                body = await _read_body(request.receive, limit)
            except BodyTooLarge:
                status = 413
                await responses.send_error(
                    send,
                    413,
                    f"request body exceeds the limit of {limit} bytes",
                    "PayloadTooLarge",
                    request.tracing_id,
                )
                return
            except ClientGone:
                status = 499
                return
            try:
                kwargs = endpoint.binder.bind(body)
            except MalformedJSON as e:
                status = 400
                await responses.send_error(send, 400, str(e), "InvalidJSON", request.tracing_id)
                return
            except InvalidArguments as e:
                status = 422
                await responses.send_error(
                    send, 422, str(e), "InvalidArguments", request.tracing_id, details=e.details
                )
                return
            try:
                if endpoint.is_async:
                    result = await endpoint.method(**kwargs)
                else:
                    context = contextvars.copy_context()
                    result = await asyncio.get_running_loop().run_in_executor(
                        self.executor, functools.partial(context.run, endpoint.method, **kwargs)
                    )
                out = to_json(result)
            except ValueError as e:
                status = 400
                await responses.send_error(
                    send, 400, str(e) or "invalid value", e.__class__.__name__, request.tracing_id
                )
                return
            except NotSerializableError as e:
                logger.error("%s returned a value that cannot be sent: %s", endpoint.short_path, e)
                status = 500
                await responses.send_error(send, 500, str(e), "NotSerializable", request.tracing_id)
                return
            except Exception as e:
                logger.exception("%s failed", endpoint.short_path)
                status = 500
                await responses.send_error(
                    send,
                    500,
                    f"{e.__class__.__name__}: {e}" if str(e) else e.__class__.__name__,
                    e.__class__.__name__,
                    request.tracing_id,
                )
                return
            status = 200
            await responses.send_bytes(send, 200, out, responses.JSON, request.tracing_id)
        finally:
            self.limiter.release()
            self._account(request, endpoint.path, status, started)

    def _account(self, request: Request, endpoint: str, status: int, started: float) -> None:
        elapsed = time.perf_counter() - started
        self.metrics.observe_call(endpoint, status, elapsed)
        log_access(
            '"%s %s" %d %.2f ms', request.scope["method"], request.scope["path"], status, elapsed * 1000
        )

    async def _finish_error(
        self,
        request: Request,
        endpoint: str,
        status: int,
        message: str,
        error_type: str,
        headers: list[tuple[bytes, bytes]] | None = None,
        started: float | None = None,
        **extra: Any,
    ) -> None:
        started = time.perf_counter() if started is None else started
        await responses.send_error(
            request.send, status, message, error_type, request.tracing_id, headers, **extra
        )
        self._account(request, endpoint, status, started)

    async def _not_ready(self, request: Request, endpoint: str) -> None:
        if self.state == FAILED:
            body = self._failure_body()
            await self._finish_error(
                request,
                endpoint,
                503,
                "the job failed to load: " + body["error"],
                "JobNotLoaded",
                location=body["location"],
            )
            return
        await self._finish_error(
            request, endpoint, 503, "the job is still initialising", "NotReady", [(b"retry-after", b"1")]
        )

    # ---- built-in endpoints ----------------------------------------------------------------

    def _base_info(self) -> dict[str, Any]:
        s = self.settings
        return {
            "job_name": s.name if s else None,
            "job_version": s.version if s else None,
            "deployment_timestamp": self.options.deployment_timestamp,
        }

    def _failure_body(self) -> dict[str, Any]:
        f = self.failure
        assert f is not None
        where = f" at {f.location}" if f.location else ""
        return {
            "error": f"{f.type}: {f.error}{where}",
            "type": f.type,
            "location": f.location,
            "status": FAILED,
            **self._base_info(),
        }

    async def _live(self, request: Request) -> None:
        if self.state == FAILED:
            await responses.send_json(
                request.send, 500, {"live": False, **self._failure_body()}, request.tracing_id
            )
            return
        await responses.send_json(
            request.send, 200, {"live": True, "status": self.state, **self._base_info()}, request.tracing_id
        )

    async def _ready(self, request: Request) -> None:
        if self.state == READY:
            await responses.send_json(
                request.send, 200, {"ready": True, **self._base_info()}, request.tracing_id
            )
        elif self.state == FAILED:
            await responses.send_json(
                request.send, 500, {"ready": False, **self._failure_body()}, request.tracing_id
            )
        else:
            await responses.send_json(
                request.send,
                503,
                {"ready": False, "status": INITIALISING, **self._base_info()},
                request.tracing_id,
            )

    async def _health(self, request: Request) -> None:
        if self.state == FAILED:
            await responses.send_json(
                request.send, 500, {"service": "job", **self._failure_body()}, request.tracing_id
            )
            return
        await responses.send_json(
            request.send,
            200,
            {
                "service": "job",
                "status": "pass" if self.state == READY else INITIALISING,
                "ready": self.state == READY,
                **self._base_info(),
            },
            request.tracing_id,
        )

    async def _metrics(self, request: Request) -> None:
        loop = asyncio.get_running_loop()
        # the job's metrics() is user code: run it off the event loop
        body = await loop.run_in_executor(None, self.metrics.render)
        await responses.send_bytes(
            request.send, 200, body, b"text/plain; version=0.0.4; charset=utf-8", request.tracing_id
        )

    async def _parameters(self, request: Request) -> None:
        started = time.perf_counter()
        if self.job is None:
            await self._not_ready(request, API_PREFIX + "/parameters")
            return
        body = to_json(self.job.perform.binder.describe())
        await responses.send_bytes(request.send, 200, body, responses.JSON, request.tracing_id)
        self._account(request, API_PREFIX + "/parameters", 200, started)

    def _mount_prefix(self, request: Request) -> str:
        return request.scope.get("root_path", "") + request.prefix

    async def _home(self, request: Request) -> None:
        home = self.settings.home_page if self.settings else "/docs"
        await responses.send_redirect(request.send, self._mount_prefix(request) + home, request.tracing_id)

    async def _docs(self, request: Request) -> None:
        started = time.perf_counter()
        body = swagger.page(self.title, self._mount_prefix(request))
        await responses.send_bytes(request.send, 200, body, b"text/html; charset=utf-8", request.tracing_id)
        self._account(request, "/docs", 200, started)

    async def _docs_asset(self, request: Request) -> None:
        name = request.path[len("/docs/assets/") :]
        path = swagger.asset_path(name)
        if path is None:
            await self._finish_error(request, "/docs", 404, f"not found: {request.scope['path']}", "NotFound")
            return
        await responses.send_file(request.send, path, static_files.guess_mimetype(path), request.tracing_id)

    async def _openapi(self, request: Request) -> None:
        started = time.perf_counter()
        prefix = self._mount_prefix(request)
        body = self._openapi_cache.get(prefix) if self.job is not None else None
        if body is None:
            job = self.job
            document = openapi.build(
                self.title,
                self.settings.version if self.settings else "0.0.0",
                prefix,
                list(job.endpoints.values()) if job else [],
                sorted([*job.static_files, *(d.path for d in job.static_dirs)]) if job else [],
                bool(job and job.webview),
            )
            body = to_json(document)
            if job is not None and len(self._openapi_cache) < 32:
                self._openapi_cache[prefix] = body
        await responses.send_bytes(request.send, 200, body, responses.JSON, request.tracing_id)
        self._account(request, "/openapi.json", 200, started)

    # ---- static files and webview ----------------------------------------------------------

    async def _static(self, request: Request, job: LoadedJob) -> bool:
        """Serve a static endpoint; False when the path belongs to none (so routing goes on)."""
        path = request.path
        target = job.static_files.get(path)
        file_path: str | None = None
        endpoint = path
        if target is not None:
            file_path = target.target
        else:
            for directory in job.static_dirs:
                if path.startswith(directory.path + "/"):
                    target = directory
                    endpoint = directory.path
                    file_path = static_files.resolve_in_directory(
                        directory.target, self._root, path[len(directory.path) + 1 :]
                    )
                    break
            if target is None:
                return False
        await self._serve_file(request, endpoint, file_path, target.mimetype)
        return True

    async def _serve_file(
        self, request: Request, endpoint: str, file_path: str | None, mimetype: str | None = None
    ) -> None:
        """GET/HEAD of a file already resolved inside its allowed folder (None: not there)."""
        method = request.scope["method"]
        if method not in ("GET", "HEAD"):
            await self._finish_error(
                request,
                endpoint,
                405,
                f"method {method} not allowed, use GET",
                "MethodNotAllowed",
                [(b"allow", b"GET, HEAD")],
            )
            return
        if file_path is None or not _is_file(file_path):
            await self._finish_error(
                request, endpoint, 404, f"not found: {request.scope['path']}", "NotFound"
            )
            return
        started = time.perf_counter()
        await responses.send_file(
            request.send,
            file_path,
            mimetype or static_files.guess_mimetype(file_path),
            request.tracing_id,
            head=method == "HEAD",
        )
        self._account(request, endpoint, 200, started)

    async def _webview(self, request: Request, job: LoadedJob) -> None:
        path = request.path
        static_prefix = next(
            (p for p in (WEBVIEW_PATH + "/static/", "/webview/static/") if path.startswith(p)), None
        )
        if static_prefix is not None and job.webview_static_dir is not None:
            file_path = static_files.resolve_in_directory(
                job.webview_static_dir, self._root, path[len(static_prefix) :]
            )
            await self._serve_file(request, WEBVIEW_PATH, file_path)
            return
        if path == WEBVIEW_PATH:
            query = request.scope.get("query_string", b"").decode("latin-1")
            location = self._mount_prefix(request) + WEBVIEW_PATH + "/" + (f"?{query}" if query else "")
            await responses.send_redirect(request.send, location, request.tracing_id)
            return
        assert job.webview is not None and self.settings is not None
        started = time.perf_counter()
        scope = dict(request.scope)
        canonical = f"/pub/job/{self.settings.name}/{self.settings.version}{path}"
        scope["path"] = canonical
        scope["raw_path"] = canonical.encode()
        scope["root_path"] = ""
        status_box = [500]

        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_box[0] = message["status"]
            await request.send(message)

        await job.webview(scope, request.receive, send)
        self._account(request, WEBVIEW_PATH, status_box[0], started)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        _prefix, path = self._split_prefix(scope["path"])
        job = self.job
        if job is None or job.webview is None or not path.startswith(WEBVIEW_PATH) or self.settings is None:
            await send({"type": "websocket.close", "code": 1008})
            return
        scope = dict(scope)
        scope["path"] = f"/pub/job/{self.settings.name}/{self.settings.version}{path}"
        scope["root_path"] = ""
        await job.webview(scope, receive, send)


class Request:
    __slots__ = ("content_length", "path", "prefix", "receive", "scope", "send", "tracing_id")

    def __init__(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        prefix: str,
        path: str,
        tracing_id: str,
        content_length: int,
    ) -> None:
        self.scope = scope
        self.receive = receive
        self.send = send
        self.prefix = prefix
        self.path = path
        self.tracing_id = tracing_id
        self.content_length = content_length


async def _read_body(receive: Receive, limit: int) -> bytes:
    message = await receive()
    if message["type"] == "http.disconnect":
        raise ClientGone()
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        if len(body) > limit:
            raise BodyTooLarge()
        return body
    chunks = [body]
    size = len(body)
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge()
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _is_file(path: str) -> bool:
    return os.path.isfile(path)


def options_from_env(max_body_size: int | None = None) -> AppOptions:
    timestamp = os.environ.get("JOB_DEPLOYMENT_TIMESTAMP", "")
    return AppOptions(
        max_body_size=max_body_size or max_body_from_env(),
        deployment_timestamp=int(timestamp) if timestamp.isdigit() else 0,
        log_caller=env_flag("LOG_CALLER_NAME"),
    )
