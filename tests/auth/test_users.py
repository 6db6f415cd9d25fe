"""Users: creation with Racetrack's default permissions, login, password changes, deactivation."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from argon2 import PasswordHasher

from lifecycle.auth import authenticate, passwords
from lifecycle.auth.permissions import list_permissions
from lifecycle.auth.subjects import user_subject
from lifecycle.auth.users import (
    change_password,
    create_user,
    delete_user,
    get_user,
    list_users,
    login,
    require_user,
    set_user_admin,
)
from lifecycle.store import AlreadyExists, Database, NotFound
from lifecycle.store.audit import list_events
from lifecycle.store.models import Scope, SubjectType

pytestmark = pytest.mark.usefixtures("cheap_password_hashing")


def test_a_new_user_gets_racetracks_default_permissions(database: Database) -> None:
    with database.session() as session:
        user = create_user(session, "alice", "password-1", actor="User admin")
        assert user.is_active and not user.is_admin
        assert user.password_hash.startswith("$argon2id$")
    with database.session() as session:
        granted = {
            (p.scope, p.job_family, p.job_version, p.endpoint)
            for p in list_permissions(session, SubjectType.USER, user.id)
        }
        assert granted == {
            (Scope.READ_JOB, None, None, None),
            (Scope.CALL_JOB, None, None, None),
            (Scope.DEPLOY_JOB, None, None, None),
            (Scope.DEPLOY_NEW_FAMILY, None, None, None),
        }
        assert [(e.actor, e.action, e.target) for e in list_events(session, action="user.create")] == [
            ("User admin", "user.create", "User alice")
        ]
        assert len(list_events(session, action="permission.grant")) == 4


def test_usernames_are_unique_and_validated(database: Database) -> None:
    with database.session() as session:
        create_user(session, "alice", "password-1", actor="system")
    with pytest.raises(AlreadyExists, match="user alice already exists"), database.session() as session:
        create_user(session, "alice", "password-2", actor="system")
    with database.session() as session:
        for bad in ("", "-alice", "a b", "a" * 65, "ali/ce"):
            with pytest.raises(ValueError, match="username"):
                create_user(session, bad, "password-1", actor="system")
        with pytest.raises(ValueError, match="password"):
            create_user(session, "bob", "short", actor="system")
        assert [u.username for u in list_users(session)] == ["alice"]


def test_login_gives_a_new_token_for_correct_credentials_only(database: Database) -> None:
    with database.session() as session:
        create_user(session, "alice", "password-1", actor="system")
    moment = datetime(2030, 1, 1, tzinfo=UTC)
    with database.session() as session:
        issued = login(session, "alice", "password-1", now=moment)
        assert issued is not None
        assert login(session, "alice", "wrong-password") is None
        assert login(session, "nobody", "password-1") is None
    subject = authenticate(database, issued.token)
    assert subject is not None and subject.description == "User alice"
    with database.session() as session:
        assert require_user(session, "alice").last_login_at == moment
        assert list_events(session, action="token.create")[0].actor == "User alice"


def test_change_password(database: Database) -> None:
    with database.session() as session:
        create_user(session, "alice", "password-1", actor="system")
    with database.session() as session:
        change_password(session, "alice", "password-2", actor="User alice")
        with pytest.raises(NotFound):
            change_password(session, "nobody", "password-2", actor="User alice")
    with database.session() as session:
        assert login(session, "alice", "password-1") is None
        assert login(session, "alice", "password-2") is not None
        assert list_events(session, action="user.change_password")[0].target == "User alice"


def test_login_upgrades_an_outdated_hash(database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    with database.session() as session:
        create_user(session, "alice", "password-1", actor="system")
        old_hash = require_user(session, "alice").password_hash
    monkeypatch.setattr(passwords, "hasher", PasswordHasher(time_cost=2, memory_cost=2048, parallelism=1))
    with database.session() as session:
        assert login(session, "alice", "password-1") is not None
    with database.session() as session:
        new_hash = require_user(session, "alice").password_hash
        assert new_hash != old_hash and "m=2048,t=2" in new_hash
        assert login(session, "alice", "password-1") is not None


def test_admin_flag_and_deletion(database: Database) -> None:
    with database.session() as session:
        user = create_user(session, "alice", "password-1", actor="system")
        issued = login(session, "alice", "password-1")
        assert issued is not None
    with database.session() as session:
        set_user_admin(session, "alice", True, actor="User admin")
    subject = authenticate(database, issued.token)
    assert subject is not None and subject.is_admin
    with database.session() as session:
        assert delete_user(session, "alice", actor="User admin") is True
        assert delete_user(session, "alice", actor="User admin") is False
    assert authenticate(database, issued.token) is None
    with database.session() as session:
        assert get_user(session, "alice") is None
        assert list_permissions(session, SubjectType.USER, user.id) == []
        assert user_subject(user).description == "User alice"
        assert list_events(session, action="user.delete")[0].target == "User alice"
