"""First start: ensure_admin creates `admin` and hands its token over once, in a 600 file."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from lifecycle.auth import authenticate, ensure_admin
from lifecycle.auth.users import require_user
from lifecycle.store import Database
from lifecycle.store.audit import list_events

pytestmark = pytest.mark.usefixtures("cheap_password_hashing")


def test_the_admin_token_is_given_once(database: Database, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    token = ensure_admin(database, data_dir)
    assert token is not None
    token_file = data_dir / "admin-token"
    assert token_file.read_text().strip() == token
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600

    subject = authenticate(database, token)
    assert subject is not None and subject.is_admin and subject.description == "User admin"
    with database.session() as session:
        assert require_user(session, "admin").is_admin
        assert [e.action for e in list_events(session, actor="system")][:2] == [
            "token.create",
            "permission.grant",
        ]

    assert ensure_admin(database, data_dir) is None
    assert token_file.read_text().strip() == token
    token_file.unlink()
    assert ensure_admin(database, data_dir) is None
    assert not token_file.exists()
