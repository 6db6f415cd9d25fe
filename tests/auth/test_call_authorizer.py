"""can_call: the gateway's decision per (token, job, version, endpoint), cached and invalidated."""

from __future__ import annotations

from datetime import timedelta

import pytest

from lifecycle.auth import CallAuthorizer, grant, issue_token, revoke_token
from lifecycle.auth.escs import create_esc
from lifecycle.auth.permissions import list_permissions, revoke_permission
from lifecycle.auth.public_endpoints import decide_public_endpoint, request_public_endpoints
from lifecycle.auth.subjects import Subject, esc_subject, family_subject, user_subject
from lifecycle.auth.users import create_user, set_user_active
from lifecycle.config import LifecycleConfig
from lifecycle.store import Database
from lifecycle.store.column_types import utcnow
from lifecycle.store.jobs import ensure_family
from lifecycle.store.models import Scope, SubjectType
from tests.db import count_queries

pytestmark = pytest.mark.usefixtures("cheap_password_hashing")

PERFORM = "/api/v1/perform"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def authorizer(database: Database, clock: FakeClock) -> CallAuthorizer:
    return CallAuthorizer(database, ttl=5, clock=clock)


def _user(db: Database, name: str = "alice") -> tuple[Subject, str]:
    with db.session() as session:
        subject = user_subject(create_user(session, name, "password-1", actor="system"))
        return subject, issue_token(session, subject, actor="system").token


def _esc(db: Database, name: str = "billing") -> tuple[Subject, str]:
    with db.session() as session:
        subject = esc_subject(create_esc(session, name, actor="system"))
        return subject, issue_token(session, subject, actor="system").token


def test_a_user_with_the_default_permissions_may_call(database: Database, authorizer: CallAuthorizer) -> None:
    alice, token = _user(database)
    decision = authorizer.can_call(token, "adder", "1.0.0", PERFORM)
    assert (decision.allowed, decision.status, decision.caller_name) == (True, 200, "User alice")
    assert decision.subject == alice


def test_missing_and_unknown_tokens_are_401(database: Database, authorizer: CallAuthorizer) -> None:
    for token in (None, ""):
        decision = authorizer.can_call(token, "adder", "1.0.0", PERFORM)
        assert (decision.allowed, decision.status, decision.caller_name) == (False, 401, None)
        assert "missing" in decision.reason
    decision = authorizer.can_call("tst_" + "A" * 43, "adder", "1.0.0", PERFORM)
    assert (decision.allowed, decision.status) == (False, 401)
    assert "invalid" in decision.reason


def test_expired_and_revoked_tokens_are_401(database: Database, authorizer: CallAuthorizer) -> None:
    alice, _ = _user(database)
    with database.session() as session:
        expired = issue_token(
            session, alice, actor="system", expires_at=utcnow() - timedelta(seconds=1)
        ).token
        revoked = issue_token(session, alice, actor="system")
        revoke_token(session, revoked.record.id, actor="system")
    for token in (expired, revoked.token):
        decision = authorizer.can_call(token, "adder", "1.0.0", PERFORM)
        assert (decision.allowed, decision.status) == (False, 401)


def test_without_permission_is_403_naming_subject_scope_and_resource(
    database: Database, authorizer: CallAuthorizer
) -> None:
    _, token = _esc(database)
    decision = authorizer.can_call(token, "adder", "1.0.0", PERFORM)
    assert (decision.allowed, decision.status, decision.caller_name) == (False, 403, "ESC billing")
    assert (
        decision.reason
        == "ESC billing has no call_job permission for endpoint /api/v1/perform of job adder 1.0.0"
    )


def test_endpoint_permissions_are_prefixes(database: Database, authorizer: CallAuthorizer) -> None:
    esc, token = _esc(database)
    with database.session() as session:
        grant(session, esc, Scope.CALL_JOB, actor="system", family="adder", endpoint="/api/v1/perform")
    assert authorizer.can_call(token, "adder", "1.0.0", PERFORM).allowed
    assert authorizer.can_call(token, "adder", "2.0.0", PERFORM + "/x").allowed
    assert authorizer.can_call(token, "adder", "1.0.0", "/api/v1/performance").status == 403
    assert authorizer.can_call(token, "other", "1.0.0", PERFORM).status == 403


def test_a_job_family_calls_another_job(database: Database, authorizer: CallAuthorizer) -> None:
    with database.session() as session:
        chain = family_subject(ensure_family(session, "python-chain"))
        token = issue_token(session, chain, actor="system", description="job token").token
        grant(session, chain, Scope.CALL_JOB, actor="User admin", family="adder")
    decision = authorizer.can_call(token, "adder", "1.0.0", PERFORM)
    assert (decision.allowed, decision.caller_name) == (True, "Job family python-chain")
    denied = authorizer.can_call(token, "other", "1.0.0", PERFORM)
    assert denied.reason.startswith("Job family python-chain has no call_job permission")


def test_a_second_call_is_answered_from_the_cache(database: Database, authorizer: CallAuthorizer) -> None:
    _, token = _user(database)
    with count_queries(database.engine) as first:
        authorizer.can_call(token, "adder", "1.0.0", PERFORM)
    assert first and (authorizer.hits, authorizer.misses) == (0, 1)
    with count_queries(database.engine) as second:
        for _ in range(3):
            assert authorizer.can_call(token, "adder", "1.0.0", PERFORM).allowed
    assert second == []
    assert (authorizer.hits, authorizer.misses) == (3, 1)
    # another endpoint is another decision
    authorizer.can_call(token, "adder", "1.0.0", "/api/v1/parameters")
    assert authorizer.misses == 2


def test_decisions_expire_after_the_ttl(
    database: Database, authorizer: CallAuthorizer, clock: FakeClock
) -> None:
    esc, token = _esc(database)
    assert authorizer.can_call(token, "adder", "1.0.0", PERFORM).status == 403
    # a change made by another process: this one's cache is not told, the TTL bounds the staleness
    with database.engine.begin() as connection:
        connection.exec_driver_sql(
            "INSERT INTO permissions (subject_type, subject_id, scope, created_at)"
            f" VALUES ('esc', {esc.id}, 'call_job', CURRENT_TIMESTAMP)"
        )
    assert authorizer.can_call(token, "adder", "1.0.0", PERFORM).status == 403
    clock.now += 5
    assert authorizer.can_call(token, "adder", "1.0.0", PERFORM).allowed


def test_revoking_a_token_invalidates_at_once(database: Database, authorizer: CallAuthorizer) -> None:
    alice, _ = _user(database)
    with database.session() as session:
        issued = issue_token(session, alice, actor="system")
    assert authorizer.can_call(issued.token, "adder", "1.0.0", PERFORM).allowed
    with database.session() as session:
        revoke_token(session, issued.record.id, actor="User alice")
        # not before the commit: a concurrent request could cache the old state again
        assert authorizer.can_call(issued.token, "adder", "1.0.0", PERFORM).allowed
    assert authorizer.can_call(issued.token, "adder", "1.0.0", PERFORM).status == 401


def test_permission_and_user_changes_invalidate(database: Database, authorizer: CallAuthorizer) -> None:
    alice, token = _user(database)
    esc, esc_token = _esc(database)
    assert authorizer.can_call(esc_token, "adder", "1.0.0", PERFORM).status == 403
    with database.session() as session:
        grant(session, esc, Scope.CALL_JOB, actor="system")
    assert authorizer.can_call(esc_token, "adder", "1.0.0", PERFORM).allowed

    with database.session() as session:
        call_job = [
            p for p in list_permissions(session, SubjectType.USER, alice.id) if p.scope is Scope.CALL_JOB
        ]
        revoke_permission(session, call_job[0].id, actor="system")
    assert authorizer.can_call(token, "adder", "1.0.0", PERFORM).status == 403

    with database.session() as session:
        set_user_active(session, "alice", False, actor="User admin")
    assert authorizer.can_call(token, "adder", "1.0.0", PERFORM).status == 401


def test_a_rolled_back_change_keeps_the_cache(database: Database, authorizer: CallAuthorizer) -> None:
    esc, token = _esc(database)
    authorizer.can_call(token, "adder", "1.0.0", PERFORM)
    with pytest.raises(RuntimeError), database.session() as session:
        grant(session, esc, Scope.CALL_JOB, actor="system")
        raise RuntimeError("abandoned")
    assert authorizer.can_call(token, "adder", "1.0.0", PERFORM).status == 403
    assert authorizer.hits == 1


def test_a_token_is_not_trusted_from_the_cache_beyond_its_expiry(
    database: Database, authorizer: CallAuthorizer, clock: FakeClock
) -> None:
    alice, lasting = _user(database)
    with database.session() as session:
        expiring = issue_token(
            session, alice, actor="system", expires_at=utcnow() + timedelta(seconds=3)
        ).token
    assert authorizer.can_call(expiring, "adder", "1.0.0", PERFORM).allowed
    assert authorizer.can_call(lasting, "adder", "1.0.0", PERFORM).allowed
    clock.now += 3.5  # within the 5 s TTL, beyond the expiring token's 3 s
    assert authorizer.can_call(lasting, "adder", "1.0.0", PERFORM).allowed
    assert (authorizer.hits, authorizer.misses) == (1, 2)
    authorizer.can_call(expiring, "adder", "1.0.0", PERFORM)
    assert (authorizer.hits, authorizer.misses) == (1, 3)


def test_approved_public_endpoints_need_no_token(database: Database, authorizer: CallAuthorizer) -> None:
    _, token = _esc(database)
    with database.session() as session:
        requests = request_public_endpoints(session, "adder", "1.0.0", ["/api/v1/perform", "/docs"])
    assert authorizer.can_call(None, "adder", "1.0.0", PERFORM).status == 401
    with database.session() as session:
        decide_public_endpoint(session, requests[0].id, True, actor="User admin")
        decide_public_endpoint(session, requests[1].id, False, actor="User admin")
    public = authorizer.can_call(None, "adder", "1.0.0", PERFORM)
    assert (public.allowed, public.caller_name, public.reason) == (True, None, "public endpoint")
    assert authorizer.can_call(token, "adder", "1.0.0", PERFORM).caller_name == "ESC billing"
    assert authorizer.can_call(None, "adder", "1.0.0", "/docs").status == 401
    assert authorizer.can_call(None, "adder", "1.0.1", PERFORM).status == 401


def test_ttl_comes_from_the_config(database: Database, tmp_path: object) -> None:
    config = LifecycleConfig.from_env(
        environ={"TRACKSIDE_DATA_DIR": str(tmp_path), "TRACKSIDE_AUTH_CACHE_TTL": "0"}
    )
    authorizer = CallAuthorizer.from_config(database, config)
    _, token = _user(database)
    authorizer.can_call(token, "adder", "1.0.0", PERFORM)
    authorizer.can_call(token, "adder", "1.0.0", PERFORM)
    assert (authorizer.hits, authorizer.misses) == (0, 2)


def test_the_cache_stays_bounded(database: Database, clock: FakeClock) -> None:
    authorizer = CallAuthorizer(database, ttl=5, max_entries=10, clock=clock)
    for i in range(25):
        authorizer.can_call(f"tst_guess{i}", "adder", "1.0.0", PERFORM)
    assert len(authorizer._cache) <= 10
