"""API tokens: random, shown once, stored as SHA-256 hashes, revocable, optionally expiring.

A token is `tst_` + 43 url-safe characters (256 random bits). With that much entropy a fast hash
is enough: nobody can guess a preimage, and lookup by hash stays one indexed query.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from lifecycle.auth.decision_cache import invalidate_after_commit
from lifecycle.auth.subjects import Subject, subject_label
from lifecycle.store.audit import record_event
from lifecycle.store.column_types import utcnow
from lifecycle.store.database import Database
from lifecycle.store.models import Esc, JobFamily, SubjectType, Token, User

TOKEN_PREFIX = "tst_"
DISPLAY_PREFIX_LENGTH = len(TOKEN_PREFIX) + 6
MAX_TOKEN_LENGTH = 256
# last_used_at is written at most this often per token, not on every request
LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True)
class IssuedToken:
    """A new token: `token` is the secret (show it once), `record` its stored row."""

    token: str = field(repr=False)
    record: Token = field(repr=False)

    def __repr__(self) -> str:
        return f"IssuedToken(id={self.record.id}, prefix={self.record.prefix!r})"


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(
    session: Session,
    subject: Subject,
    *,
    actor: str,
    description: str = "",
    expires_at: datetime | None = None,
    value: str | None = None,
) -> IssuedToken:
    """A new token for `subject`; `value`: one the operator chose (e.g. the gateway's credential
    from a Kubernetes Secret) instead of a generated one."""
    token = new_token() if value is None else value
    record = Token(
        token_hash=hash_token(token),
        prefix=token[:DISPLAY_PREFIX_LENGTH],
        subject_type=subject.type,
        subject_id=subject.id,
        description=description,
        expires_at=expires_at,
    )
    session.add(record)
    session.flush()
    record_event(
        session,
        actor,
        "token.create",
        subject.description,
        {
            "token_id": record.id,
            "prefix": record.prefix,
            "description": description,
            "expires_at": expires_at.isoformat() if expires_at else None,
        },
    )
    return IssuedToken(token, record)


def revoke_token(session: Session, token_id: int, *, actor: str, now: datetime | None = None) -> bool:
    """False when there is no such token or it was revoked already."""
    record = session.get(Token, token_id)
    if record is None or record.revoked_at is not None:
        return False
    record.revoked_at = now or utcnow()
    record_event(
        session,
        actor,
        "token.revoke",
        subject_label(session, record.subject_type, record.subject_id),
        {"token_id": record.id, "prefix": record.prefix},
    )
    invalidate_after_commit(session)
    return True


def revoke_subject_tokens(session: Session, subject_type: SubjectType, subject_id: int, *, actor: str) -> int:
    ids = session.scalars(
        select(Token.id).where(
            Token.subject_type == subject_type, Token.subject_id == subject_id, Token.revoked_at.is_(None)
        )
    ).all()
    return sum(revoke_token(session, token_id, actor=actor) for token_id in ids)


def list_tokens(
    session: Session, subject_type: SubjectType, subject_id: int, include_revoked: bool = False
) -> list[Token]:
    query = (
        select(Token)
        .where(Token.subject_type == subject_type, Token.subject_id == subject_id)
        .order_by(Token.id)
    )
    if not include_revoked:
        query = query.where(Token.revoked_at.is_(None))
    return list(session.scalars(query))


def authenticate_in(session: Session, token: str | None, now: datetime | None = None) -> Subject | None:
    """The subject of a valid token; None for a missing, malformed, unknown, expired or revoked one."""
    if not token or not token.startswith(TOKEN_PREFIX) or len(token) > MAX_TOKEN_LENGTH:
        return None
    now = now or utcnow()
    token_hash = hash_token(token)
    row = session.execute(
        select(Token, User.username, User.is_admin, User.is_active, Esc.name, JobFamily.name)
        .outerjoin(User, and_(Token.subject_type == SubjectType.USER, User.id == Token.subject_id))
        .outerjoin(Esc, and_(Token.subject_type == SubjectType.ESC, Esc.id == Token.subject_id))
        .outerjoin(
            JobFamily, and_(Token.subject_type == SubjectType.FAMILY, JobFamily.id == Token.subject_id)
        )
        .where(Token.token_hash == token_hash)
    ).one_or_none()
    if row is None:
        return None
    record, username, is_admin, is_active, esc_name, family_name = row
    # the index lookup already matched; compare again in constant time as a matter of principle
    if not hmac.compare_digest(record.token_hash, token_hash):
        return None
    if record.revoked_at is not None or (record.expires_at is not None and record.expires_at <= now):
        return None
    name = {SubjectType.USER: username, SubjectType.ESC: esc_name, SubjectType.FAMILY: family_name}[
        record.subject_type
    ]
    if name is None or (record.subject_type is SubjectType.USER and not is_active):
        return None
    _record_use(session, record, now)
    return Subject(
        record.subject_type,
        record.subject_id,
        name,
        is_admin=bool(is_admin),
        token_id=record.id,
        token_expires_at=record.expires_at,
    )


def authenticate(db: Database, token: str | None, now: datetime | None = None) -> Subject | None:
    with db.session() as session:
        return authenticate_in(session, token, now)


def _record_use(session: Session, record: Token, now: datetime) -> None:
    if record.last_used_at is not None and now - record.last_used_at < LAST_USED_RESOLUTION:
        return
    threshold = now - LAST_USED_RESOLUTION
    # conditional, so concurrent processes don't all write within the same minute
    session.execute(
        update(Token)
        .where(Token.id == record.id, or_(Token.last_used_at.is_(None), Token.last_used_at <= threshold))
        .values(last_used_at=now)
        .execution_options(synchronize_session=False)
    )
