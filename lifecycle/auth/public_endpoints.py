"""Public endpoints: requested by a manifest, callable without a token once an admin approves them.

Approval is per job version; an approved endpoint is a path prefix like an endpoint permission.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from lifecycle.auth.decision_cache import invalidate_after_commit
from lifecycle.auth.permissions import endpoint_covers, normalize_endpoint
from lifecycle.store.audit import record_event
from lifecycle.store.column_types import utcnow
from lifecycle.store.errors import NotFound
from lifecycle.store.models import PublicEndpointRequest, PublicEndpointStatus


def request_public_endpoints(
    session: Session, job_name: str, job_version: str, endpoints: Iterable[str]
) -> list[PublicEndpointRequest]:
    """Record the version's requested endpoints (pending); returns only the ones new to it."""
    known = set(
        session.scalars(
            select(PublicEndpointRequest.endpoint).where(
                PublicEndpointRequest.job_name == job_name, PublicEndpointRequest.job_version == job_version
            )
        )
    )
    created = []
    for endpoint in dict.fromkeys(normalize_endpoint(e) for e in endpoints):
        if endpoint not in known:
            request = PublicEndpointRequest(job_name=job_name, job_version=job_version, endpoint=endpoint)
            session.add(request)
            created.append(request)
    session.flush()
    return created


def decide_public_endpoint(
    session: Session, request_id: int, approve: bool, *, actor: str, now: datetime | None = None
) -> PublicEndpointRequest:
    request = session.get(PublicEndpointRequest, request_id)
    if request is None:
        raise NotFound(f"public endpoint request {request_id} not found")
    request.status = PublicEndpointStatus.APPROVED if approve else PublicEndpointStatus.REJECTED
    request.decided_by = actor
    request.decided_at = now or utcnow()
    record_event(
        session,
        actor,
        "public_endpoint.approve" if approve else "public_endpoint.reject",
        f"endpoint {request.endpoint} of job {request.job_name} {request.job_version}",
        {"request_id": request.id},
    )
    invalidate_after_commit(session)
    return request


def list_public_endpoint_requests(
    session: Session,
    status: PublicEndpointStatus | None = None,
    job_name: str | None = None,
    job_version: str | None = None,
) -> list[PublicEndpointRequest]:
    query = select(PublicEndpointRequest).order_by(PublicEndpointRequest.id)
    if status is not None:
        query = query.where(PublicEndpointRequest.status == status)
    if job_name is not None:
        query = query.where(PublicEndpointRequest.job_name == job_name)
    if job_version is not None:
        query = query.where(PublicEndpointRequest.job_version == job_version)
    return list(session.scalars(query))


def is_public_endpoint(session: Session, job_name: str, job_version: str, endpoint: str) -> bool:
    approved = session.scalars(
        select(PublicEndpointRequest.endpoint).where(
            PublicEndpointRequest.job_name == job_name,
            PublicEndpointRequest.job_version == job_version,
            PublicEndpointRequest.status == PublicEndpointStatus.APPROVED,
        )
    )
    return any(endpoint_covers(prefix, endpoint) for prefix in approved)
