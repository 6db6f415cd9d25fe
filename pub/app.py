"""The gateway: a pure ASGI app serving `/pub` (no framework on the request path).

    ANY /pub/job/{name}/{version}/{path}   forwarded to a ready replica of the resolved version
    GET /pub/live | /pub/ready | /pub/health | /pub/metrics

One request: parse and normalise the path (pub.routing) → resolve the version (Registry.resolve:
404 unknown, 503 no ready replica) → authorise (Registry.authorize: 401/403; the job's `/live`,
`/ready` and `/health` are public) → forward to the replicas in round-robin order (pub.proxy:
502 unreachable, 504 timeout). WebSocket upgrades take the same path (pub.websocket_proxy).

Registry calls are made on the event loop: an implementation must answer from memory or within a
millisecond or so (the embedded one does). One that may wait on the network can offer
`async def resolve_async(...)` / `authorize_async(...)` with the same arguments; the gateway then
awaits those instead. A registry's authorisation cache counts are exported: `auth_cache_stats()
-> (hits, misses)`, else its `hits` and `misses` attributes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any, NamedTuple
from urllib.parse import quote

import msgspec

from .balancer import RoundRobin
from .errors import JSON, deny_websocket, send_error
from .gateway_metrics import CONTENT_TYPE, GatewayMetrics
from .headers import UnsafeHeader, new_tracing_id, scan
from .last_calls import LastCalls
from .proxy import DEFAULT_CONNECT_TIMEOUT, Exchange, Forwarder, Upstreams
from .registry import CallDecision, JobTarget, Registry
from .routing import BadPath, JobPath, parse_job_path
from .websocket_proxy import HANDSHAKE_HEADERS, proxy_websocket

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

JOB_PREFIX = "/pub/job/"
PUBLIC_PROBES = frozenset({"/live", "/ready", "/health"})  # of every job, no token needed
TIMEOUT_ENV = "TRACKSIDE_PUB_UPSTREAM_TIMEOUT"
CONNECT_TIMEOUT_ENV = "TRACKSIDE_PUB_CONNECT_TIMEOUT"
LAST_CALL_INTERVAL_ENV = "TRACKSIDE_PUB_LAST_CALL_INTERVAL"

_encode = msgspec.json.Encoder().encode


class Routed(NamedTuple):
    route: JobPath | None
    target: JobTarget | None
    caller: str | None  # for X-Caller-Name
    refusal: (
        tuple[int, str, list[tuple[bytes, bytes]], dict[str, Any]] | None
    )  # status, message, headers, extra


@dataclass(frozen=True)
class GatewayConfig:
    upstream_timeout: float | None = None  # seconds until the job's response head; None: no limit
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    retry_after: int = 1  # seconds, sent with 503
    last_call_interval: float = 10.0  # seconds between reports of last calls to the registry

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> GatewayConfig:
        """TRACKSIDE_PUB_UPSTREAM_TIMEOUT (seconds, empty/0/none: no limit),
        TRACKSIDE_PUB_CONNECT_TIMEOUT (seconds, default 5), TRACKSIDE_PUB_LAST_CALL_INTERVAL
        (seconds between reports of jobs' last calls, default 10)."""
        env = os.environ if environ is None else environ
        timeout = _seconds(env, TIMEOUT_ENV)
        connect = _seconds(env, CONNECT_TIMEOUT_ENV)
        interval = _seconds(env, LAST_CALL_INTERVAL_ENV)
        return cls(
            upstream_timeout=timeout,
            connect_timeout=connect or DEFAULT_CONNECT_TIMEOUT,
            last_call_interval=interval or cls.last_call_interval,
        )


def _seconds(env: Mapping[str, str], name: str) -> float | None:
    text = env.get(name, "").strip().lower()
    if text in ("", "none", "0"):
        return None
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name} must be a number of seconds, got {text!r}") from None
    if value < 0:
        raise ValueError(f"{name} must not be negative, got {text!r}")
    return value or None


class Gateway:
    """The ASGI app. `mounts`: other apps under `/pub` by path prefix (e.g. `{"/pub/async/": app}`)."""

    def __init__(
        self,
        registry: Registry,
        config: GatewayConfig | None = None,
        mounts: Mapping[str, ASGIApp] | None = None,
    ) -> None:
        self.registry = registry
        self.config = config or GatewayConfig()
        self.metrics = GatewayMetrics(_auth_cache_stats(registry))
        self.upstreams = Upstreams(self.config.connect_timeout)
        self.forwarder = Forwarder(self.upstreams, self.metrics, self.config.upstream_timeout)
        self.balancer = RoundRobin()
        self.mounts = dict(mounts or {})
        self.last_calls = LastCalls(registry, self.config.last_call_interval)
        self._resolve = registry.resolve
        self._authorize = registry.authorize
        self._resolve_async = getattr(registry, "resolve_async", None)
        self._authorize_async = getattr(registry, "authorize_async", None)
        self._retry_after = [(b"retry-after", b"%d" % self.config.retry_after)]
        self._internal: dict[str, tuple[int, bytes, bytes] | None] = {
            "/pub/live": (200, JSON[1], _encode({"live": True, "service": "pub"})),
            "/pub/ready": (200, JSON[1], _encode({"ready": True, "service": "pub"})),
            "/pub/health": (200, JSON[1], _encode({"service": "pub", "status": "pass"})),
            "/pub/metrics": None,
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            if scope["path"].startswith(JOB_PREFIX):
                await self._job(scope, receive, send)
            else:
                await self._other(scope, receive, send)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def start(self) -> None:
        """Begin reporting last calls (also begun by the first job call; lifespan does it too)."""
        self.last_calls.start()

    async def aclose(self) -> None:
        self.upstreams.close()
        await self.last_calls.aclose()

    # ---- job calls --------------------------------------------------------------------------

    async def _job(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        metrics = self.metrics
        metrics.in_flight += 1
        job = version = ""
        status = 500
        try:
            found = scan(scope["headers"])
            request_id = found.tracing_id
            route, target, caller, refusal = await self._route(scope, found.token)
            if target is not None:
                job, version = target.name, target.version
            if refusal is not None:
                status, message, headers, extra = refusal
                await send_error(send, status, message, request_id, headers, **extra)
                return
            assert route is not None and target is not None
            try:
                lines = found.lines(caller)
            except UnsafeHeader as e:
                status = 400
                await send_error(send, 400, str(e), request_id)
                return
            self.last_calls.touch(job, version)
            exchange = Exchange(
                job,
                version,
                scope["method"],
                route.upstream_target(version, scope["query_string"]),
                lines,
                request_id,
            )
            status = await self.forwarder.forward(
                exchange,
                self.balancer.order(job, version, target.replicas),
                receive,
                send,
                found.content_length,
                found.chunked,
            )
        finally:
            metrics.in_flight -= 1
            metrics.observe(job, version, status, time.perf_counter() - started)

    async def _route(self, scope: Scope, token: str | None) -> Routed:
        """Where the call goes and who makes it, or why it may not."""
        raw_path = scope.get("raw_path") or quote(scope["path"]).encode("ascii")
        try:
            route = parse_job_path(raw_path, scope["query_string"])
        except BadPath as e:
            return Routed(None, None, None, (e.status, e.message, [], {}))
        try:
            if self._resolve_async is not None:
                target = await self._resolve_async(route.name, route.version)
            else:
                target = self._resolve(route.name, route.version)
        except Exception as e:  # the registry cannot answer now (e.g. the lifecycle is unreachable)
            status = getattr(e, "status", 503)
            message = f"cannot resolve job {route.name} {route.version} now: {e}"
            return Routed(route, None, None, (status, message, self._retry_after, {}))
        if target is None:
            return Routed(
                route, None, None, (404, f"job {route.name} has no version {route.version}", [], {})
            )
        endpoint = route.endpoint
        caller: str | None = None
        if endpoint in PUBLIC_PROBES or (
            token is None and target.public_endpoints and _covered(target.public_endpoints, endpoint)
        ):
            self.metrics.auth("public")
        else:
            decision: CallDecision
            if self._authorize_async is not None:
                decision = await self._authorize_async(token, target.name, target.version, endpoint)
            else:
                decision = self._authorize(token, target.name, target.version, endpoint)
            if not decision.allowed:
                # 401, 403; 503 from a registry that could not decide now
                status = decision.status if decision.status >= 400 else 403
                self.metrics.auth(str(status))
                extra = {"caller": decision.caller_name} if decision.caller_name else {}
                headers = self._retry_after if status == 503 else []
                return Routed(route, target, None, (status, decision.reason, headers, extra))
            self.metrics.auth("allowed")
            caller = decision.caller_name
        if not target.replicas:
            message = f"job {target.name} {target.version} has no ready replica (status: {target.status})"
            return Routed(route, target, caller, (503, message, self._retry_after, {}))
        return Routed(route, target, caller, None)

    # ---- WebSocket --------------------------------------------------------------------------

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        for prefix, app in self.mounts.items():
            if path.startswith(prefix):
                await app(scope, receive, send)
                return
        started = time.perf_counter()
        job = version = ""
        status = 500
        try:
            found = scan(scope["headers"], HANDSHAKE_HEADERS)
            if not _is_job_path(path):
                status = 404
                await deny_websocket(scope, send, 404, f"not found: {path}", found.tracing_id)
                return
            route, target, caller, refusal = await self._route(scope, found.token)
            if target is not None:
                job, version = target.name, target.version
            if refusal is not None:
                status, message, headers, extra = refusal
                await deny_websocket(scope, send, status, message, found.tracing_id, headers, **extra)
                return
            assert route is not None and target is not None
            try:
                pairs = found.pairs(caller)
            except UnsafeHeader as e:
                status = 400
                await deny_websocket(scope, send, 400, str(e), found.tracing_id)
                return
            status = await proxy_websocket(
                scope,
                receive,
                send,
                self.balancer.order(job, version, target.replicas),
                route.upstream_target(version, scope["query_string"]),
                pairs,
                found.tracing_id,
                job,
                version,
                self.metrics,
                self.config.connect_timeout,
            )
        finally:
            self.metrics.observe(job, version, status, time.perf_counter() - started)

    # ---- the gateway's own endpoints ----------------------------------------------------------

    async def _other(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        if path in self._internal:
            fixed = self._internal[path]
            if scope["method"] not in ("GET", "HEAD"):
                await send_error(
                    send, 405, f"method {scope['method']} not allowed", new_tracing_id(), [(b"allow", b"GET")]
                )
                return
            if fixed is None:
                status, content_type, body = 200, CONTENT_TYPE, self.metrics.render()
            else:
                status, content_type, body = fixed
            await send(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [(b"content-type", content_type), (b"content-length", b"%d" % len(body))],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        for prefix, app in self.mounts.items():
            if path.startswith(prefix):
                await app(scope, receive, send)
                return
        if _is_job_path(path):  # with repeated slashes: pub.routing collapses them, or refuses
            await self._job(scope, receive, send)
            return
        await send_error(send, 404, f"not found: {path}", new_tracing_id())

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


def _auth_cache_stats(registry: Registry) -> Callable[[], tuple[int, int]] | None:
    """`registry.auth_cache_stats()`, else its `hits` and `misses` counters, else nothing."""
    stats: Callable[[], tuple[int, int]] | None = getattr(registry, "auth_cache_stats", None)
    counted: Any = registry
    if stats is None and hasattr(counted, "hits") and hasattr(counted, "misses"):
        return lambda: (int(counted.hits), int(counted.misses))
    return stats


def _is_job_path(path: str) -> bool:
    """`/pub/job/...`, also with repeated slashes (pub.routing collapses them, or refuses)."""
    return path.startswith(JOB_PREFIX) or (path.startswith("/pub/") and "//" in path)


def _covered(prefixes: tuple[str, ...], endpoint: str) -> bool:
    """Racetrack's prefix rule: `/foo` opens `/foo` and `/foo/...`, not `/foobar`."""
    for prefix in prefixes:
        prefix = "/" + prefix.strip("/")
        if prefix == "/" or endpoint == prefix or endpoint.startswith(prefix + "/"):
            return True
    return False
