"""Users and API tokens: accounts (admin), passwords and tokens (the user or an admin).

`POST /users/login` and `GET /users/validate_user_auth` (Racetrack's) live in info.py;
`GET /users/me` says who the token speaks for and what it may administer, `POST /users/logout`
revokes the token making the request (a dashboard's sign-out).
A new token is shown once, in the answer that creates it; listings show its prefix only.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from lifecycle.auth import tokens as token_store
from lifecycle.auth import users as user_store
from lifecycle.auth.subjects import Subject, subject_label, user_subject
from lifecycle.store.column_types import utcnow
from lifecycle.store.errors import AlreadyExists
from lifecycle.store.errors import NotFound as StoreNotFound
from lifecycle.store.models import SubjectType, Token, User

from .dependencies import CurrentSubject, admin_denied, control_plane, is_admin, require_admin
from .errors import Conflict, Forbidden, NotFound, field_error

router = APIRouter(tags=["users"])

MAX_TOKEN_DAYS = 3650


# ---- answers ---------------------------------------------------------------------------------


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    username: str
    is_admin: bool
    is_active: bool
    created_at: datetime
    last_login_at: datetime | None


class TokenOut(BaseModel):
    """A token as listings show it: never the secret, only its first characters."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    prefix: str
    description: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


class IssuedTokenOut(TokenOut):
    token: str = Field(description="The secret: shown this once, stored only as a hash.")
    subject: str


# ---- tokens, shared with the ESC routes -------------------------------------------------------


class TokenBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str = Field(default="", max_length=255)
    expires_at: AwareDatetime | None = None
    expires_in_days: int | None = Field(default=None, ge=1, le=MAX_TOKEN_DAYS)

    @model_validator(mode="after")
    def _one_expiry(self) -> TokenBody:
        if self.expires_at is not None and self.expires_in_days is not None:
            raise ValueError("give expires_at or expires_in_days, not both")
        return self


def token_expiry(body: TokenBody, caller: Subject) -> datetime | None:
    """When the new token expires: never later than the token that asks for it."""
    now = utcnow()
    expires_at = body.expires_at
    if body.expires_in_days is not None:
        expires_at = now + timedelta(days=body.expires_in_days)
    if expires_at is not None and expires_at <= now:
        raise field_error("expires_at", "must be in the future")
    limit = caller.token_expires_at
    if limit is not None:
        if expires_at is None:
            return limit
        if expires_at > limit:
            raise field_error(
                "expires_at",
                f"must not be later than the expiry of the token making the request ({limit.isoformat()})",
            )
    return expires_at


def issue(request: Request, caller: Subject, owner: Subject, body: TokenBody) -> IssuedTokenOut:
    expires_at = token_expiry(body, caller)
    with control_plane(request).db.session() as session:
        issued = token_store.issue_token(
            session, owner, actor=caller.description, description=body.description, expires_at=expires_at
        )
        record = TokenOut.model_validate(issued.record)
        return IssuedTokenOut(**record.model_dump(), token=issued.token, subject=owner.description)


# ---- who may ---------------------------------------------------------------------------------


def is_self(subject: Subject, username: str) -> bool:
    return subject.type is SubjectType.USER and subject.name == username


def require_self_or_admin(request: Request, subject: Subject, username: str) -> None:
    if not is_self(subject, username):
        require_admin(request, subject, f"user {username}")


def _user(request: Request, username: str) -> User:
    with control_plane(request).db.session() as session:
        user = user_store.get_user(session, username)
        if user is None:
            raise NotFound(f"user {username} not found")
        return user


# ---- the caller ------------------------------------------------------------------------------


class MeOut(BaseModel):
    username: str
    subject: str
    subject_type: SubjectType
    is_admin: bool
    can_administer: bool = Field(description="may call the admin API (an admin, or call_admin_api granted)")
    token_id: int | None
    token_expires_at: datetime | None


@router.get("/users/me")
def me(request: Request, subject: CurrentSubject) -> MeOut:
    return MeOut(
        username=subject.name,
        subject=subject.description,
        subject_type=subject.type,
        is_admin=subject.is_admin,
        can_administer=is_admin(request, subject),
        token_id=subject.token_id,
        token_expires_at=subject.token_expires_at,
    )


@router.post("/users/logout")
def logout(request: Request, subject: CurrentSubject) -> dict[str, Any]:
    """Revoke the token this request carries; the next request with it is a 401."""
    if subject.token_id is None:
        raise Conflict("this request's credential is not a revocable token")
    with control_plane(request).db.session() as session:
        token_store.revoke_token(session, subject.token_id, actor=subject.description)
    return {"token_id": subject.token_id, "revoked": True}


# ---- users -----------------------------------------------------------------------------------


class NewUserBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str
    password: str = Field(repr=False)
    is_admin: bool = False


def _valid(field: str, check: Callable[[str], None], value: str) -> None:
    try:
        check(value)
    except ValueError as e:
        raise field_error(field, str(e)) from None


@router.post("/users", status_code=201)
def create_user(body: NewUserBody, request: Request, subject: CurrentSubject) -> UserOut:
    require_admin(request, subject, "users")
    _valid("username", user_store.validate_username, body.username)
    _valid("password", user_store.validate_password, body.password)
    try:
        with control_plane(request).db.session() as session:
            user = user_store.create_user(
                session, body.username, body.password, actor=subject.description, is_admin=body.is_admin
            )
            return UserOut.model_validate(user)
    except AlreadyExists:
        raise Conflict(f"user {body.username} already exists") from None


@router.get("/users")
def list_users(request: Request, subject: CurrentSubject) -> list[UserOut]:
    require_admin(request, subject, "users")
    with control_plane(request).db.session() as session:
        return [UserOut.model_validate(user) for user in user_store.list_users(session)]


class UserChangeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    is_active: bool | None = None
    is_admin: bool | None = None


@router.patch("/users/{username}")
def change_user(username: str, body: UserChangeBody, request: Request, subject: CurrentSubject) -> UserOut:
    require_admin(request, subject, f"user {username}")
    if body.is_active is None and body.is_admin is None:
        raise field_error("body", "give is_active and/or is_admin")
    if is_self(subject, username) and False in (body.is_active, body.is_admin):
        raise Conflict("you cannot deactivate yourself or take away your own admin role")
    with control_plane(request).db.session() as session:
        try:
            if body.is_active is not None:
                user_store.set_user_active(session, username, body.is_active, actor=subject.description)
            if body.is_admin is not None:
                user_store.set_user_admin(session, username, body.is_admin, actor=subject.description)
        except StoreNotFound as e:
            raise NotFound(str(e)) from None
        return UserOut.model_validate(user_store.require_user(session, username))


@router.delete("/users/{username}")
def delete_user(username: str, request: Request, subject: CurrentSubject) -> dict[str, Any]:
    require_admin(request, subject, f"user {username}")
    if is_self(subject, username):
        raise Conflict("you cannot delete yourself")
    with control_plane(request).db.session() as session:
        if not user_store.delete_user(session, username, actor=subject.description):
            raise NotFound(f"user {username} not found")
    return {"username": username, "deleted": True}


class PasswordBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    new_password: str = Field(repr=False)
    old_password: str | None = Field(default=None, repr=False)


@router.put("/users/{username}/password")
def change_password(
    username: str, body: PasswordBody, request: Request, subject: CurrentSubject
) -> dict[str, Any]:
    """The user with the old password, or an admin without it."""
    admin = is_admin(request, subject)
    if not admin:
        if not is_self(subject, username):
            raise admin_denied(subject, f"user {username}")
        if body.old_password is None:
            raise field_error("old_password", "required to change your own password")
    _valid("new_password", user_store.validate_password, body.new_password)
    with control_plane(request).db.session() as session:
        if not admin and user_store.verify_credentials(session, username, body.old_password or "") is None:
            raise Forbidden("old_password is not the current password", field="old_password")
        try:
            user_store.change_password(session, username, body.new_password, actor=subject.description)
        except StoreNotFound as e:
            raise NotFound(str(e)) from None
    return {"username": username, "password_changed": True}


# ---- a user's tokens, and revoking any token --------------------------------------------------


@router.post("/users/{username}/tokens", status_code=201)
def issue_user_token(
    username: str, body: TokenBody, request: Request, subject: CurrentSubject
) -> IssuedTokenOut:
    require_self_or_admin(request, subject, username)
    user = _user(request, username)
    if not user.is_active:
        raise Conflict(f"user {username} is deactivated: its tokens would not work")
    return issue(request, subject, user_subject(user), body)


@router.get("/users/{username}/tokens")
def list_user_tokens(
    username: str,
    request: Request,
    subject: CurrentSubject,
    include_revoked: Annotated[bool, Query()] = False,
) -> list[TokenOut]:
    require_self_or_admin(request, subject, username)
    user = _user(request, username)
    with control_plane(request).db.session() as session:
        records = token_store.list_tokens(session, SubjectType.USER, user.id, include_revoked)
        return [TokenOut.model_validate(record) for record in records]


@router.delete("/tokens/{token_id}", tags=["tokens"])
def revoke_token(token_id: int, request: Request, subject: CurrentSubject) -> TokenOut:
    """Revoke a token: its owner (a user) or an admin. Effective for the next request."""
    admin = is_admin(request, subject)
    with control_plane(request).db.session() as session:
        record = session.get(Token, token_id)
        if record is None:
            raise NotFound(f"token {token_id} not found")
        own = record.subject_type is SubjectType.USER and (record.subject_type, record.subject_id) == (
            subject.type,
            subject.id,
        )
        if not own and not admin:
            owner = subject_label(session, record.subject_type, record.subject_id)
            raise admin_denied(subject, f"token {token_id} of {owner}")
        token_store.revoke_token(session, token_id, actor=subject.description)
        return TokenOut.model_validate(record)
