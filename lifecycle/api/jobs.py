"""Jobs: list, one version (exact, `latest` or a `1.x` wildcard), delete, logs and build logs.

The answers carry the fields Racetrack's CLI prints (`racetrack list -c all`): `job_type_version`,
`infrastructure_target`, `deployed_by`, `update_time` and `last_call_time` (Unix timestamps) and
`pub_url`, the job's address on the gateway (what `racetrack call` posts to).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
from fastapi import APIRouter, Request, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from lifecycle.auth import permissions
from lifecycle.store import deployments as deployment_store
from lifecycle.store import jobs as job_store
from lifecycle.store.audit import record_event
from lifecycle.store.models import Deployment, Job, Scope
from trackside.manifest import resolve

from .dependencies import CurrentSubject, control_plane, require
from .errors import Forbidden, NotFound
from .readable import readable

router = APIRouter(tags=["jobs"])


def _time(value: datetime | None) -> float | None:
    return value.timestamp() if value else None


def job_dto(job: Job | job_store.JobSummary, pub_url: str, jobtype: str | None = None) -> dict[str, Any]:
    """`jobtype`: the manifest's `jobtype` for a summary (a `Job` carries its manifest)."""
    if isinstance(job, Job):
        jobtype = job.manifest.get("jobtype")
    body: dict[str, Any] = {
        "name": job.name,
        "version": job.version,
        "status": job.status.value,
        "job_type_version": jobtype,
        "error": job.error,
        "owner_email": job.owner_email,
        "deployed_by": job.deployed_by,
        "infrastructure_target": job.infrastructure_target or "embedded",
        "replicas": job.replicas,
        "create_time": _time(job.created_at),
        "update_time": _time(job.updated_at),
        "last_call_time": _time(job.last_call_at),
        "pub_url": f"{pub_url}/job/{job.name}/{job.version}",
    }
    if isinstance(job, Job):
        body["manifest"] = job.manifest
        body["manifest_yaml"] = job.manifest_yaml
        body["deployment_id"] = job.deployment_id
        body["labels"] = job.labels
    return body


@router.get("/job", response_model=list[dict[str, Any]])
def list_jobs(request: Request, subject: CurrentSubject) -> Response:
    """The versions the caller may read: a reader of some families sees those, not a 403."""
    plane = control_plane(request)
    with plane.db.session() as session:
        visible = readable(session, subject)
        if visible.nothing:
            raise Forbidden(permissions.denial_reason(subject, Scope.READ_JOB))
        jobtypes = _jobtypes(session)
        jobs = [
            job_dto(job, plane.pub_url, jobtypes.get((job.name, job.version)))
            for job in job_store.list_job_summaries(session)
            if visible.covers(job.name, job.version)
        ]
    # encoded directly: FastAPI's per-item response validation costs more than the query itself
    return Response(msgspec.json.encode(jobs), media_type="application/json")


def _jobtypes(session: Session) -> dict[tuple[str, str], str | None]:
    """Each version's `jobtype` (e.g. `python3:latest`), read out of the stored manifests by the
    database: decoding whole manifests would cost more than the listing itself."""
    rows = session.execute(select(Job.name, Job.version, Job.manifest["jobtype"].as_string()))
    return {(name, version): jobtype for name, version, jobtype in rows}


def find_job(request: Request, name: str, version: str) -> Job:
    """The job version `version` names: exact, `latest` or a wildcard; NotFound otherwise."""
    with control_plane(request).db.session() as session:
        job = job_store.get_job(session, name, version)
        if job is None:
            versions = [j.version for j in job_store.list_job_summaries(session, name)]
            if not versions:
                raise NotFound(f"job {name} not found")
            exact = resolve(version, versions)
            if exact is None:
                raise NotFound(f"job {name} has no version matching {version!r} (has: {', '.join(versions)})")
            job = job_store.get_job(session, name, exact)
            if job is None:
                raise NotFound(f"job {name} {exact} not found")
        session.expunge(job)
        return job


@router.get("/job/{name}/{version}")
def get_job(name: str, version: str, request: Request, subject: CurrentSubject) -> dict[str, Any]:
    require(request, subject, Scope.READ_JOB, family=name)
    job = find_job(request, name, version)
    return job_dto(job, control_plane(request).pub_url)


@router.delete("/job/{name}/{version}")
def delete_job(name: str, version: str, request: Request, subject: CurrentSubject) -> dict[str, Any]:
    job = find_job(request, name, version)
    require(request, subject, Scope.DELETE_JOB, family=job.name, version=job.version)
    plane = control_plane(request)
    plane.runner.stop(job.name, job.version)
    build = (
        plane.builder.restore(job.environment_id, Path(job.code_dir))
        if job.environment_id and job.code_dir
        else None
    )
    with plane.db.session() as session:
        job_store.delete_job(session, job.name, job.version)
        record_event(session, actor=subject.description, action="delete", target=f"{job.name} {job.version}")
    if build is not None:
        plane.builder.release(build)
    return {"name": job.name, "version": job.version, "deleted": True}


@router.get("/job/{name}/{version}/logs")
def job_logs(
    name: str, version: str, request: Request, subject: CurrentSubject, tail: int = 100
) -> dict[str, Any]:
    require(request, subject, Scope.READ_JOB, family=name)
    job = find_job(request, name, version)
    lines = control_plane(request).runner.logs(job.name, job.version, max(tail, 0) or 100_000)
    return {"logs": "\n".join(line.rstrip("\n") for line in lines)}


@router.get("/job/{name}/{version}/build-logs")
def build_logs(
    name: str, version: str, request: Request, subject: CurrentSubject, tail: int = 0
) -> dict[str, Any]:
    """The log of the newest deployment of the version; `tail` > 0: its last lines only."""
    require(request, subject, Scope.READ_JOB, family=name)
    with control_plane(request).db.session() as session:
        deployment = _newest_deployment(session, name, version)
        log = deployment.build_log or ""
        deployment_id = deployment.id
    lines = log.splitlines()
    if tail > 0:
        lines = lines[-tail:]
    return {"logs": "\n".join(lines), "deployment_id": deployment_id}


def _newest_deployment(session: Session, name: str, version: str) -> Deployment:
    """`latest` is the newest deployment of the job whatever its version: the build its user just
    ran, a failed one included (what `racetrack build-logs NAME` is for). An exact version or a
    wildcard picks among the versions that have deployments."""
    exact = None  # latest: any version
    if version != "latest":
        versions = session.scalars(
            select(Deployment.job_version).where(Deployment.job_name == name).distinct()
        ).all()
        exact = resolve(version, versions)
        if exact is None:
            raise NotFound(f"no deployment of job {name} {version}")
    deployments = deployment_store.list_deployments(session, name, exact, limit=1)
    if not deployments:
        raise NotFound(f"no deployment of job {name} {version}")
    return deployments[0]
