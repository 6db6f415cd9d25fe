"""ESCs (external service consumers): machine callers of jobs, authenticated by tokens only."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from lifecycle.auth.permissions import delete_subject_permissions
from lifecycle.auth.tokens import revoke_subject_tokens
from lifecycle.auth.users import USERNAME_PATTERN
from lifecycle.store.audit import record_event
from lifecycle.store.errors import flush_new
from lifecycle.store.models import Esc, SubjectType


def create_esc(session: Session, name: str, *, actor: str) -> Esc:
    """A new ESC without permissions (grant call_job on what it may call); AlreadyExists for a taken name."""
    if not USERNAME_PATTERN.fullmatch(name):
        raise ValueError(
            "an ESC name is 1-64 letters, digits and . _ @ + - (starting with a letter or digit)"
        )
    esc = Esc(name=name)
    session.add(esc)
    flush_new(session, f"ESC {name}")
    record_event(session, actor, "esc.create", f"ESC {name}")
    return esc


def get_esc(session: Session, name: str) -> Esc | None:
    return session.scalar(select(Esc).where(Esc.name == name))


def list_escs(session: Session) -> list[Esc]:
    return list(session.scalars(select(Esc).order_by(Esc.name)))


def delete_esc(session: Session, name: str, *, actor: str) -> bool:
    esc = get_esc(session, name)
    if esc is None:
        return False
    revoke_subject_tokens(session, SubjectType.ESC, esc.id, actor=actor)
    delete_subject_permissions(session, SubjectType.ESC, esc.id, actor=actor)
    record_event(session, actor, "esc.delete", f"ESC {name}")
    session.delete(esc)
    session.flush()
    return True
