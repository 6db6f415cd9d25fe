"""Who is calling: the token from `X-Racetrack-Auth` (or the cookie of that name)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from lifecycle.auth import permissions
from lifecycle.auth.subjects import Subject
from lifecycle.auth.tokens import authenticate
from lifecycle.control_plane import ControlPlane
from lifecycle.store.models import Scope

from .errors import Forbidden, Unauthenticated

AUTH_HEADER = "X-Racetrack-Auth"


def control_plane(request: Request) -> ControlPlane:
    plane: ControlPlane = request.app.state.control_plane
    return plane


def token_of(request: Request) -> str | None:
    return request.headers.get(AUTH_HEADER) or request.cookies.get(AUTH_HEADER) or None


def current_subject(request: Request) -> Subject:
    token = token_of(request)
    if not token:
        raise Unauthenticated(f"no token: send it in the {AUTH_HEADER} header")
    subject = authenticate(control_plane(request).db, token)
    if subject is None:
        raise Unauthenticated("the token is invalid, expired or revoked")
    return subject


def require(
    request: Request, subject: Subject, scope: Scope, family: str | None = None, version: str | None = None
) -> None:
    with control_plane(request).db.session() as session:
        if not permissions.check_in(session, subject, scope, family=family, version=version):
            raise Forbidden(permissions.denial_reason(subject, scope, family=family, version=version))


CurrentSubject = Annotated[Subject, Depends(current_subject)]


# ---- access to the admin API: admin users, and subjects granted call_admin_api (or
# full_access) without a job filter

ADMIN_SCOPE = Scope.CALL_ADMIN_API


def is_admin(request: Request, subject: Subject) -> bool:
    if subject.is_admin:
        return True
    with control_plane(request).db.session() as session:
        return permissions.check_in(session, subject, ADMIN_SCOPE)


def admin_denied(subject: Subject, resource: str) -> Forbidden:
    return Forbidden(
        f"{subject.description} has no {ADMIN_SCOPE.value} permission for {resource}",
        subject=subject.description,
        scope=ADMIN_SCOPE.value,
        resource=resource,
    )


def require_admin(request: Request, subject: Subject, resource: str) -> None:
    """403 naming the subject, the scope and `resource` unless the subject may call the admin API."""
    if not is_admin(request, subject):
        raise admin_denied(subject, resource)
