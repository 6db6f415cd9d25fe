"""Permissions (grant, list, revoke) and the access check every admin route shares.

The admin API is for subjects that may `call_admin_api`: admin users, and subjects granted that
scope (or `full_access`) without a job filter.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from lifecycle.auth import permissions as permission_store
from lifecycle.auth.escs import get_esc
from lifecycle.auth.subjects import Subject, esc_subject, family_subject, user_subject
from lifecycle.auth.users import get_user
from lifecycle.store import jobs as job_store
from lifecycle.store.models import (
    ENDPOINT_LENGTH,
    NAME_LENGTH,
    SUBJECT_NAME_LENGTH,
    VERSION_LENGTH,
    Esc,
    JobFamily,
    Permission,
    Scope,
    SubjectType,
    User,
)

from .dependencies import CurrentSubject, control_plane, require_admin
from .errors import NotFound, field_error

router = APIRouter(tags=["permissions"])

# ---- subjects by name ------------------------------------------------------------------------

_KINDS = {SubjectType.USER: "user", SubjectType.ESC: "ESC", SubjectType.FAMILY: "job family"}


def find_subject(session: Session, subject_type: SubjectType, name: str) -> Subject:
    """The named subject (a deactivated user included); NotFound naming what is missing."""
    if subject_type is SubjectType.USER:
        user = get_user(session, name)
        subject = user_subject(user) if user else None
    elif subject_type is SubjectType.ESC:
        esc = get_esc(session, name)
        subject = esc_subject(esc) if esc else None
    else:
        family = job_store.get_family(session, name)
        subject = family_subject(family) if family else None
    if subject is None:
        raise NotFound(f"{_KINDS[subject_type]} {name} not found", field="subject_name")
    return subject


def subject_names(session: Session, rows: list[Permission]) -> dict[tuple[SubjectType, int], str]:
    """The names of the permissions' subjects: one query per subject type present."""
    names: dict[tuple[SubjectType, int], str] = {}
    columns = {
        SubjectType.USER: (User.id, User.username),
        SubjectType.ESC: (Esc.id, Esc.name),
        SubjectType.FAMILY: (JobFamily.id, JobFamily.name),
    }
    for subject_type, (id_column, name_column) in columns.items():
        ids = {p.subject_id for p in rows if p.subject_type is subject_type}
        if ids:
            for subject_id, name in session.execute(select(id_column, name_column).where(id_column.in_(ids))):
                names[(subject_type, subject_id)] = name
    return names


# ---- the routes ------------------------------------------------------------------------------


class PermissionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    subject_type: SubjectType
    subject_name: str = Field(min_length=1, max_length=SUBJECT_NAME_LENGTH)
    scope: Scope
    job_family: str | None = Field(default=None, min_length=1, max_length=NAME_LENGTH)
    job_version: str | None = Field(default=None, min_length=1, max_length=VERSION_LENGTH)
    endpoint: str | None = Field(default=None, min_length=1, max_length=ENDPOINT_LENGTH)


class PermissionOut(BaseModel):
    id: int
    subject_type: SubjectType
    subject_name: str
    scope: Scope
    job_family: str | None
    job_version: str | None
    endpoint: str | None
    created_at: datetime


def permission_out(permission: Permission, subject_name: str) -> PermissionOut:
    return PermissionOut(
        id=permission.id,
        subject_type=permission.subject_type,
        subject_name=subject_name,
        scope=permission.scope,
        job_family=permission.job_family,
        job_version=permission.job_version,
        endpoint=permission.endpoint,
        created_at=permission.created_at,
    )


def _check_resource(body: PermissionBody) -> None:
    if body.job_version is not None and body.job_family is None:
        raise field_error("job_version", "a permission for a job version must name the job_family too")
    if body.endpoint is not None and any(s in (".", "..") for s in body.endpoint.split("/")):
        raise field_error("endpoint", "an endpoint is a path prefix without '.' or '..' segments")


@router.post("/permissions", status_code=201)
def grant_permission(
    body: PermissionBody, request: Request, response: Response, subject: CurrentSubject
) -> PermissionOut:
    """Grant a permission; 201 when new, 200 with the existing one when it was granted already."""
    require_admin(request, subject, "permissions")
    _check_resource(body)
    with control_plane(request).db.session() as session:
        grantee = find_subject(session, body.subject_type, body.subject_name)
        endpoint = None if body.endpoint is None else permission_store.normalize_endpoint(body.endpoint)
        existing = permission_store.find_permission(
            session, grantee.type, grantee.id, body.scope, body.job_family, body.job_version, endpoint
        )
        if existing is not None:
            response.status_code = 200
            return permission_out(existing, grantee.name)
        permission = permission_store.grant(
            session,
            grantee,
            body.scope,
            actor=subject.description,
            family=body.job_family,
            version=body.job_version,
            endpoint=endpoint,
        )
        return permission_out(permission, grantee.name)


@router.get("/permissions")
def list_permissions(
    request: Request,
    subject: CurrentSubject,
    subject_type: Annotated[SubjectType | None, Query()] = None,
    subject_name: Annotated[str | None, Query(min_length=1, max_length=SUBJECT_NAME_LENGTH)] = None,
) -> list[PermissionOut]:
    require_admin(request, subject, "permissions")
    if subject_name is not None and subject_type is None:
        raise field_error("subject_type", "required with subject_name (user, esc or family)")
    with control_plane(request).db.session() as session:
        subject_id = None
        if subject_type is not None and subject_name is not None:
            subject_id = find_subject(session, subject_type, subject_name).id
        rows = permission_store.list_permissions(session, subject_type, subject_id)
        names = subject_names(session, rows)
        return [
            permission_out(p, names.get((p.subject_type, p.subject_id), f"#{p.subject_id}")) for p in rows
        ]


@router.delete("/permissions/{permission_id}")
def revoke_permission(permission_id: int, request: Request, subject: CurrentSubject) -> dict[str, object]:
    require_admin(request, subject, "permissions")
    with control_plane(request).db.session() as session:
        if not permission_store.revoke_permission(session, permission_id, actor=subject.description):
            raise NotFound(f"permission {permission_id} not found")
    return {"id": permission_id, "revoked": True}
