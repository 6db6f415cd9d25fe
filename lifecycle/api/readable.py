"""Which job versions a subject may read (`read_job`, or `full_access`): listings filter by it, so
a caller with read_job on some families sees those and nothing else, instead of a 403."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from lifecycle.auth import permissions as permission_store
from lifecycle.auth.subjects import Subject
from lifecycle.store.models import Permission, Scope

READ_SCOPES = (Scope.READ_JOB, Scope.FULL_ACCESS)


@dataclass(frozen=True)
class Readable:
    """`grants` None: everything (an admin, or read_job without a job filter)."""

    grants: tuple[Permission, ...] | None

    @property
    def everything(self) -> bool:
        return self.grants is None

    @property
    def nothing(self) -> bool:
        return self.grants == ()

    def covers(self, family: str, version: str | None = None) -> bool:
        """`version` None: the family itself (a grant for one version does not cover it)."""
        if self.grants is None:
            return True
        return any(permission_store.covers(p, family, version, None) for p in self.grants)

    def covers_some_of(self, family: str) -> bool:
        """Whether any version of the family may be read (a family grant or a version grant)."""
        if self.grants is None:
            return True
        return any(p.job_family is None or p.job_family == family for p in self.grants)


def readable(session: Session, subject: Subject) -> Readable:
    if subject.is_admin:
        return Readable(None)
    grants = tuple(
        p
        for p in permission_store.list_permissions(session, subject.type, subject.id)
        if p.scope in READ_SCOPES and p.endpoint is None
    )
    if any(p.job_family is None and p.job_version is None for p in grants):
        return Readable(None)
    return Readable(grants)
