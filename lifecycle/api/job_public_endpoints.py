"""A job version's public endpoints and their approval state, for whoever may read the job (the
admin-only `GET /public-endpoints` lists and decides them all).

`GET /job/{name}/{version}/public-endpoints` (read_job; `latest`/`1.x` resolve).
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from lifecycle.auth import public_endpoints as endpoint_store
from lifecycle.store.models import Scope

from .dependencies import CurrentSubject, control_plane, require
from .jobs import find_job
from .public_endpoints import PublicEndpointOut

router = APIRouter(tags=["public endpoints"])


@router.get("/job/{name}/{version}/public-endpoints")
def job_public_endpoints(
    name: str, version: str, request: Request, subject: CurrentSubject
) -> list[PublicEndpointOut]:
    require(request, subject, Scope.READ_JOB, family=name)
    job = find_job(request, name, version)
    with control_plane(request).db.session() as session:
        rows = endpoint_store.list_public_endpoint_requests(session, None, job.name, job.version)
        return [PublicEndpointOut.model_validate(row) for row in rows]
