"""Permissions: a subject may do a scope on an optional job family / version / endpoint (None = any).

`full_access` implies every scope and admin users have it implicitly. An endpoint permission is a
path prefix with Racetrack's semantics: `/foo` covers `/foo` and `/foo/...`, not `/foobar`.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from lifecycle.auth.decision_cache import invalidate_after_commit
from lifecycle.auth.subjects import Subject, subject_label
from lifecycle.store.audit import record_event
from lifecycle.store.database import Database
from lifecycle.store.errors import flush_new
from lifecycle.store.models import Permission, Scope, SubjectType

# what Racetrack gives every new user: read, call and deploy everything (deleting comes with
# deploying a family, see grant_family_owner)
DEFAULT_USER_SCOPES = (Scope.READ_JOB, Scope.CALL_JOB, Scope.DEPLOY_JOB, Scope.DEPLOY_NEW_FAMILY)


def normalize_endpoint(endpoint: str) -> str:
    """`api/v1/perform/` → `/api/v1/perform`; the root is `/`."""
    return "/" + endpoint.strip().strip("/")


def endpoint_covers(pattern: str | None, endpoint: str | None) -> bool:
    if pattern is None:
        return True
    if endpoint is None:
        return False
    path = "/" + endpoint.lstrip("/")
    if any(segment in (".", "..") for segment in path.split("/")):
        # `/allowed/../other` must not pass as `/allowed`: only an any-endpoint permission covers it
        return False
    prefix = normalize_endpoint(pattern)
    return prefix == "/" or path == prefix or path.startswith(prefix + "/")


def covers(permission: Permission, family: str | None, version: str | None, endpoint: str | None) -> bool:
    """Whether the permission's resource filters admit this resource (its scope is not looked at)."""
    return (
        (permission.job_family is None or permission.job_family == family)
        and (permission.job_version is None or permission.job_version == version)
        and endpoint_covers(permission.endpoint, endpoint)
    )


def describe_resource(
    family: str | None = None, version: str | None = None, endpoint: str | None = None
) -> str:
    if family is None:
        resource = "any job"
    elif version is None:
        resource = f"job family {family}"
    else:
        resource = f"job {family} {version}"
    return resource if endpoint is None else f"endpoint {endpoint} of {resource}"


def denial_reason(
    subject: Subject,
    scope: Scope | str,
    family: str | None = None,
    version: str | None = None,
    endpoint: str | None = None,
) -> str:
    return f"{subject.description} has no {Scope(scope).value} permission for {describe_resource(family, version, endpoint)}"


def check_in(
    session: Session,
    subject: Subject,
    scope: Scope | str,
    family: str | None = None,
    version: str | None = None,
    endpoint: str | None = None,
) -> bool:
    """May `subject` do `scope` on the resource? A resource left None must be covered entirely."""
    scope = Scope(scope)
    if subject.is_admin:
        return True
    permissions = session.scalars(
        select(Permission).where(
            Permission.subject_type == subject.type,
            Permission.subject_id == subject.id,
            Permission.scope.in_([scope, Scope.FULL_ACCESS]),
        )
    )
    return any(covers(permission, family, version, endpoint) for permission in permissions)


def check(
    db: Database,
    subject: Subject,
    scope: Scope | str,
    family: str | None = None,
    version: str | None = None,
    endpoint: str | None = None,
) -> bool:
    if subject.is_admin:
        return True
    with db.session() as session:
        return check_in(session, subject, scope, family, version, endpoint)


def find_permission(
    session: Session,
    subject_type: SubjectType,
    subject_id: int,
    scope: Scope | str,
    family: str | None = None,
    version: str | None = None,
    endpoint: str | None = None,
) -> Permission | None:
    return session.scalar(
        select(Permission).where(
            Permission.subject_type == subject_type,
            Permission.subject_id == subject_id,
            Permission.scope == Scope(scope),
            Permission.job_family.is_not_distinct_from(family),
            Permission.job_version.is_not_distinct_from(version),
            Permission.endpoint.is_not_distinct_from(
                None if endpoint is None else normalize_endpoint(endpoint)
            ),
        )
    )


def grant(
    session: Session,
    subject: Subject,
    scope: Scope | str,
    *,
    actor: str,
    family: str | None = None,
    version: str | None = None,
    endpoint: str | None = None,
) -> Permission:
    """Grant a permission (returns the existing one when it is granted already)."""
    scope = Scope(scope)
    if version is not None and family is None:
        raise ValueError("a permission for a job version must name the job family too")
    endpoint = None if endpoint is None else normalize_endpoint(endpoint)
    existing = find_permission(session, subject.type, subject.id, scope, family, version, endpoint)
    if existing is not None:
        return existing
    permission = Permission(
        subject_type=subject.type,
        subject_id=subject.id,
        scope=scope,
        job_family=family,
        job_version=version,
        endpoint=endpoint,
    )
    session.add(permission)
    flush_new(session, f"{scope.value} permission of {subject.description}")
    record_event(
        session,
        actor,
        "permission.grant",
        subject.description,
        {
            "permission_id": permission.id,
            "scope": scope.value,
            "job_family": family,
            "job_version": version,
            "endpoint": endpoint,
        },
    )
    invalidate_after_commit(session)
    return permission


def revoke_permission(session: Session, permission_id: int, *, actor: str) -> bool:
    permission = session.get(Permission, permission_id)
    if permission is None:
        return False
    record_event(
        session,
        actor,
        "permission.revoke",
        subject_label(session, permission.subject_type, permission.subject_id),
        {
            "permission_id": permission.id,
            "scope": permission.scope.value,
            "job_family": permission.job_family,
            "job_version": permission.job_version,
            "endpoint": permission.endpoint,
        },
    )
    session.delete(permission)
    session.flush()
    invalidate_after_commit(session)
    return True


def list_permissions(
    session: Session, subject_type: SubjectType | None = None, subject_id: int | None = None
) -> list[Permission]:
    query = select(Permission).order_by(Permission.id)
    if subject_type is not None:
        query = query.where(Permission.subject_type == subject_type)
    if subject_id is not None:
        query = query.where(Permission.subject_id == subject_id)
    return list(session.scalars(query))


def grant_defaults(session: Session, subject: Subject, *, actor: str) -> None:
    for scope in DEFAULT_USER_SCOPES:
        grant(session, subject, scope, actor=actor)


def grant_family_owner(session: Session, subject: Subject, family: str, *, actor: str) -> Permission:
    """What the deploy pipeline calls when `subject` deploys a new job family: delete_job on it."""
    return grant(session, subject, Scope.DELETE_JOB, actor=actor, family=family)


def delete_subject_permissions(
    session: Session, subject_type: SubjectType, subject_id: int, *, actor: str
) -> None:
    for permission in list_permissions(session, subject_type, subject_id):
        revoke_permission(session, permission.id, actor=actor)
