"""The job overview: every version the caller may read, with what a dashboard shows of it, and a
Server-Sent Event stream of its changes.

`GET /jobs/overview?name=` (any authenticated subject; filtered by read_job, never a 403;
`name`: one family only)
    `{"readable": "all"|"some"|"none", "pub_url": ..., "jobs": [...]}`, each job with `name`,
    `version`, `status`, `error`, `owner_email`, `deployed_by`, `replicas`, `create_time`,
    `update_time`, `last_call_time` (Unix seconds), `pub_url`, `latest` (whether `latest` calls
    reach this version) and `webview` (whether the job serves a webview; read from its
    entrypoint's source like the wrapper does, once per build).

`GET /jobs/overview/events`
    `event: snapshot` with `{"jobs": [[name, version, status, error, last_call_time, replicas], ...]}`
    first, then `event: change` with the same list of the versions that changed (or appeared)
    and `event: removed` with `{"jobs": [[name, version], ...]}`. The store is looked at every
    `POLL_SECONDS` (a count and the newest update time; the rows only when those moved). The
    stream ends after `MAX_STREAM_SECONDS` (an EventSource reconnects, authenticating again).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import anyio.to_thread
import msgspec
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from lifecycle.auth.subjects import Subject
from lifecycle.store.database import Database
from lifecycle.store.models import NAME_LENGTH, Job, JobStatus
from trackside.manifest import latest

from .dependencies import CurrentSubject, control_plane
from .readable import Readable, readable
from .streams import EVENT_STREAM, HEARTBEAT_SECONDS, STREAM_HEADERS, comment, sse_json

router = APIRouter(tags=["jobs"])

POLL_SECONDS = 1.0
MAX_STREAM_SECONDS = 600.0


def _time(value: datetime | None) -> float | None:
    return value.timestamp() if value else None


@functools.lru_cache(maxsize=4096)
def serves_webview(code_dir: str, entrypoint_path: str) -> bool:
    """The wrapper's own guess (trackside_wrapper.server.websockets_wanted). A build's code
    directory never changes, so the answer is kept."""
    try:
        source = (Path(code_dir) / entrypoint_path).read_text(encoding="utf-8", errors="replace")
    except (OSError, ValueError):
        return False
    return "webview_app" in source


_COLUMNS = (
    Job.name,
    Job.version,
    Job.status,
    Job.error,
    Job.owner_email,
    Job.deployed_by,
    Job.replicas,
    Job.created_at,
    Job.updated_at,
    Job.last_call_at,
    Job.code_dir,
    Job.manifest["jobtype_extra"]["entrypoint_path"].as_string(),
)


def overview(
    session: Session, visible: Readable, pub_url: str, name: str | None = None
) -> list[dict[str, Any]]:
    query = select(*_COLUMNS).order_by(Job.name, Job.id)
    if name is not None:
        query = query.where(Job.name == name)
    # plain rows from the connection: the ORM's result processing would cost a third of the listing
    rows = [row for row in session.connection().execute(query) if visible.covers(row[0], row[1])]
    running: dict[str, list[str]] = {}
    for row in rows:
        if row[2] is JobStatus.RUNNING:
            running.setdefault(row[0], []).append(row[1])
    latest_of = {name: latest(versions) for name, versions in running.items()}
    return [
        {
            "name": name,
            "version": version,
            "status": status.value,
            "error": error,
            "owner_email": owner_email,
            "deployed_by": deployed_by,
            "replicas": replicas,
            "create_time": _time(created_at),
            "update_time": _time(updated_at),
            "last_call_time": _time(last_call_at),
            "pub_url": f"{pub_url}/job/{name}/{version}",
            "latest": latest_of.get(name) == version,
            "webview": bool(code_dir and entrypoint and serves_webview(code_dir, entrypoint)),
        }
        for (
            name,
            version,
            status,
            error,
            owner_email,
            deployed_by,
            replicas,
            created_at,
            updated_at,
            last_call_at,
            code_dir,
            entrypoint,
        ) in rows
    ]


def _readable_label(visible: Readable) -> str:
    return "all" if visible.everything else "none" if visible.nothing else "some"


@router.get("/jobs/overview", response_model=dict[str, Any])
def job_overview(
    request: Request,
    subject: CurrentSubject,
    name: Annotated[str | None, Query(min_length=1, max_length=NAME_LENGTH)] = None,
) -> Response:
    plane = control_plane(request)
    with plane.db.session() as session:
        visible = readable(session, subject)
        jobs = overview(session, visible, plane.pub_url, name)
    body = {"readable": _readable_label(visible), "pub_url": plane.pub_url, "jobs": jobs}
    # encoded directly, as GET /job is: a thousand versions would cost FastAPI's validation more
    return Response(msgspec.json.encode(body), media_type="application/json")


# ---- live changes -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Mark:
    """What changes when any version changes: a new row, a deleted one, any update."""

    count: int
    newest_update: datetime | None
    highest_id: int | None


def _mark(db: Database) -> _Mark:
    with db.session() as session:
        count, newest, highest = session.execute(
            select(func.count(Job.id), func.max(Job.updated_at), func.max(Job.id))
        ).one()
        return _Mark(count, newest, highest)


_State = dict[tuple[str, str], tuple[str, str | None, float | None, int]]


def _state(db: Database, subject: Subject) -> _State:
    with db.session() as session:
        visible = readable(session, subject)
        rows = session.execute(
            select(Job.name, Job.version, Job.status, Job.error, Job.last_call_at, Job.replicas)
        )
        return {
            (name, version): (status.value, error, _time(last_call), replicas)
            for name, version, status, error, last_call, replicas in rows
            if visible.covers(name, version)
        }


def _entries(state: _State, keys: list[tuple[str, str]]) -> list[list[Any]]:
    return [[name, version, *state[(name, version)]] for name, version in sorted(keys)]


async def _overview_events(db: Database, subject: Subject) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    started = last_sent = loop.time()
    mark = await anyio.to_thread.run_sync(_mark, db)
    state = await anyio.to_thread.run_sync(_state, db, subject)
    yield sse_json("snapshot", {"jobs": _entries(state, list(state))})
    while loop.time() - started < MAX_STREAM_SECONDS:
        await asyncio.sleep(POLL_SECONDS)
        now_mark = await anyio.to_thread.run_sync(_mark, db)
        if now_mark != mark:
            mark = now_mark
            new_state = await anyio.to_thread.run_sync(_state, db, subject)
            changed = [key for key, value in new_state.items() if state.get(key) != value]
            removed = [key for key in state if key not in new_state]
            state = new_state
            events = []
            if changed:
                events.append(sse_json("change", {"jobs": _entries(state, changed)}))
            if removed:
                events.append(sse_json("removed", {"jobs": [list(key) for key in sorted(removed)]}))
            if events:
                yield b"".join(events)
                last_sent = loop.time()
                continue
        if loop.time() - last_sent >= HEARTBEAT_SECONDS:
            yield comment("keep-alive")
            last_sent = loop.time()


@router.get(
    "/jobs/overview/events",
    response_class=StreamingResponse,
    responses={200: {"content": {EVENT_STREAM: {"schema": {"type": "string"}}}}},
    summary="Changes of the job overview (Server-Sent Events)",
)
def job_overview_events(request: Request, subject: CurrentSubject) -> StreamingResponse:
    db = control_plane(request).db
    return StreamingResponse(_overview_events(db, subject), media_type=EVENT_STREAM, headers=STREAM_HEADERS)
