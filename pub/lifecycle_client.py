"""pub.registry.Registry over HTTP, for a gateway whose lifecycle runs in another process.

It asks the lifecycle's gateway API (lifecycle/api/gateway.py: `GET /gateway/resolve/...`,
`POST /gateway/authorize`) with the gateway's own credential, and caches the answers:

- authorisation decisions per (sha256 of the token, job, version, endpoint) for `fresh_ttl`
  seconds (never past the token's expiry), so a revoked token stops working within `fresh_ttl`;
- resolutions per (job, requested version) for `resolve_ttl` seconds.

While the lifecycle cannot answer (unreachable, timing out, refusing the gateway's credential,
answering nonsense), answers up to `stale_ttl` seconds old keep being served. A decision with
nothing cached is then `CallDecision(allowed=False, status=503, reason=...)` naming the problem,
and `resolve` raises `LifecycleUnavailable` (status 503, same kind of message): the gateway
answers 503 in both cases, never a wrong 401/403/404. After a connection failure or a timeout the
lifecycle is left alone for `retry_after` seconds, so a lifecycle that hangs does not hold every
uncached request for `timeout` seconds.

Concurrent misses of one key make one lifecycle call; the others wait for its answer. Counters
for /pub/metrics are plain attributes (and `counters()`). For decisions: `hits` (fresh from the
cache: no lifecycle call), `misses` (asked the lifecycle), `stale_serves` and `unavailable` (what
a miss the lifecycle did not answer became: a stale decision or a 503 one); the same with a
`resolve_` prefix for resolutions; `coalesced` (waited for another caller's lifecycle call),
`lifecycle_calls` (HTTP requests made) and `lifecycle_errors` (of those, the ones that failed).

`resolve`/`authorize` block (call them from a thread); `resolve_async`/`authorize_async` are the
same for the event loop. Both share the caches.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import threading
import time
from collections.abc import Callable, Coroutine, Hashable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx

from pub.registry import CallDecision, JobTarget

AUTH_HEADER = "X-Racetrack-Auth"
API_PREFIX = "/lifecycle/api/v1"

V = TypeVar("V")
T = TypeVar("T")


class LifecycleUnavailable(Exception):
    """The lifecycle could not answer and nothing young enough is cached: answer 503."""

    status = 503


class _LifecycleError(Exception):
    """A lifecycle call that gave no usable answer; the message names the problem."""

    def __init__(self, problem: str, called: bool = True) -> None:
        super().__init__(problem)
        self.problem = problem
        self.called = called  # False: the lifecycle was not asked (backing off)


@dataclass(frozen=True, slots=True)
class _Entry(Generic[V]):
    fetched_at: float
    value: V
    valid_until: float  # hard limit (the token's expiry), stale or not


class _Cache(Generic[V]):
    """Answers by key with their age; bounded (entries past `stale_ttl` go first, then the oldest)."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._entries: dict[Hashable, _Entry[V]] = {}

    def get(self, key: Hashable) -> _Entry[V] | None:
        return self._entries.get(key)

    def put(self, key: Hashable, entry: _Entry[V], now: float, stale_ttl: float) -> None:
        self._entries.pop(key, None)  # re-inserted at the end: dict order is age order
        if len(self._entries) >= self.max_entries:
            self._entries = {
                k: e
                for k, e in self._entries.items()
                if now - e.fetched_at < stale_ttl and now < e.valid_until
            }
            if len(self._entries) >= self.max_entries:
                self._entries = dict(list(self._entries.items())[len(self._entries) // 2 :])
        self._entries[key] = entry

    def __len__(self) -> int:
        return len(self._entries)


class LifecycleRegistry:
    """Registry (pub.registry) backed by a lifecycle's gateway API; see the module's doc."""

    def __init__(
        self,
        base_url: str,
        gateway_token: str,
        fresh_ttl: float = 5.0,
        stale_ttl: float = 60.0,
        resolve_ttl: float = 1.0,
        *,
        timeout: float = 2.0,
        retry_after: float = 1.0,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
        transport: httpx.BaseTransport | None = None,
        async_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """`base_url`: the lifecycle's address (`http://lifecycle:7202`); the API is under
        `/lifecycle/api/v1` there, unless `base_url` already ends with `/api/v1`."""
        base = base_url.rstrip("/")
        self.api_url = base if base.endswith("/api/v1") else base + API_PREFIX
        self.fresh_ttl = fresh_ttl
        self.stale_ttl = max(stale_ttl, fresh_ttl)
        self.resolve_ttl = resolve_ttl
        self.timeout = timeout
        self.retry_after = retry_after
        self._clock = clock
        self._headers = {AUTH_HEADER: gateway_token, "User-Agent": "trackside-gateway"}
        self._async_transport = async_transport
        self._client = httpx.Client(
            base_url=self.api_url,
            headers=self._headers,
            timeout=timeout,
            transport=transport,
            trust_env=False,
        )
        self._async_client: httpx.AsyncClient | None = None
        self._lock = threading.Lock()
        self._decisions: _Cache[CallDecision] = _Cache(max_entries)
        self._targets: _Cache[JobTarget | None] = _Cache(max_entries)
        self._flights: dict[Hashable, Future[Any]] = {}
        self._async_flights: dict[Hashable, asyncio.Task[Any]] = {}
        self._down_until = -math.inf
        self._down_problem = ""
        # counters for /pub/metrics
        self.hits = 0
        self.misses = 0
        self.stale_serves = 0
        self.unavailable = 0
        self.resolve_hits = 0
        self.resolve_misses = 0
        self.resolve_stale_serves = 0
        self.resolve_unavailable = 0
        self.coalesced = 0
        self.lifecycle_calls = 0
        self.lifecycle_errors = 0

    def __repr__(self) -> str:
        return f"LifecycleRegistry({self.api_url!r})"

    def counters(self) -> dict[str, int]:
        names = (
            "hits",
            "misses",
            "stale_serves",
            "unavailable",
            "resolve_hits",
            "resolve_misses",
            "resolve_stale_serves",
            "resolve_unavailable",
            "coalesced",
            "lifecycle_calls",
            "lifecycle_errors",
        )
        with self._lock:
            return {name: getattr(self, name) for name in names}

    def auth_cache_stats(self) -> tuple[int, int]:
        """(hits, misses) of the decision cache, for the gateway's metrics."""
        return self.hits, self.misses

    def close(self) -> None:
        self._client.close()

    async def aclose(self) -> None:
        if self._async_client is not None:
            await self._async_client.aclose()
            self._async_client = None

    # ---- Registry ------------------------------------------------------------------------------

    def resolve(self, name: str, version: str) -> JobTarget | None:
        """The job version to call; None: no such job or version. LifecycleUnavailable: no answer."""
        key = (name, version)
        if not _is_segment(name) or not _is_segment(version):
            return None  # no job has such a name or version
        found, target = self._fresh_target(key)
        if found:
            return target
        request = self._resolve_request(name, version)
        return self._single_flight(("resolve", key), lambda: self._settle_target(key, self._call(request)))

    def authorize(self, token: str | None, name: str, version: str, endpoint: str) -> CallDecision:
        key = (_token_hash(token), name, version, endpoint)
        cached = self._fresh_decision(key)
        if cached is not None:
            return cached
        request = self._authorize_request(token, name, version, endpoint)
        return self._single_flight(
            ("authorize", key), lambda: self._settle_decision(key, self._call(request))
        )

    async def resolve_async(self, name: str, version: str) -> JobTarget | None:
        key = (name, version)
        if not _is_segment(name) or not _is_segment(version):
            return None
        found, target = self._fresh_target(key)
        if found:
            return target
        request = self._resolve_request(name, version)

        async def fetch() -> JobTarget | None:
            return self._settle_target(key, await self._call_async(request))

        return await self._single_flight_async(("resolve", key), fetch)

    async def authorize_async(
        self, token: str | None, name: str, version: str, endpoint: str
    ) -> CallDecision:
        key = (_token_hash(token), name, version, endpoint)
        cached = self._fresh_decision(key)
        if cached is not None:
            return cached
        request = self._authorize_request(token, name, version, endpoint)

        async def fetch() -> CallDecision:
            return self._settle_decision(key, await self._call_async(request))

        return await self._single_flight_async(("authorize", key), fetch)

    async def record_calls_async(self, calls: dict[tuple[str, str], datetime]) -> None:
        """pub.registry.CallRecorder: report last calls (raises _LifecycleError when it cannot)."""
        body = {
            "calls": [
                {"job_name": name, "job_version": version, "at": at.isoformat()}
                for (name, version), at in calls.items()
            ]
        }
        self._checked(await self._call_async(("POST", "/gateway/calls", body)), "record calls", empty_ok=True)

    # ---- the cache -----------------------------------------------------------------------------

    def _fresh_decision(self, key: Hashable) -> CallDecision | None:
        now = self._clock()
        with self._lock:
            entry = self._decisions.get(key)
            if entry is not None and now - entry.fetched_at < self.fresh_ttl and now < entry.valid_until:
                self.hits += 1
                return entry.value
        return None

    def _fresh_target(self, key: Hashable) -> tuple[bool, JobTarget | None]:
        now = self._clock()
        with self._lock:
            entry = self._targets.get(key)
            if entry is not None and now - entry.fetched_at < self.resolve_ttl:
                self.resolve_hits += 1
                return True, entry.value
        return False, None

    def _settle_decision(self, key: Hashable, outcome: httpx.Response | _LifecycleError) -> CallDecision:
        """Cache the lifecycle's decision, or fall back on a stale one or a 503 decision."""
        now = self._clock()
        with self._lock:
            self.misses += 1
        try:
            decision, expires_in = _decision(self._checked(outcome, "authorize"))
        except _LifecycleError as error:
            with self._lock:
                self.lifecycle_errors += error.called
                entry = self._decisions.get(key)
                if entry is not None and now - entry.fetched_at < self.stale_ttl and now < entry.valid_until:
                    self.stale_serves += 1
                    return entry.value
                self.unavailable += 1
            return CallDecision(
                allowed=False,
                status=503,
                caller_name=None,
                reason=f"cannot check the call's authorisation: {error.problem}",
            )
        valid_until = math.inf if expires_in is None else now + expires_in
        with self._lock:
            self._decisions.put(key, _Entry(now, decision, valid_until), now, self.stale_ttl)
        return decision

    def _settle_target(self, key: Hashable, outcome: httpx.Response | _LifecycleError) -> JobTarget | None:
        now = self._clock()
        with self._lock:
            self.resolve_misses += 1
        try:
            target = _target(self._checked(outcome, "resolve", not_found_ok=True))
        except _LifecycleError as error:
            with self._lock:
                self.lifecycle_errors += error.called
                entry = self._targets.get(key)
                if entry is not None and now - entry.fetched_at < self.stale_ttl:
                    self.resolve_stale_serves += 1
                    return entry.value
                self.resolve_unavailable += 1
            raise LifecycleUnavailable(f"cannot resolve the job: {error.problem}") from None
        with self._lock:
            self._targets.put(key, _Entry(now, target, math.inf), now, self.stale_ttl)
        return target

    # ---- one call per key at a time ------------------------------------------------------------

    def _single_flight(self, key: Hashable, fetch: Callable[[], T]) -> T:
        with self._lock:
            flight = self._flights.get(key)
            leader = flight is None
            if flight is None:
                flight = self._flights[key] = Future()
            else:
                self.coalesced += 1
        if not leader:
            result: T = flight.result()
            return result
        try:
            value = fetch()
        except BaseException as error:
            flight.set_exception(error)
            raise
        else:
            flight.set_result(value)
            return value
        finally:
            with self._lock:
                del self._flights[key]

    async def _single_flight_async(self, key: Hashable, fetch: Callable[[], Coroutine[Any, Any, T]]) -> T:
        # the call runs as a task of its own: a caller that goes away (cancelled) does not cancel
        # it for the others waiting on it
        key = (id(asyncio.get_running_loop()), key)
        flight = self._async_flights.get(key)
        if flight is None:
            flight = self._async_flights[key] = asyncio.ensure_future(fetch())

            def landed(task: asyncio.Task[Any]) -> None:
                self._async_flights.pop(key, None)
                if not task.cancelled():
                    task.exception()  # retrieved, even when every waiter went away

            flight.add_done_callback(landed)
        else:
            with self._lock:
                self.coalesced += 1
        result: T = await asyncio.shield(flight)
        return result

    # ---- HTTP ----------------------------------------------------------------------------------

    def _resolve_request(self, name: str, version: str) -> tuple[str, str, dict[str, Any] | None]:
        return "GET", f"/gateway/resolve/{quote(name, safe='')}/{quote(version, safe='')}", None

    def _authorize_request(
        self, token: str | None, name: str, version: str, endpoint: str
    ) -> tuple[str, str, dict[str, Any] | None]:
        body = {"token": token, "job_name": name, "job_version": version, "endpoint": endpoint}
        return "POST", "/gateway/authorize", body

    def _backing_off(self) -> _LifecycleError | None:
        """The last connection problem while the lifecycle is left alone; None: go ahead (counted)."""
        with self._lock:
            if self._clock() < self._down_until:
                return _LifecycleError(self._down_problem, called=False)
            self.lifecycle_calls += 1
        return None

    def _failed(self, error: httpx.HTTPError) -> _LifecycleError:
        if isinstance(error, httpx.TimeoutException):
            problem = f"the lifecycle at {self.api_url} did not answer within {self.timeout:g} s"
        else:
            problem = f"the lifecycle at {self.api_url} is unreachable ({error.__class__.__name__}: {error})"
        with self._lock:
            self._down_until = self._clock() + self.retry_after
            self._down_problem = problem
        return _LifecycleError(problem)

    def _call(self, request: tuple[str, str, dict[str, Any] | None]) -> httpx.Response | _LifecycleError:
        backing_off = self._backing_off()
        if backing_off is not None:
            return backing_off
        method, path, body = request
        try:
            return self._client.request(method, path, json=body)
        except httpx.HTTPError as error:
            return self._failed(error)

    async def _call_async(
        self, request: tuple[str, str, dict[str, Any] | None]
    ) -> httpx.Response | _LifecycleError:
        backing_off = self._backing_off()
        if backing_off is not None:
            return backing_off
        if self._async_client is None:
            self._async_client = httpx.AsyncClient(
                base_url=self.api_url,
                headers=self._headers,
                timeout=self.timeout,
                transport=self._async_transport,
                trust_env=False,
            )
        method, path, body = request
        try:
            return await self._async_client.request(method, path, json=body)
        except httpx.HTTPError as error:
            return self._failed(error)

    def _checked(
        self,
        outcome: httpx.Response | _LifecycleError,
        what: str,
        not_found_ok: bool = False,
        empty_ok: bool = False,
    ) -> dict[str, Any] | None:
        """The answer's JSON body (None for a job the lifecycle does not know, or for 204 when
        `empty_ok`); _LifecycleError else."""
        if isinstance(outcome, _LifecycleError):
            raise outcome
        if empty_ok and outcome.status_code == 204:
            return None
        try:
            body = outcome.json()
        except ValueError:
            body = None
        error = body.get("error") if isinstance(body, dict) else None
        status = outcome.status_code
        if status == 200 and isinstance(body, dict):
            return body
        if status == 404 and not_found_ok and isinstance(body, dict) and "job" in body:
            return None
        if status in (401, 403):
            problem = (
                f"the lifecycle refused the gateway's credential ({status}: {error or outcome.reason_phrase})"
            )
        elif status == 404:
            problem = f"the lifecycle at {self.api_url} has no gateway API (404 for {what}): is it older than the gateway?"
        else:
            problem = f"the lifecycle answered {status} to {what}: {error or outcome.reason_phrase}"
        raise _LifecycleError(problem)


def _token_hash(token: str | None) -> str | None:
    return None if token is None else hashlib.sha256(token.encode()).hexdigest()


def _is_segment(text: str) -> bool:
    """Whether `text` can be a job name or version in a URL path (the lifecycle's routes decode
    `%2F`, so a `/` could never reach it as one segment)."""
    return bool(text) and "/" not in text and text not in (".", "..")


def _decision(body: dict[str, Any] | None) -> tuple[CallDecision, float | None]:
    if body is None:
        raise _LifecycleError("the lifecycle's decision is missing")
    try:
        decision = CallDecision(
            allowed=_typed(body["allowed"], bool),
            status=_typed(body["status"], int),
            caller_name=_optional(body.get("caller_name"), str),
            reason=_typed(body["reason"], str),
            subject_key=_optional(body.get("subject_key"), str),
        )
        expires_in = body.get("expires_in")
        return decision, None if expires_in is None else float(expires_in)
    except (KeyError, TypeError, ValueError) as error:
        raise _LifecycleError(f"the lifecycle's decision is malformed ({error!r})") from None


def _target(body: dict[str, Any] | None) -> JobTarget | None:
    if body is None:
        return None
    try:
        return JobTarget(
            name=_typed(body["name"], str),
            version=_typed(body["version"], str),
            replicas=tuple(_typed(r, str) for r in body["replicas"]),
            status=_typed(body["status"], str),
            public_endpoints=tuple(_typed(e, str) for e in body.get("public_endpoints") or ()),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise _LifecycleError(f"the lifecycle's job target is malformed ({error!r})") from None


def _typed(value: object, kind: type[T]) -> T:
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise TypeError(f"expected {kind.__name__}, got {value!r}")
    return value


def _optional(value: object, kind: type[T]) -> T | None:
    return None if value is None else _typed(value, kind)
