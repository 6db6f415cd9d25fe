"""Users: accounts with a password (argon2) that log in for tokens."""

from __future__ import annotations

import re
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from lifecycle.auth.decision_cache import invalidate_after_commit
from lifecycle.auth.passwords import check_password, hash_password, spend_verification_time
from lifecycle.auth.permissions import delete_subject_permissions, grant_defaults
from lifecycle.auth.subjects import user_subject
from lifecycle.auth.tokens import IssuedToken, issue_token, revoke_subject_tokens
from lifecycle.store.audit import record_event
from lifecycle.store.column_types import utcnow
from lifecycle.store.errors import NotFound, flush_new
from lifecycle.store.models import SubjectType, User

USERNAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}")
MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024


def validate_username(username: str) -> None:
    if not USERNAME_PATTERN.fullmatch(username):
        raise ValueError("a username is 1-64 letters, digits and . _ @ + - (starting with a letter or digit)")


def validate_password(password: str) -> None:
    if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        raise ValueError(f"a password has {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters")


def create_user(
    session: Session, username: str, password: str, *, actor: str, is_admin: bool = False
) -> User:
    """A new active user with Racetrack's default permissions; AlreadyExists for a taken name."""
    validate_username(username)
    validate_password(password)
    user = User(username=username, password_hash=hash_password(password), is_admin=is_admin, is_active=True)
    session.add(user)
    flush_new(session, f"user {username}")
    record_event(session, actor, "user.create", f"User {username}", {"is_admin": is_admin})
    grant_defaults(session, user_subject(user), actor=actor)
    return user


def get_user(session: Session, username: str) -> User | None:
    return session.scalar(select(User).where(User.username == username))


def require_user(session: Session, username: str) -> User:
    user = get_user(session, username)
    if user is None:
        raise NotFound(f"user {username} not found")
    return user


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.username)))


def change_password(session: Session, username: str, new_password: str, *, actor: str) -> None:
    validate_password(new_password)
    user = require_user(session, username)
    user.password_hash = hash_password(new_password)
    record_event(session, actor, "user.change_password", f"User {username}")


def set_user_active(session: Session, username: str, active: bool, *, actor: str) -> None:
    user = require_user(session, username)
    if user.is_active == active:
        return
    user.is_active = active
    record_event(session, actor, "user.activate" if active else "user.deactivate", f"User {username}")
    invalidate_after_commit(session)


def set_user_admin(session: Session, username: str, is_admin: bool, *, actor: str) -> None:
    user = require_user(session, username)
    if user.is_admin == is_admin:
        return
    user.is_admin = is_admin
    record_event(session, actor, "user.set_admin", f"User {username}", {"is_admin": is_admin})
    invalidate_after_commit(session)


def delete_user(session: Session, username: str, *, actor: str) -> bool:
    """Remove the user with its tokens and permissions; False when there is no such user."""
    user = get_user(session, username)
    if user is None:
        return False
    revoke_subject_tokens(session, SubjectType.USER, user.id, actor=actor)
    delete_subject_permissions(session, SubjectType.USER, user.id, actor=actor)
    record_event(session, actor, "user.delete", f"User {username}")
    session.delete(user)
    session.flush()
    invalidate_after_commit(session)
    return True


def verify_credentials(session: Session, username: str, password: str) -> User | None:
    """The active user with this password, else None; upgrades an outdated password hash."""
    user = get_user(session, username)
    if user is None:
        spend_verification_time(password)
        return None
    matches, new_hash = check_password(user.password_hash, password)
    if not matches or not user.is_active:
        return None
    if new_hash is not None:
        user.password_hash = new_hash
    return user


def login(
    session: Session, username: str, password: str, *, now: datetime | None = None
) -> IssuedToken | None:
    """A new token for correct credentials, else None (the same for unknown users and wrong passwords)."""
    user = verify_credentials(session, username, password)
    if user is None:
        return None
    user.last_login_at = now or utcnow()
    subject = user_subject(user)
    return issue_token(session, subject, actor=subject.description, description="login")
