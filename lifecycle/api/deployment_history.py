"""Deployment history: recent deployments the caller may read, each phase with its duration, and
a Server-Sent Event stream of those that change.

`GET /deployments?job_name=&job_version=&status=&limit=50` (filtered by read_job, never a 403)
    Newest first: `id`, `job_name`, `job_version`, `status`, `phase`, `error`, `warnings`,
    `deployed_by`, `force`, `create_time`, `finish_time`, `duration_s` (request to finish, or to
    now while in progress) and `phases`: `[{name, started_at, duration_s, current}]`, where a phase
    lasts until the next one starts (the last one until the deployment finished, or until now).
    `job_version` is an exact version.

`GET /deployments/events?job_name=`
    `event: deployment` with one such deployment (without the build log) whenever it changes,
    starting with those in progress; every `POLL_SECONDS`. Ends after `MAX_STREAM_SECONDS` (an
    EventSource reconnects, authenticating again).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import ColumnElement, Select, and_, or_, select, true
from sqlalchemy.orm import Session

from lifecycle.auth.subjects import Subject
from lifecycle.store.column_types import utcnow
from lifecycle.store.database import Database
from lifecycle.store.models import NAME_LENGTH, VERSION_LENGTH, Deployment, DeploymentStatus

from .dependencies import CurrentSubject, control_plane
from .readable import Readable, readable
from .streams import EVENT_STREAM, HEARTBEAT_SECONDS, STREAM_HEADERS, comment, sse_json

router = APIRouter(tags=["deploy"])

MAX_LIMIT = 500
POLL_SECONDS = 0.5
MAX_STREAM_SECONDS = 600.0

# every column but the build log, which can be large and is not shown in a history
_COLUMNS = (
    Deployment.id,
    Deployment.job_name,
    Deployment.job_version,
    Deployment.status,
    Deployment.phase,
    Deployment.phases,
    Deployment.error,
    Deployment.warnings,
    Deployment.deployed_by,
    Deployment.force,
    Deployment.created_at,
    Deployment.updated_at,
    Deployment.finished_at,
)


def _seconds(start: datetime, end: datetime) -> float:
    return round(max((end - start).total_seconds(), 0.0), 3)


def _parse(text: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(text))
    except ValueError:
        return None


def phase_durations(
    phases: list[dict[str, Any]], finished_at: datetime | None, now: datetime
) -> list[dict[str, Any]]:
    """Each phase lasts until the next one starts; the last one until the end (or now)."""
    starts = [_parse(p.get("started_at")) for p in phases]
    out = []
    for index, phase in enumerate(phases):
        start = starts[index]
        is_last = index == len(phases) - 1
        end = (finished_at or now) if is_last else starts[index + 1]
        out.append(
            {
                "name": phase.get("name"),
                "started_at": phase.get("started_at"),
                "duration_s": None if start is None or end is None else _seconds(start, end),
                "current": is_last and finished_at is None,
            }
        )
    return out


def deployment_entry(row: Any, now: datetime) -> dict[str, Any]:
    (
        deployment_id,
        job_name,
        job_version,
        status,
        phase,
        phases,
        error,
        warnings,
        deployed_by,
        force,
        created_at,
        _updated_at,
        finished_at,
    ) = row
    return {
        "id": deployment_id,
        "job_name": job_name,
        "job_version": job_version,
        "status": status.value,
        "phase": phase,
        "error": error,
        "warnings": list(warnings or []),
        "deployed_by": deployed_by,
        "force": force,
        "create_time": created_at.timestamp(),
        "finish_time": finished_at.timestamp() if finished_at else None,
        "duration_s": _seconds(created_at, finished_at or now),
        "phases": phase_durations(list(phases or []), finished_at, now),
    }


def _visible_filter(visible: Readable) -> ColumnElement[bool]:
    if visible.grants is None:
        return true()
    clauses = [
        and_(
            Deployment.job_name == grant.job_family if grant.job_family is not None else true(),
            Deployment.job_version == grant.job_version if grant.job_version is not None else true(),
        )
        for grant in visible.grants
    ]
    return or_(*clauses) if clauses else ~true()


def _query(visible: Readable, job_name: str | None, job_version: str | None) -> Select[Any]:
    query = select(*_COLUMNS).where(_visible_filter(visible))
    if job_name is not None:
        query = query.where(Deployment.job_name == job_name)
    if job_version is not None:
        query = query.where(Deployment.job_version == job_version)
    return query


def recent_deployments(
    session: Session,
    visible: Readable,
    job_name: str | None = None,
    job_version: str | None = None,
    status: DeploymentStatus | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    query = _query(visible, job_name, job_version)
    if status is not None:
        query = query.where(Deployment.status == status)
    query = query.order_by(Deployment.created_at.desc(), Deployment.id).limit(limit)
    now = utcnow()
    return [deployment_entry(row, now) for row in session.execute(query)]


@router.get("/deployments")
def list_recent_deployments(
    request: Request,
    subject: CurrentSubject,
    job_name: Annotated[str | None, Query(min_length=1, max_length=NAME_LENGTH)] = None,
    job_version: Annotated[str | None, Query(min_length=1, max_length=VERSION_LENGTH)] = None,
    status: Annotated[DeploymentStatus | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
) -> list[dict[str, Any]]:
    with control_plane(request).db.session() as session:
        visible = readable(session, subject)
        return recent_deployments(session, visible, job_name, job_version, status, limit)


# ---- live changes -------------------------------------------------------------------------------


def _changed(
    db: Database, subject: Subject, job_name: str | None, since: datetime | None
) -> tuple[list[dict[str, Any]], datetime | None]:
    """Deployments updated after `since` (None: those in progress), and the newest update seen."""
    with db.session() as session:
        query = _query(readable(session, subject), job_name, None)
        if since is None:
            query = query.where(Deployment.status == DeploymentStatus.IN_PROGRESS)
            newest = session.scalar(select(Deployment.updated_at).order_by(Deployment.updated_at.desc()))
        else:
            query = query.where(Deployment.updated_at > since)
            newest = since
        now = utcnow()
        rows = list(session.execute(query.order_by(Deployment.updated_at)))
        for row in rows:
            newest = row[11] if newest is None or row[11] > newest else newest
        return [deployment_entry(row, now) for row in rows], newest


async def _events(db: Database, subject: Subject, job_name: str | None) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    started = last_sent = loop.time()
    since: datetime | None = None
    first = True
    while loop.time() - started < MAX_STREAM_SECONDS:
        changed, newest = await anyio.to_thread.run_sync(_changed, db, subject, job_name, since)
        since = newest or utcnow()
        if changed:
            yield b"".join(sse_json("deployment", entry) for entry in changed)
            last_sent = loop.time()
        elif first or loop.time() - last_sent >= HEARTBEAT_SECONDS:
            yield comment("deployments" if first else "keep-alive")
            last_sent = loop.time()
        first = False
        await asyncio.sleep(POLL_SECONDS)


@router.get(
    "/deployments/events",
    response_class=StreamingResponse,
    responses={200: {"content": {EVENT_STREAM: {"schema": {"type": "string"}}}}},
    summary="Deployments as they change (Server-Sent Events)",
)
def deployment_changes(
    request: Request,
    subject: CurrentSubject,
    job_name: Annotated[str | None, Query(min_length=1, max_length=NAME_LENGTH)] = None,
) -> StreamingResponse:
    db = control_plane(request).db
    return StreamingResponse(_events(db, subject, job_name), media_type=EVENT_STREAM, headers=STREAM_HEADERS)
