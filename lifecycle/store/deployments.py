"""Deployments: one per deploy request, with its phases, warnings and build log."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from lifecycle.store.column_types import utcnow
from lifecycle.store.errors import NotFound
from lifecycle.store.models import Deployment, DeploymentStatus


def create_deployment(
    session: Session,
    *,
    job_name: str,
    job_version: str,
    manifest_yaml: str,
    deployed_by: str | None = None,
    force: bool = False,
) -> Deployment:
    deployment = Deployment(
        job_name=job_name,
        job_version=job_version,
        manifest_yaml=manifest_yaml,
        deployed_by=deployed_by,
        force=force,
    )
    session.add(deployment)
    session.flush()
    return deployment


def get_deployment(session: Session, deployment_id: str) -> Deployment | None:
    return session.get(Deployment, deployment_id)


def require_deployment(session: Session, deployment_id: str) -> Deployment:
    deployment = get_deployment(session, deployment_id)
    if deployment is None:
        raise NotFound(f"deployment {deployment_id} not found")
    return deployment


def list_deployments(
    session: Session, job_name: str | None = None, job_version: str | None = None, limit: int = 100
) -> list[Deployment]:
    """Newest first."""
    query = select(Deployment).order_by(Deployment.created_at.desc(), Deployment.id).limit(limit)
    if job_name is not None:
        query = query.where(Deployment.job_name == job_name)
    if job_version is not None:
        query = query.where(Deployment.job_version == job_version)
    return list(session.scalars(query))


def in_progress_deployments(session: Session) -> list[Deployment]:
    return list(session.scalars(select(Deployment).where(Deployment.status == DeploymentStatus.IN_PROGRESS)))


def start_phase(session: Session, deployment_id: str, phase: str, now: datetime | None = None) -> None:
    deployment = require_deployment(session, deployment_id)
    started = (now or utcnow()).isoformat()
    deployment.phases = [*deployment.phases, {"name": phase, "started_at": started}]
    deployment.phase = phase


def add_warning(session: Session, deployment_id: str, warning: str) -> None:
    deployment = require_deployment(session, deployment_id)
    deployment.warnings = [*deployment.warnings, warning]


def append_build_log(session: Session, deployment_id: str, text: str) -> None:
    """Appends in SQL, so a long log is not read back for every line."""
    session.execute(
        update(Deployment)
        .where(Deployment.id == deployment_id)
        .values(build_log=Deployment.build_log + text, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )


def finish_deployment(
    session: Session,
    deployment_id: str,
    status: DeploymentStatus,
    error: str | None = None,
    now: datetime | None = None,
) -> Deployment:
    if status is DeploymentStatus.IN_PROGRESS:
        raise ValueError("a deployment finishes as done or failed")
    deployment = require_deployment(session, deployment_id)
    deployment.status = status
    deployment.error = error
    deployment.finished_at = now or utcnow()
    if status is DeploymentStatus.DONE:
        deployment.phase = "done"
    return deployment
