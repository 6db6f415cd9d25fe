"""ESCs: machine subjects with tokens and explicitly granted permissions."""

from __future__ import annotations

import pytest

from lifecycle.auth import authenticate, check, grant, issue_token
from lifecycle.auth.escs import create_esc, delete_esc, get_esc, list_escs
from lifecycle.auth.subjects import esc_subject
from lifecycle.store import AlreadyExists, Database
from lifecycle.store.audit import list_events
from lifecycle.store.models import Scope


def test_an_esc_calls_what_it_was_granted(database: Database) -> None:
    with database.session() as session:
        esc = esc_subject(create_esc(session, "billing", actor="User admin"))
        token = issue_token(session, esc, actor="User admin").token
    subject = authenticate(database, token)
    assert subject == esc and subject is not None and subject.description == "ESC billing"
    assert not check(database, esc, Scope.CALL_JOB, "adder", "1.0.0", "/api/v1/perform")
    with database.session() as session:
        grant(session, esc, Scope.CALL_JOB, actor="User admin", family="adder")
    assert check(database, esc, Scope.CALL_JOB, "adder", "1.0.0", "/api/v1/perform")
    assert not check(database, esc, Scope.CALL_JOB, "other", "1.0.0", "/api/v1/perform")

    with database.session() as session:
        assert [e.name for e in list_escs(session)] == ["billing"]
        assert delete_esc(session, "billing", actor="User admin") is True
        assert delete_esc(session, "billing", actor="User admin") is False
    assert authenticate(database, token) is None
    with database.session() as session:
        assert get_esc(session, "billing") is None
        assert [e.action for e in list_events(session, actor="User admin")][:3] == [
            "esc.delete",
            "permission.revoke",
            "token.revoke",
        ]


def test_esc_names_are_unique(database: Database) -> None:
    with database.session() as session:
        create_esc(session, "billing", actor="system")
    with pytest.raises(AlreadyExists), database.session() as session:
        create_esc(session, "billing", actor="system")
    with pytest.raises(ValueError), database.session() as session:
        create_esc(session, "no spaces", actor="system")
