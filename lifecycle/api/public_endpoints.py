"""Public endpoint requests (from deployed manifests' `public_endpoints`): listing and decisions, admin only.

Approval is per job version; once approved, the gateway lets calls to the endpoint (a path prefix)
through without a token.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict

from lifecycle.auth import public_endpoints as endpoint_store
from lifecycle.store.errors import NotFound as StoreNotFound
from lifecycle.store.models import NAME_LENGTH, VERSION_LENGTH, PublicEndpointStatus

from .dependencies import CurrentSubject, control_plane, require_admin
from .errors import NotFound

router = APIRouter(tags=["public endpoints"])


class PublicEndpointOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    job_name: str
    job_version: str
    endpoint: str
    status: PublicEndpointStatus
    decided_by: str | None
    decided_at: datetime | None
    created_at: datetime


@router.get("/public-endpoints")
def list_requests(
    request: Request,
    subject: CurrentSubject,
    status: Annotated[PublicEndpointStatus | None, Query()] = None,
    job_name: Annotated[str | None, Query(min_length=1, max_length=NAME_LENGTH)] = None,
    job_version: Annotated[str | None, Query(min_length=1, max_length=VERSION_LENGTH)] = None,
) -> list[PublicEndpointOut]:
    require_admin(request, subject, "public endpoints")
    with control_plane(request).db.session() as session:
        rows = endpoint_store.list_public_endpoint_requests(session, status, job_name, job_version)
        return [PublicEndpointOut.model_validate(row) for row in rows]


def _decide(request_id: int, approve: bool, request: Request, subject: CurrentSubject) -> PublicEndpointOut:
    require_admin(request, subject, f"public endpoint request {request_id}")
    with control_plane(request).db.session() as session:
        try:
            decided = endpoint_store.decide_public_endpoint(
                session, request_id, approve, actor=subject.description
            )
        except StoreNotFound as e:
            raise NotFound(str(e)) from None
        return PublicEndpointOut.model_validate(decided)


@router.post("/public-endpoints/{request_id}/approve")
def approve(request_id: int, request: Request, subject: CurrentSubject) -> PublicEndpointOut:
    return _decide(request_id, True, request, subject)


@router.post("/public-endpoints/{request_id}/reject")
def reject(request_id: int, request: Request, subject: CurrentSubject) -> PublicEndpointOut:
    return _decide(request_id, False, request, subject)
