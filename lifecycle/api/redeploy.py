"""Redeploy a job version as it is: its stored manifest, secrets and git credentials, with force.

`POST /job/{name}/{version}/redeploy` (deploy_job on the version; `latest`/`1.x` resolve) answers
202 `{"id", "status": "in_progress"}` like `POST /deploy`. The source is fetched from git again,
so a branch's newest commit is what runs afterwards. A version deployed from an uploaded
directory (a build context) cannot be fetched again: 409, saying to deploy it again.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from lifecycle.deployments import DeployRejected, DeployRequest
from lifecycle.secrets import SecretDecryptionError
from lifecycle.store import secret_records
from lifecycle.store.models import Deployment, SecretKind

from .dependencies import CurrentSubject, control_plane
from .deploy import _Rejected as Rejected
from .errors import APIError, Conflict
from .jobs import find_job

router = APIRouter(tags=["deploy"])

# what the pipeline writes first when it deploys an uploaded directory (lifecycle/deploy/pipeline.py)
BUILD_CONTEXT_LOG_LINE = "using the build context uploaded with the request"


@router.post("/job/{name}/{version}/redeploy", status_code=202)
def redeploy(name: str, version: str, request: Request, subject: CurrentSubject) -> dict[str, Any]:
    plane = control_plane(request)
    job = find_job(request, name, version)
    owner = (job.name, job.version)
    with plane.db.session() as session:
        deployment = session.get(Deployment, job.deployment_id) if job.deployment_id else None
        if deployment is not None and BUILD_CONTEXT_LOG_LINE in deployment.build_log[:2000]:
            raise Conflict(
                f"job {job.name} {job.version} was deployed from an uploaded directory, which the "
                "lifecycle does not keep: deploy it again from that directory (trackside deploy)"
            )
        try:
            secrets = {
                kind: dict(secret_records.load_secrets(session, plane.secrets, kind, job=owner))
                for kind in SecretKind
            }
        except SecretDecryptionError as e:
            raise APIError(
                f"the stored secrets of job {job.name} {job.version} cannot be read: {e}"
            ) from None
    git_credentials = secrets[SecretKind.GIT_CREDENTIALS]
    deploy_request = DeployRequest(
        manifest=dict(job.manifest),
        git_credentials=git_credentials or None,
        build_env_secrets=secrets[SecretKind.BUILD_ENV],
        runtime_env_secrets=secrets[SecretKind.RUNTIME_ENV],
        force=True,
    )
    try:
        deployment_id = plane.deployments.submit(deploy_request, subject)
    except DeployRejected as e:
        raise Rejected(e) from None
    return {"id": deployment_id, "status": "in_progress"}
