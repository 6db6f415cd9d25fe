"""LifecycleRegistry against a real lifecycle served by uvicorn on a loopback port.

The server counts the requests it gets, so "no lifecycle call" is checked where it happens. Time
is a fake clock in the registry (TTLs of seconds pass at once); the lifecycle keeps real time.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from argon2 import PasswordHasher

from lifecycle import family_tokens
from lifecycle.api.app import create_app
from lifecycle.auth import passwords
from lifecycle.auth.admin import ensure_admin
from lifecycle.control_plane import ControlPlane
from lifecycle.store.models import JobStatus
from pub.lifecycle_client import LifecycleRegistry, LifecycleUnavailable
from pub.registry import CallDecision, Registry
from tests.conftest import free_port
from tests.lifecycle.platform import lifecycle_config, store_only_job

PASSWORD = "correct horse battery"
PERFORM = "/api/v1/perform"
AUTHORIZE = "/lifecycle/api/v1/gateway/authorize"


def resolve_path(name: str, version: str) -> str:
    return f"/lifecycle/api/v1/gateway/resolve/{name}/{version}"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Counting:
    """ASGI middleware: how many requests each path got."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.requests: Counter[str] = Counter()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.requests[scope["path"]] += 1
        await self.app(scope, receive, send)


class Lifecycle:
    """A control plane (not started: no job runs) served over HTTP, which a test can stop."""

    def __init__(self, data: Path) -> None:
        config = lifecycle_config(data)
        self.plane = ControlPlane(config, pub_url="http://127.0.0.1:7200/pub")
        admin_token = ensure_admin(self.plane.db, data)
        assert admin_token
        self.admin_token = admin_token
        self.app = Counting(create_app(self.plane))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.start()
        self.gateway_token = self._gateway_credential()

    def start(self) -> None:
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_config=None, lifespan="off")
        server = self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=server.run, name="lifecycle", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            assert self._thread.is_alive() and time.monotonic() < deadline, "the lifecycle did not start"
            time.sleep(0.01)

    def stop(self) -> None:
        assert self._server is not None and self._thread is not None
        self._server.should_exit = True
        self._thread.join(10)
        assert not self._thread.is_alive()

    def close(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            self.stop()
        self.plane.stop()

    def admin(self, method: str, path: str, json: Any = None, token: str | None = None) -> Any:
        r = httpx.request(
            method,
            f"{self.url}/lifecycle/api/v1{path}",
            json=json,
            headers={"X-Racetrack-Auth": token or self.admin_token},
        )
        assert r.status_code in (200, 201), r.text
        return r.json()

    def _gateway_credential(self) -> str:
        self.admin("POST", "/escs", {"name": "gateway"})
        self.admin(
            "POST",
            "/permissions",
            {"subject_type": "esc", "subject_name": "gateway", "scope": "call_admin_api"},
        )
        token: str = self.admin("POST", "/escs/gateway/tokens", {})["token"]
        return token

    def user(self, name: str) -> tuple[str, int]:
        """A new user with Racetrack's default permissions: a token of it and the token's id."""
        self.admin("POST", "/users", {"username": name, "password": PASSWORD})
        issued = self.admin("POST", f"/users/{name}/tokens", {})
        return issued["token"], issued["id"]

    def job(self, name: str, version: str, status: JobStatus = JobStatus.RUNNING) -> None:
        store_only_job(self.plane, name, version, status)

    def registry(self, clock: FakeClock, **options: Any) -> LifecycleRegistry:
        return LifecycleRegistry(self.url, self.gateway_token, clock=clock, **options)


@pytest.fixture(scope="module", autouse=True)
def cheap_password_hashing() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        # argon2id with tiny parameters: the real ones cost about 0.1 s a hash
        patch.setattr(passwords, "hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
        yield


@pytest.fixture(scope="module")
def lifecycle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lifecycle]:
    served = Lifecycle(tmp_path_factory.mktemp("lifecycle"))
    served.job("adder", "1.0.0")
    served.job("adder", "1.1.0")
    served.job("adder", "2.0.0", JobStatus.STARTING)
    yield served
    served.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_it_is_a_registry(lifecycle: Lifecycle, clock: FakeClock) -> None:
    registry: Registry = lifecycle.registry(clock)
    target = registry.resolve("adder", "latest")
    assert target is not None
    assert (target.name, target.version, target.status, target.replicas) == ("adder", "1.1.0", "running", ())


def test_a_fresh_decision_makes_no_lifecycle_call(
    lifecycle: Lifecycle, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    registry = lifecycle.registry(clock, fresh_ttl=5.0)
    token, _ = lifecycle.user("fresh")
    before = lifecycle.app.requests[AUTHORIZE]
    decisions = [registry.authorize(token, "adder", "1.0.0", PERFORM) for _ in range(5)]
    assert decisions[0] == CallDecision(True, 200, "User fresh", "permitted", decisions[0].subject_key)
    assert decisions[0].subject_key is not None and decisions[0].subject_key.startswith("user:")
    assert all(d == decisions[0] for d in decisions)
    assert lifecycle.app.requests[AUTHORIZE] - before == 1
    assert (registry.hits, registry.misses, registry.lifecycle_calls) == (4, 1, 1)

    clock.advance(4.9)
    registry.authorize(token, "adder", "1.0.0", PERFORM)
    assert lifecycle.app.requests[AUTHORIZE] - before == 1
    # each (token, job, version, endpoint) is a decision of its own
    registry.authorize(token, "adder", "1.0.0", "/api/v1/parameters")
    registry.authorize(token, "adder", "1.1.0", PERFORM)
    registry.authorize(None, "adder", "1.0.0", PERFORM)
    assert lifecycle.app.requests[AUTHORIZE] - before == 4
    assert registry.counters() == {
        "hits": 5,
        "misses": 4,
        "stale_serves": 0,
        "unavailable": 0,
        "resolve_hits": 0,
        "resolve_misses": 0,
        "resolve_stale_serves": 0,
        "resolve_unavailable": 0,
        "coalesced": 0,
        "lifecycle_calls": 4,
        "lifecycle_errors": 0,
    }
    assert registry.auth_cache_stats() == (5, 4)  # what the gateway's /pub/metrics reads
    # the token goes in the body: no log line (uvicorn's access log included) shows it
    assert caplog.records and token not in caplog.text
    registry.close()


def test_a_revoked_token_stops_working_within_the_fresh_ttl(lifecycle: Lifecycle, clock: FakeClock) -> None:
    registry = lifecycle.registry(clock, fresh_ttl=5.0)
    token, token_id = lifecycle.user("revoked")
    assert registry.authorize(token, "adder", "1.0.0", PERFORM).allowed
    lifecycle.admin("DELETE", f"/tokens/{token_id}")
    clock.advance(4.0)
    assert registry.authorize(token, "adder", "1.0.0", PERFORM).allowed  # cached: at most fresh_ttl
    clock.advance(1.0)
    decision = registry.authorize(token, "adder", "1.0.0", PERFORM)
    assert (decision.allowed, decision.status) == (False, 401)
    assert "invalid auth token" in decision.reason
    registry.close()


def test_an_expiring_token_is_not_cached_past_its_expiry(lifecycle: Lifecycle, clock: FakeClock) -> None:
    registry = lifecycle.registry(clock, fresh_ttl=5.0)
    lifecycle.admin("POST", "/users", {"username": "expiring", "password": PASSWORD})
    expires_at = time.time() + 3
    expiring = lifecycle.admin(
        "POST",
        "/users/expiring/tokens",
        {"expires_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires_at))},
    )["token"]
    assert registry.authorize(expiring, "adder", "1.0.0", PERFORM).allowed
    calls = registry.lifecycle_calls
    clock.advance(min(expires_at - time.time() + 0.5, 4.5))  # past its expiry, within fresh_ttl
    registry.authorize(expiring, "adder", "1.0.0", PERFORM)
    assert registry.lifecycle_calls == calls + 1
    registry.close()


def test_resolve_is_cached_for_resolve_ttl(lifecycle: Lifecycle, clock: FakeClock) -> None:
    registry = lifecycle.registry(clock, resolve_ttl=1.0)
    path = resolve_path("adder", "1.x")
    before = lifecycle.app.requests[path]
    first = registry.resolve("adder", "1.x")
    assert first is not None and first.version == "1.1.0"
    assert registry.resolve("adder", "1.x") == first
    assert lifecycle.app.requests[path] - before == 1
    clock.advance(1.0)
    assert registry.resolve("adder", "1.x") == first
    assert lifecycle.app.requests[path] - before == 2

    # "no such job" is an answer too, cached alike
    assert registry.resolve("nosuchjob", "latest") is None
    assert registry.resolve("nosuchjob", "latest") is None
    assert lifecycle.app.requests[resolve_path("nosuchjob", "latest")] == 1
    assert registry.resolve("adder", "7.x") is None
    starting = registry.resolve("adder", "2.0.0")
    assert starting is not None and starting.status == "starting"
    # names that cannot be one path segment never reach the lifecycle
    assert registry.resolve("../lifecycle", "latest") is None and registry.resolve("adder", "..") is None
    assert (registry.resolve_hits, registry.resolve_misses) == (2, 5)
    registry.close()


def test_a_stopped_lifecycle_serves_cached_answers_up_to_the_stale_ttl(
    tmp_path: Path, clock: FakeClock
) -> None:
    lifecycle = Lifecycle(tmp_path)
    try:
        lifecycle.job("adder", "1.0.0")
        registry = lifecycle.registry(clock, fresh_ttl=5.0, stale_ttl=60.0, resolve_ttl=1.0, retry_after=1.0)
        token, _ = lifecycle.user("alice")
        other, _ = lifecycle.user("bob")
        assert registry.authorize(token, "adder", "1.0.0", PERFORM).allowed
        target = registry.resolve("adder", "latest")
        assert target is not None

        lifecycle.stop()
        clock.advance(30)  # past fresh_ttl and resolve_ttl, within stale_ttl
        assert registry.authorize(token, "adder", "1.0.0", PERFORM).allowed
        assert registry.resolve("adder", "latest") == target
        assert (registry.stale_serves, registry.resolve_stale_serves) == (1, 1)

        unknown = registry.authorize(other, "adder", "1.0.0", PERFORM)
        assert (unknown.allowed, unknown.status, unknown.caller_name) == (False, 503, None)
        assert "cannot check the call's authorisation" in unknown.reason
        assert f"the lifecycle at {lifecycle.url}/lifecycle/api/v1 is unreachable" in unknown.reason
        with pytest.raises(
            LifecycleUnavailable, match=r"cannot resolve the job: the lifecycle at .* is unreachable"
        ):
            registry.resolve("adder", "1.0.0")
        assert registry.unavailable == 1 and registry.resolve_unavailable == 1
        # one failed call, then the lifecycle is left alone for retry_after (fake time stood still)
        assert registry.lifecycle_errors == 1

        clock.advance(30)  # the cached decision is now stale_ttl old
        expired = registry.authorize(token, "adder", "1.0.0", PERFORM)
        assert (expired.allowed, expired.status) == (False, 503)

        # back: answers as before, once the short back-off is over
        lifecycle.start()
        clock.advance(1.0)
        assert registry.authorize(token, "adder", "1.0.0", PERFORM).allowed
        assert registry.authorize(other, "adder", "1.0.0", PERFORM).allowed
        registry.close()
    finally:
        lifecycle.close()


def test_a_refused_gateway_credential_is_a_503_naming_it(lifecycle: Lifecycle, clock: FakeClock) -> None:
    token, _ = lifecycle.user("refused")
    for credential, status in (("tst_" + "n" * 43, 401), (token, 403)):  # unknown; a user's
        registry = LifecycleRegistry(lifecycle.url, credential, clock=clock)
        decision = registry.authorize(token, "adder", "1.0.0", PERFORM)
        assert (decision.allowed, decision.status) == (False, 503)
        assert f"the lifecycle refused the gateway's credential ({status}:" in decision.reason
        with pytest.raises(LifecycleUnavailable, match="refused the gateway's credential"):
            registry.resolve("adder", "latest")
        registry.close()


def test_a_lifecycle_without_the_gateway_api_is_not_a_missing_job(
    lifecycle: Lifecycle, clock: FakeClock
) -> None:
    registry = LifecycleRegistry(lifecycle.url + "/elsewhere", lifecycle.gateway_token, clock=clock)
    with pytest.raises(LifecycleUnavailable, match="has no gateway API"):
        registry.resolve("adder", "latest")
    registry.close()


def test_the_async_variants_share_one_lifecycle_call_per_key(lifecycle: Lifecycle, clock: FakeClock) -> None:
    token, _ = lifecycle.user("concurrent")
    registry = lifecycle.registry(clock)
    before = lifecycle.app.requests[AUTHORIZE]

    async def main() -> list[CallDecision]:
        try:
            decisions = await asyncio.gather(
                *(registry.authorize_async(token, "adder", "1.1.0", PERFORM) for _ in range(20))
            )
            targets = await asyncio.gather(*(registry.resolve_async("adder", "latest") for _ in range(5)))
            assert {t.version for t in targets if t is not None} == {"1.1.0"}
            assert await registry.authorize_async(token, "adder", "1.1.0", PERFORM) == decisions[0]
            return decisions
        finally:
            await registry.aclose()

    decisions = asyncio.run(main())
    assert all(d.allowed and d.caller_name == "User concurrent" for d in decisions)
    assert lifecycle.app.requests[AUTHORIZE] - before == 1
    # 19 waited for the first decision, 4 for the first resolution
    assert (registry.misses, registry.hits, registry.resolve_misses, registry.coalesced) == (1, 1, 1, 23)
    registry.close()


def test_the_threaded_variant_shares_one_lifecycle_call_per_key(
    lifecycle: Lifecycle, clock: FakeClock
) -> None:
    token, _ = lifecycle.user("threads")
    registry = lifecycle.registry(clock)
    barrier = threading.Barrier(8)
    decisions: list[CallDecision] = []

    def call() -> None:
        barrier.wait()
        decisions.append(registry.authorize(token, "adder", "1.0.0", PERFORM))

    threads = [threading.Thread(target=call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(decisions) == 8 and all(d.allowed for d in decisions)
    # racing threads either wait on the one call or find its answer in the cache
    assert registry.misses == registry.lifecycle_calls == 1
    assert registry.hits + registry.coalesced == 7
    registry.close()


def test_a_job_family_token_calls_the_family_it_was_granted(lifecycle: Lifecycle, clock: FakeClock) -> None:
    lifecycle.job("chain", "0.0.1")
    token = family_tokens.family_token(lifecycle.plane.db, lifecycle.plane.secrets, "chain")
    registry = lifecycle.registry(clock)
    assert registry.authorize(token, "adder", "1.0.0", PERFORM).status == 403

    lifecycle.admin("POST", "/families/chain/can-call/adder")
    clock.advance(5.0)
    decision = registry.authorize(token, "adder", "1.0.0", PERFORM)
    assert (decision.allowed, decision.status, decision.caller_name) == (True, 200, "Job family chain")
    assert decision.subject_key is not None and decision.subject_key.startswith("family:")
    registry.close()


def test_answers_the_gateway_cannot_use_are_lifecycle_errors(clock: FakeClock) -> None:
    """A lifecycle that misbehaves (stood in for by a mock transport: the real one does not)."""
    answers = iter(
        [
            httpx.Response(500, json={"error": "internal error: OperationalError", "type": "InternalError"}),
            httpx.Response(200, json={"allowed": "yes", "status": 200, "reason": "permitted"}),
            httpx.Response(200, text="<html>a proxy's page</html>"),
        ]
    )
    registry = LifecycleRegistry(
        "http://lifecycle.invalid",
        "tst_gateway",
        clock=clock,
        transport=httpx.MockTransport(lambda _: next(answers)),
    )
    problems = []
    for endpoint in ("/a", "/b", "/c"):
        decision = registry.authorize("tst_caller", "adder", "1.0.0", endpoint)
        assert (decision.allowed, decision.status) == (False, 503)
        problems.append(decision.reason)
    assert "the lifecycle answered 500 to authorize: internal error: OperationalError" in problems[0]
    assert "the lifecycle's decision is malformed" in problems[1]
    assert "the lifecycle answered 200 to authorize" in problems[2]
    assert (registry.lifecycle_calls, registry.lifecycle_errors, registry.unavailable) == (3, 3, 3)
    registry.close()
