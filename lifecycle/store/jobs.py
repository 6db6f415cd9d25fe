"""Jobs (one row per version) and job families."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from lifecycle.store.column_types import utcnow
from lifecycle.store.errors import NotFound, flush_new
from lifecycle.store.models import Job, JobFamily, JobStatus, SecretRecord


def get_family(session: Session, name: str) -> JobFamily | None:
    return session.scalar(select(JobFamily).where(JobFamily.name == name))


def ensure_family(session: Session, name: str) -> JobFamily:
    family = get_family(session, name)
    if family is None:
        family = JobFamily(name=name)
        session.add(family)
        flush_new(session, f"job family {name}")
    return family


def list_families(session: Session) -> list[JobFamily]:
    return list(session.scalars(select(JobFamily).order_by(JobFamily.name)))


def create_job(
    session: Session,
    *,
    name: str,
    version: str,
    manifest_yaml: str,
    manifest: dict[str, Any],
    owner_email: str,
    deployed_by: str | None = None,
    deployment_id: str | None = None,
    status: JobStatus = JobStatus.STARTING,
    replicas: int = 1,
    labels: dict[str, Any] | None = None,
    infrastructure_target: str | None = None,
    deployment_timestamp: int = 0,
) -> Job:
    """A new job version (its family is created when needed); AlreadyExists when the version exists."""
    family = ensure_family(session, name)
    job = Job(
        name=name,
        version=version,
        family_id=family.id,
        status=status,
        manifest_yaml=manifest_yaml,
        manifest=manifest,
        owner_email=owner_email,
        deployed_by=deployed_by,
        deployment_id=deployment_id,
        replicas=replicas,
        labels=labels or {},
        infrastructure_target=infrastructure_target,
        deployment_timestamp=deployment_timestamp,
    )
    session.add(job)
    flush_new(session, f"job {name} {version}")
    return job


def get_job(session: Session, name: str, version: str) -> Job | None:
    return session.scalar(select(Job).where(Job.name == name, Job.version == version))


def require_job(session: Session, name: str, version: str) -> Job:
    job = get_job(session, name, version)
    if job is None:
        raise NotFound(f"job {name} {version} not found")
    return job


@dataclass(frozen=True, slots=True)
class JobSummary:
    """What a job listing shows, without the manifest: loads several times faster than `Job` rows."""

    name: str
    version: str
    status: JobStatus
    owner_email: str
    deployed_by: str | None
    infrastructure_target: str | None
    replicas: int
    error: str | None
    created_at: datetime
    updated_at: datetime
    last_call_at: datetime | None


_SUMMARY_COLUMNS = [getattr(Job, f.name) for f in fields(JobSummary)]


def list_job_summaries(session: Session, name: str | None = None) -> list[JobSummary]:
    """Like list_jobs (one query, same order), for `GET /job` with its thousands of versions."""
    query = select(*_SUMMARY_COLUMNS).order_by(Job.name, Job.id)
    if name is not None:
        query = query.where(Job.name == name)
    return [JobSummary(*row) for row in session.execute(query)]


def list_jobs(session: Session, name: str | None = None) -> list[Job]:
    """All job versions (of one family when `name` is given) in one query, by name then age."""
    query = select(Job).order_by(Job.name, Job.id)
    if name is not None:
        query = query.where(Job.name == name)
    return list(session.scalars(query))


def set_job_status(
    session: Session, name: str, version: str, status: JobStatus, error: str | None = None
) -> Job:
    job = require_job(session, name, version)
    job.status = status
    job.error = error
    return job


def record_job_call(session: Session, name: str, version: str, at: datetime | None = None) -> None:
    session.execute(
        update(Job)
        .where(Job.name == name, Job.version == version)
        .values(last_call_at=at or utcnow())
        .execution_options(synchronize_session=False)
    )


def delete_job(session: Session, name: str, version: str) -> bool:
    """Remove a job version and the secrets it owns; False when it did not exist."""
    job = get_job(session, name, version)
    if job is None:
        return False
    session.execute(
        delete(SecretRecord).where(SecretRecord.job_name == name, SecretRecord.job_version == version)
    )
    session.delete(job)
    session.flush()
    return True
