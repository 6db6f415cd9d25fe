"""Job families with their versions, as far as the caller may read them (`read_job`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from fastapi import APIRouter, Request
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from lifecycle.auth import permissions as permission_store
from lifecycle.auth.subjects import Subject
from lifecycle.store.models import Job, JobFamily, JobStatus, Permission, Scope
from trackside.manifest import latest

from .dependencies import CurrentSubject, control_plane
from .errors import Forbidden

router = APIRouter(tags=["jobs"])


class VersionOut(BaseModel):
    version: str
    status: JobStatus
    deployed_by: str | None
    updated_at: datetime


class FamilyOut(BaseModel):
    name: str
    created_at: datetime
    latest: str | None  # the highest stable running version: what `latest` calls reach
    versions: list[VersionOut]


@dataclass(frozen=True, slots=True)
class _Row:
    family: str
    created_at: datetime
    version: str | None
    status: JobStatus | None
    deployed_by: str | None
    updated_at: datetime | None


def family_rows(session: Session) -> list[_Row]:
    """Every family with each of its versions (a family without versions once): one query."""
    query = (
        select(
            JobFamily.name,
            JobFamily.created_at,
            Job.version,
            Job.status,
            Job.deployed_by,
            Job.updated_at,
        )
        .outerjoin(Job, Job.family_id == JobFamily.id)
        .order_by(JobFamily.name, Job.id)
    )
    return [_Row(*row) for row in session.execute(query)]


class _Visibility:
    """What the subject may read: `None` permissions means everything (admin, or read_job on all)."""

    def __init__(self, grants: list[Permission] | None) -> None:
        self.grants = grants

    def covers(self, family: str, version: str | None) -> bool:
        if self.grants is None:
            return True
        return any(permission_store.covers(p, family, version, None) for p in self.grants)


def _visibility(session: Session, subject: Subject) -> _Visibility:
    if subject.is_admin:
        return _Visibility(None)
    grants = [
        p
        for p in permission_store.list_permissions(session, subject.type, subject.id)
        if p.scope in (Scope.READ_JOB, Scope.FULL_ACCESS)
    ]
    if not grants:
        raise Forbidden(permission_store.denial_reason(subject, Scope.READ_JOB))
    if any(permission_store.covers(p, None, None, None) for p in grants):
        return _Visibility(None)
    return _Visibility(grants)


def group(rows: list[_Row], visibility: _Visibility) -> list[FamilyOut]:
    families: dict[str, FamilyOut] = {}
    for row in rows:
        family = families.get(row.family)
        if family is None:
            family = families[row.family] = FamilyOut(
                name=row.family, created_at=row.created_at, latest=None, versions=[]
            )
        if row.version is None or row.status is None or row.updated_at is None:
            continue  # a family without versions
        if visibility.covers(row.family, row.version):
            family.versions.append(
                VersionOut(
                    version=row.version,
                    status=row.status,
                    deployed_by=row.deployed_by,
                    updated_at=row.updated_at,
                )
            )
    shown = [f for f in families.values() if f.versions or visibility.covers(f.name, None)]
    for family in shown:
        family.latest = latest(v.version for v in family.versions if v.status is JobStatus.RUNNING)
    return shown


@router.get("/families")
def list_families(request: Request, subject: CurrentSubject) -> list[FamilyOut]:
    with control_plane(request).db.session() as session:
        visibility = _visibility(session, subject)
        return group(family_rows(session), visibility)
