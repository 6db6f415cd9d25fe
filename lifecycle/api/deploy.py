"""POST /deploy and GET /deploy/{id}: Racetrack's deploy contract."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field, ValidationInfo, field_validator

from lifecycle.auth import permissions
from lifecycle.deployments import DeployRejected, DeployRequest
from lifecycle.store import deployments as deployment_store
from lifecycle.store import jobs as job_store
from lifecycle.store.models import Deployment, Scope
from trackside.manifest import RESERVED_RUNTIME_ENV

from .dependencies import CurrentSubject, control_plane, require
from .errors import APIError, Forbidden, NotFound
from .jobs import job_dto
from .readable import readable

router = APIRouter(tags=["deploy"])


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _carried(text: str, what: str) -> str:
    """Text a process environment or git can take: no NUL, no lone surrogates."""
    if "\x00" in text:
        raise ValueError(f"{what} must not contain NUL characters")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{what} must be valid Unicode text") from None
    return text


class GitCredentialsBody(BaseModel):
    username: str
    password: str = Field(repr=False)

    @field_validator("username", "password")
    @classmethod
    def _usable(cls, value: str, info: ValidationInfo) -> str:
        return _carried(value, str(info.field_name))


def _secret_env(values: dict[str, str], reserved: frozenset[str]) -> dict[str, str]:
    for name, value in values.items():
        if not _ENV_NAME.match(name):
            raise ValueError(f"{name!r} is not a valid environment variable name")
        if name in reserved:
            raise ValueError(f"{name} is set by the platform and cannot be a secret")
        _carried(value, f"the value of {name}")
    return values


class SecretVarsBody(BaseModel):
    build_env: dict[str, str] = Field(default_factory=dict, repr=False)
    runtime_env: dict[str, str] = Field(default_factory=dict, repr=False)

    @field_validator("build_env")
    @classmethod
    def _build_env(cls, values: dict[str, str]) -> dict[str, str]:
        return _secret_env(values, frozenset())

    @field_validator("runtime_env")
    @classmethod
    def _runtime_env(cls, values: dict[str, str]) -> dict[str, str]:
        return _secret_env(values, frozenset(RESERVED_RUNTIME_ENV))


class DeployBody(BaseModel):
    manifest: dict[str, Any]
    git_credentials: GitCredentialsBody | None = None
    secret_vars: SecretVarsBody | None = None
    build_context: str | None = Field(default=None, repr=False)
    force: bool = False
    build_flags: list[str] = Field(default_factory=list)


class _Rejected(APIError):
    def __init__(self, e: DeployRejected) -> None:
        super().__init__(str(e), **({"errors": e.errors} if e.errors else {}))
        self.status = e.status
        self.type = {400: "InvalidManifest", 403: "Forbidden", 409: "Conflict"}.get(e.status, "BadRequest")


@router.post("/deploy", status_code=202)
def deploy(body: DeployBody, request: Request, subject: CurrentSubject) -> dict[str, Any]:
    secrets = body.secret_vars or SecretVarsBody()
    deploy_request = DeployRequest(
        manifest=body.manifest,
        git_credentials=body.git_credentials.model_dump() if body.git_credentials else None,
        build_env_secrets=secrets.build_env,
        runtime_env_secrets=secrets.runtime_env,
        build_context=body.build_context,
        force=body.force,
        no_cache="--no-cache" in body.build_flags or "no-cache" in body.build_flags,
    )
    try:
        deployment_id = control_plane(request).deployments.submit(deploy_request, subject)
    except DeployRejected as e:
        raise _Rejected(e) from None
    return {"id": deployment_id, "status": "in_progress"}


def _time(value: datetime | None) -> float | None:
    return value.timestamp() if value else None


def deployment_dto(deployment: Deployment, job: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "id": deployment.id,
        "status": deployment.status.value,
        "phase": deployment.phase,
        "phases": deployment.phases,
        "error": deployment.error,
        "warnings": "\n".join(deployment.warnings) if deployment.warnings else None,
        "job_name": deployment.job_name,
        "job_version": deployment.job_version,
        "deployed_by": deployment.deployed_by,
        "create_time": _time(deployment.created_at),
        "update_time": _time(deployment.updated_at),
        "finish_time": _time(deployment.finished_at),
        "job": job,
    }


@router.get("/deploy/{deployment_id}")
def deployment_status(deployment_id: str, request: Request, subject: CurrentSubject) -> dict[str, Any]:
    plane = control_plane(request)
    with plane.db.session() as session:
        deployment = deployment_store.get_deployment(session, deployment_id)
        if deployment is None:
            raise NotFound(f"deployment {deployment_id} not found")
        require(request, subject, Scope.READ_JOB, family=deployment.job_name)
        job = job_store.get_job(session, deployment.job_name, deployment.job_version)
        job_body = (
            job_dto(job, plane.pub_url) if job is not None and deployment.status.value == "done" else None
        )
        return deployment_dto(deployment, job_body)


@router.get("/deploy")
def list_deployments(
    request: Request,
    subject: CurrentSubject,
    job_name: str | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    if job_name is not None:
        require(request, subject, Scope.READ_JOB, family=job_name)
    with control_plane(request).db.session() as session:
        visible = readable(session, subject)
        if visible.nothing:
            raise Forbidden(permissions.denial_reason(subject, Scope.READ_JOB))
        return [
            deployment_dto(d, None)
            for d in deployment_store.list_deployments(session, job_name, limit=limit)
            if visible.covers(d.job_name, d.job_version)
        ]
