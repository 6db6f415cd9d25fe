"""Permissions: scopes, full_access, admins, family / version / endpoint filters, uniqueness, audit."""

from __future__ import annotations

import pytest
from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError

from lifecycle.auth import check, grant, grant_family_owner, revoke_permission
from lifecycle.auth.escs import create_esc
from lifecycle.auth.permissions import (
    denial_reason,
    describe_resource,
    endpoint_covers,
    find_permission,
    list_permissions,
)
from lifecycle.auth.subjects import Subject, esc_subject, user_subject
from lifecycle.auth.users import create_user
from lifecycle.store import Database
from lifecycle.store.audit import list_events
from lifecycle.store.models import Permission, Scope, SubjectType

pytestmark = pytest.mark.usefixtures("cheap_password_hashing")


@pytest.fixture
def esc(database: Database) -> Subject:
    with database.session() as session:
        return esc_subject(create_esc(session, "billing", actor="system"))


def _grant(db: Database, subject: Subject, scope: Scope, **resource: str | None) -> None:
    with db.session() as session:
        grant(session, subject, scope, actor="User admin", **resource)


@pytest.mark.parametrize(
    ("pattern", "endpoint", "covered"),
    [
        (None, "/anything", True),
        ("/foo", "/foo", True),
        ("/foo", "/foo/", True),
        ("/foo", "/foo/bar", True),
        ("/foo", "foo/bar", True),
        ("/foo/", "/foo/bar", True),
        ("foo", "/foo", True),
        ("/foo", "/foobar", False),
        ("/foo", "/fo", False),
        ("/foo", "/", False),
        ("/foo", None, False),
        ("/", "/anything/at/all", True),
        ("/api/v1/perform", "/api/v1/perform/../../admin", False),
        ("/api/v1", "/api/v1/./perform", False),
        (None, "/api/v1/../admin", True),
    ],
)
def test_endpoint_prefix_semantics(pattern: str | None, endpoint: str | None, covered: bool) -> None:
    assert endpoint_covers(pattern, endpoint) is covered


def test_new_users_may_read_call_and_deploy_everything_but_not_delete(database: Database) -> None:
    with database.session() as session:
        alice = user_subject(create_user(session, "alice", "password-1", actor="system"))
    for scope in (Scope.READ_JOB, Scope.CALL_JOB, Scope.DEPLOY_JOB):
        assert check(database, alice, scope, "adder", "1.0.0")
    assert check(database, alice, Scope.DEPLOY_NEW_FAMILY)
    assert check(database, alice, Scope.CALL_JOB, "adder", "1.0.0", "/api/v1/perform")
    assert not check(database, alice, Scope.DELETE_JOB, "adder", "1.0.0")
    assert not check(database, alice, Scope.CALL_ADMIN_API)
    assert not check(database, alice, Scope.FULL_ACCESS)

    with database.session() as session:
        grant_family_owner(session, alice, "adder", actor="User alice")
    assert check(database, alice, Scope.DELETE_JOB, "adder", "1.0.0")
    assert check(database, alice, Scope.DELETE_JOB, "adder", "2.0.0")
    assert not check(database, alice, Scope.DELETE_JOB, "other", "1.0.0")
    assert not check(database, alice, Scope.DELETE_JOB)  # "any job" is more than one family


def test_full_access_implies_every_scope_and_admins_have_it(database: Database, esc: Subject) -> None:
    _grant(database, esc, Scope.FULL_ACCESS)
    for scope in Scope:
        assert check(database, esc, scope, "adder", "1.0.0", "/x")
        assert check(database, esc, scope)
    admin = Subject(SubjectType.USER, 999, "root", is_admin=True)
    assert all(check(database, admin, scope) for scope in Scope)


def test_family_version_and_endpoint_filters(database: Database, esc: Subject) -> None:
    _grant(database, esc, Scope.CALL_JOB, family="adder", version="1.0.0", endpoint="/api/v1/perform")
    _grant(database, esc, Scope.READ_JOB, family="adder")
    call = Scope.CALL_JOB
    assert check(database, esc, call, "adder", "1.0.0", "/api/v1/perform")
    assert check(database, esc, call, "adder", "1.0.0", "/api/v1/perform/sub")
    assert not check(database, esc, call, "adder", "1.0.0", "/api/v1/performance")
    assert not check(database, esc, call, "adder", "1.0.0", "/api/v1/parameters")
    assert not check(database, esc, call, "adder", "1.0.0")  # all endpoints is more than one
    assert not check(database, esc, call, "adder", "1.0.1", "/api/v1/perform")
    assert not check(database, esc, call, "other", "1.0.0", "/api/v1/perform")
    assert check(database, esc, Scope.READ_JOB, "adder", "9.9.9")
    assert check(database, esc, Scope.READ_JOB, "adder")
    assert not check(database, esc, Scope.READ_JOB, "other", "1.0.0")
    assert not check(database, esc, Scope.DEPLOY_JOB, "adder", "1.0.0")


def test_a_version_needs_its_family_and_scopes_are_checked(database: Database, esc: Subject) -> None:
    with database.session() as session:
        with pytest.raises(ValueError, match="family"):
            grant(session, esc, Scope.CALL_JOB, actor="system", version="1.0.0")
        with pytest.raises(ValueError):
            grant(session, esc, "fly_to_the_moon", actor="system")


def test_granting_twice_keeps_one_row_and_the_database_enforces_it(database: Database, esc: Subject) -> None:
    _grant(database, esc, Scope.CALL_JOB, family="adder")
    _grant(database, esc, Scope.CALL_JOB, family="adder")
    _grant(database, esc, Scope.CALL_JOB, endpoint="api/v1/perform/")
    _grant(database, esc, Scope.CALL_JOB, endpoint="/api/v1/perform")
    with database.session() as session:
        assert len(list_permissions(session, SubjectType.ESC, esc.id)) == 2
        assert find_permission(session, SubjectType.ESC, esc.id, Scope.CALL_JOB, "adder") is not None
        assert find_permission(
            session, SubjectType.ESC, esc.id, Scope.CALL_JOB, None, None, "/api/v1/perform"
        )
        assert find_permission(session, SubjectType.ESC, esc.id, Scope.CALL_JOB) is None
    # NULL means "any": a second identical row with NULLs must still be a unique violation
    row = {
        "subject_type": SubjectType.ESC,
        "subject_id": esc.id,
        "scope": Scope.CALL_JOB,
        "job_family": "adder",
    }
    with pytest.raises(IntegrityError), database.session() as session:
        session.execute(insert(Permission).values(**row))


def test_revoking_and_the_audit_trail(database: Database, esc: Subject) -> None:
    _grant(database, esc, Scope.CALL_JOB, family="adder", endpoint="/api")
    with database.session() as session:
        permission = list_permissions(session, SubjectType.ESC, esc.id)[0]
        assert revoke_permission(session, permission.id, actor="User admin") is True
        assert revoke_permission(session, permission.id, actor="User admin") is False
    assert not check(database, esc, Scope.CALL_JOB, "adder", "1.0.0", "/api")
    with database.session() as session:
        granted, revoked = (
            list_events(session, action="permission.grant"),
            list_events(session, action="permission.revoke"),
        )
    assert [(e.actor, e.target) for e in granted + revoked] == [("User admin", "ESC billing")] * 2
    expected = {"scope": "call_job", "job_family": "adder", "job_version": None, "endpoint": "/api"}
    assert {k: granted[0].details[k] for k in expected} == expected
    assert {k: revoked[0].details[k] for k in expected} == expected


def test_denials_name_subject_scope_and_resource(esc: Subject) -> None:
    assert describe_resource() == "any job"
    assert describe_resource("adder") == "job family adder"
    assert (
        describe_resource("adder", "1.0.0", "/api/v1/perform")
        == "endpoint /api/v1/perform of job adder 1.0.0"
    )
    assert (
        denial_reason(esc, Scope.DELETE_JOB, "adder", "1.0.0")
        == "ESC billing has no delete_job permission for job adder 1.0.0"
    )
