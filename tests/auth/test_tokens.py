"""Tokens: shown once, stored as hashes, several per subject, expiring, revocable, use recorded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from lifecycle.auth import authenticate, issue_token, revoke_token
from lifecycle.auth.subjects import Subject, user_subject
from lifecycle.auth.tokens import LAST_USED_RESOLUTION, TOKEN_PREFIX, hash_token, list_tokens
from lifecycle.auth.users import create_user, set_user_active
from lifecycle.store import Database
from lifecycle.store.audit import list_events
from lifecycle.store.models import SubjectType, Token
from tests.db import count_queries

pytestmark = pytest.mark.usefixtures("cheap_password_hashing")


@pytest.fixture
def alice(database: Database) -> Subject:
    with database.session() as session:
        return user_subject(create_user(session, "alice", "password-1", actor="system"))


def _issue(db: Database, subject: Subject, expires_at: datetime | None = None) -> str:
    with db.session() as session:
        return issue_token(session, subject, actor="system", expires_at=expires_at).token


def test_a_token_is_shown_once_and_stored_as_a_hash(database: Database, alice: Subject) -> None:
    with database.session() as session:
        issued = issue_token(session, alice, actor="system", description="laptop")
    token = issued.token
    assert token.startswith(TOKEN_PREFIX) and len(token) == len(TOKEN_PREFIX) + 43
    assert token not in repr(issued) and issued.record.prefix in repr(issued)
    with database.session() as session:
        stored = session.scalars(select(Token)).one()
        assert stored.token_hash == hash_token(token) and token not in (stored.token_hash, stored.prefix)
        assert token.startswith(stored.prefix) and stored.description == "laptop"

    subject = authenticate(database, token)
    assert subject == alice
    assert subject is not None and subject.description == "User alice" and subject.token_id == stored.id


def test_several_tokens_per_subject_and_revocation(database: Database, alice: Subject) -> None:
    first, second = _issue(database, alice), _issue(database, alice)
    assert first != second
    with database.session() as session:
        tokens = list_tokens(session, SubjectType.USER, alice.id)
        assert len(tokens) == 2
        assert revoke_token(session, tokens[0].id, actor="User alice") is True
    with database.session() as session:
        assert revoke_token(session, tokens[0].id, actor="User alice") is False  # already revoked
        assert revoke_token(session, 12345, actor="User alice") is False
        assert [t.id for t in list_tokens(session, SubjectType.USER, alice.id)] == [tokens[1].id]
        assert len(list_tokens(session, SubjectType.USER, alice.id, include_revoked=True)) == 2
    assert authenticate(database, first) is None
    assert authenticate(database, second) == alice


def test_expiry(database: Database, alice: Subject) -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    token = _issue(database, alice, expires_at=now + timedelta(hours=1))
    assert authenticate(database, token, now=now) == alice
    assert authenticate(database, token, now=now + timedelta(hours=1)) is None


@pytest.mark.parametrize("token", [None, "", "tst_unknown", "no-prefix-at-all", "tst_" + "x" * 300])
def test_unknown_or_malformed_tokens(database: Database, alice: Subject, token: str | None) -> None:
    assert authenticate(database, token) is None


def test_a_deactivated_user_cannot_authenticate(database: Database, alice: Subject) -> None:
    token = _issue(database, alice)
    with database.session() as session:
        set_user_active(session, "alice", False, actor="User admin")
    assert authenticate(database, token) is None
    with database.session() as session:
        set_user_active(session, "alice", True, actor="User admin")
    assert authenticate(database, token) == alice


def test_last_use_is_written_at_most_once_a_minute(database: Database, alice: Subject) -> None:
    token = _issue(database, alice)
    t0 = datetime(2030, 1, 1, tzinfo=UTC)

    def updates_when_authenticating_at(moment: datetime) -> int:
        with count_queries(database.engine) as statements:
            assert authenticate(database, token, now=moment) == alice
        return sum(statement.lstrip().upper().startswith("UPDATE") for statement in statements)

    def last_used() -> datetime | None:
        with database.session() as session:
            return session.scalars(select(Token.last_used_at)).one()

    assert updates_when_authenticating_at(t0) == 1
    assert last_used() == t0
    assert updates_when_authenticating_at(t0 + timedelta(seconds=30)) == 0
    assert updates_when_authenticating_at(t0 + LAST_USED_RESOLUTION - timedelta(seconds=1)) == 0
    assert last_used() == t0
    assert updates_when_authenticating_at(t0 + LAST_USED_RESOLUTION) == 1
    assert last_used() == t0 + LAST_USED_RESOLUTION


def test_creation_and_revocation_are_audited(database: Database, alice: Subject) -> None:
    token = _issue(database, alice)
    with database.session() as session:
        record = session.scalars(select(Token)).one()
        revoke_token(session, record.id, actor="User admin")
    with database.session() as session:
        events = [(e.actor, e.action, e.target) for e in list_events(session, action="token.create")]
        assert events == [("system", "token.create", "User alice")]
        revoked = list_events(session, action="token.revoke")
        assert [(e.actor, e.target, e.details["prefix"]) for e in revoked] == [
            ("User admin", "User alice", record.prefix)
        ]
        assert all(token not in str(e.details) for e in list_events(session))
