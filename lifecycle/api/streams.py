"""Server-Sent Event streams (`text/event-stream`): a job version's log as it is written, and a
deployment's progress as it happens.

`GET /job/{name}/{version}/logs/stream?tail=N` (read_job on the family; `latest`/`1.x` resolve)
    First a comment line, then the last N lines of the log (`tail`, default 100, 0 = only new
    lines), then every new line as it is written, each as one unnamed event whose data is the
    line as text::

        data: [replica 0] 2025-01-01T00:00:00.000 INFO ... "POST /api/v1/perform" 200 0.5 ms

    `event: dropped` / `data: {"lines": N}` says N lines were left out because the client read
    too slowly. The stream ends, after `event: end` / `data: {"reason": "stopped"}`, when the
    version stops (deleted, stopped, the lifecycle shut down); at once after the tail when the
    version is not running. A comment (`: keep-alive`) is sent when nothing else was for 15 s.

`GET /deploy/{id}/events` (read_job on the job's family)
    The deployment from its start (or from `Last-Event-ID`), read from the store when it changes;
    every event's data is JSON and its `id` a resume cursor::

        event: phase    data: {"index": 0, "name": "fetching the source code", "started_at": "..."}
        event: log      data: {"line": "git: Cloning into ..."}
        event: warning  data: {"message": "..."}
        event: done     data: {"status": "done", "phase": "done", "error": null, "job": {... pub_url ...}}
        event: failed   data: {"status": "failed", "phase": "...", "error": "...", "job": null}

    The stream ends after `done` or `failed`. Within one poll, new phases are sent before new
    log lines, so a line written just before a phase change may follow that phase's event.
    Reconnecting with `Last-Event-ID` resumes after that event; after the final event the
    answer is 204 (which tells an EventSource to stop reconnecting).

Blocking work never runs on the event loop: store reads go to worker threads, and following a
log runs in a thread of its own that hands lines to the loop without ever waiting for the client.
A stream stops when the client disconnects; the follower thread then ends with the log's next
line (or when the version stops), since the runner's `follow` cannot be interrupted sooner.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Annotated, Any, Protocol

import anyio.to_thread
from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import Response, StreamingResponse
from sqlalchemy import func, select

from lifecycle.deployment_changes import DeploymentChanges
from lifecycle.store import deployments as deployment_store
from lifecycle.store import jobs as job_store
from lifecycle.store.database import Database
from lifecycle.store.models import Deployment, DeploymentStatus, Scope

from .dependencies import CurrentSubject, control_plane, require
from .errors import NotFound
from .jobs import find_job, job_dto

logger = logging.getLogger("trackside.lifecycle.api.streams")

router = APIRouter(tags=["streams"])

EVENT_STREAM = "text/event-stream"
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
HEARTBEAT_SECONDS = 15.0
POLL_SECONDS = 0.2  # the fallback: changes wake the stream at once (DeploymentChanges)
MIN_READ_SECONDS = 0.02
MAX_TAIL = 100_000
# lines a log stream holds for a client that reads slowly; past that they are dropped and counted
FOLLOW_BUFFER = 2_000
# how long the lines of the log written while its tail was read take to arrive (see _overlap)
OVERLAP_GRACE_SECONDS = 0.05

_SSE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {EVENT_STREAM: {"schema": {"type": "string"}}}, "description": "Server-Sent Events"}
}
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


# ---- the wire format -----------------------------------------------------------------------------


def sse(data: str, event: str | None = None, event_id: str | None = None) -> bytes:
    """One event. Line breaks inside `data` become several `data:` fields, which a client joins
    back with `\\n`; characters UTF-8 cannot carry (lone surrogates) become `?`."""
    fields = [] if event_id is None else [f"id: {event_id}"]
    if event is not None:
        fields.append(f"event: {event}")
    fields.extend(f"data: {part}" for part in _LINE_BREAK.split(data))
    return ("\n".join(fields) + "\n\n").encode("utf-8", "replace")


def sse_json(event: str, payload: dict[str, Any], event_id: str | None = None) -> bytes:
    return sse(json.dumps(payload, separators=(",", ":")), event, event_id)


def comment(text: str) -> bytes:
    return f": {_LINE_BREAK.sub(' ', text)}\n\n".encode("utf-8", "replace")


def _stream(events: AsyncIterator[bytes]) -> StreamingResponse:
    return StreamingResponse(events, media_type=EVENT_STREAM, headers=STREAM_HEADERS)


# ---- following a log -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _History:
    lines: list[str]


@dataclass(frozen=True)
class _Dropped:
    count: int


@dataclass(frozen=True)
class _End:
    error: str | None = None


_Item = str | _History | _Dropped | _End


class LogSource(Protocol):
    """What following a log needs of a runner."""

    def logs(self, name: str, version: str, tail: int) -> list[str]: ...
    def follow(self, name: str, version: str) -> Iterator[str]: ...


class _LogFeed:
    """Follows a version's log in a daemon thread of its own (the runner's `follow` blocks) and
    hands the lines to the event loop. The thread never waits for the client: past
    `FOLLOW_BUFFER` queued lines, lines are dropped and counted."""

    def __init__(self, runner: LogSource, name: str, version: str, tail: int) -> None:
        self._runner = runner
        self._name = name
        self._version = version
        self._tail = tail
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._dropped = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._follow, name=f"log-stream {name} {version}", daemon=True)
        self.thread.start()

    def _follow(self) -> None:
        error: str | None = None
        try:
            # subscribe before reading the tail: a line written in between is in both (see _overlap)
            follower = self._runner.follow(self._name, self._version)
            try:
                history = self._runner.logs(self._name, self._version, self._tail) if self._tail else []
                self._hand(_History(history))
                for line in follower:  # started at once, so closing it unsubscribes
                    if not self._hand(line):
                        break
            finally:
                close: Callable[[], object] | None = getattr(follower, "close", None)
                if close is not None:
                    close()
        except Exception as e:
            logger.exception("following the log of %s %s failed", self._name, self._version)
            error = f"{e.__class__.__name__}: {e}"
        finally:
            self._hand(_End(error))

    def _hand(self, item: _Item) -> bool:
        """From the thread: give `item` to the loop; False when nobody listens any more."""
        if self._stop.is_set():
            return False
        try:
            self._loop.call_soon_threadsafe(self._offer, item)
        except RuntimeError:  # the event loop is closed
            self._stop.set()
            return False
        return True

    def _offer(self, item: _Item) -> None:
        if isinstance(item, str) and self._queue.qsize() >= FOLLOW_BUFFER:
            self._dropped += 1
            return
        if self._dropped:
            self._queue.put_nowait(_Dropped(self._dropped))
            self._dropped = 0
        self._queue.put_nowait(item)

    async def get(self, timeout: float) -> _Item | None:
        """The next item, or None when none came within `timeout` seconds."""
        try:
            return self._queue.get_nowait()
        except asyncio.QueueEmpty:
            if timeout <= 0:
                return None
        try:
            return await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            return None

    def stop(self) -> None:
        """The client has gone: the thread unsubscribes when the log's next line arrives."""
        self._stop.set()


def _overlap(history: list[str], first: list[str]) -> int:
    """How many of the first followed lines repeat the end of the tail.

    The follower is subscribed before the tail is read, so lines written in between are in
    both: they are the first followed lines and the last lines of the tail, already queued when
    the tail has been read. The longest such repetition is taken for them."""
    for count in range(min(len(history), len(first)), 0, -1):
        if history[-count:] == first[:count]:
            return count
    return 0


async def _log_events(runner: LogSource, name: str, version: str, tail: int) -> AsyncIterator[bytes]:
    yield comment(f"log of {name} {version}")
    feed = _LogFeed(runner, name, version, tail)
    try:
        item = await feed.get(timeout=3600)
        history = item.lines if isinstance(item, _History) else []
        for line in history:
            yield sse(line)
        pending: list[_Item] = [] if isinstance(item, _History) or item is None else [item]
        if history:  # drop the lines that are in both the tail and the follower (see _overlap)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + OVERLAP_GRACE_SECONDS
            lead: list[str] = []
            while len(lead) < len(history):
                early = await feed.get(deadline - loop.time())
                if not isinstance(early, str):
                    pending = [] if early is None else [early]
                    break
                lead.append(early)
            pending = [*lead[_overlap(history, lead) :], *pending]
        while True:
            next_item = pending.pop(0) if pending else await feed.get(HEARTBEAT_SECONDS)
            if next_item is None:
                yield comment("keep-alive")
            elif isinstance(next_item, str):
                yield sse(next_item)
            elif isinstance(next_item, _Dropped):
                yield sse_json("dropped", {"lines": next_item.count})
            elif isinstance(next_item, _End):
                payload: dict[str, Any] = {"reason": "stopped" if next_item.error is None else "error"}
                if next_item.error is not None:
                    payload["error"] = next_item.error
                yield sse_json("end", payload)
                return
    finally:
        feed.stop()


@router.get(
    "/job/{name}/{version}/logs/stream",
    response_class=StreamingResponse,
    responses=_SSE_RESPONSES,
    summary="Follow a job version's log (Server-Sent Events)",
)
def follow_job_logs(
    name: str,
    version: str,
    request: Request,
    subject: CurrentSubject,
    tail: Annotated[int, Query(ge=0, le=MAX_TAIL, description="lines of history first; 0 = only new")] = 100,
) -> StreamingResponse:
    require(request, subject, Scope.READ_JOB, family=name)
    job = find_job(request, name, version)
    return _stream(_log_events(control_plane(request).runner, job.name, job.version, tail))


# ---- a deployment's progress ---------------------------------------------------------------------

_LOG_LINE = re.compile(r"[^\n]*\n|[^\n]+\Z")
_CURSOR = re.compile(r"^(\d{1,6})\.(\d{1,12})\.(\d{1,6})(\.end)?$")


@dataclass
class _Cursor:
    """What a client has seen: phases, characters of the build log, warnings (and the end)."""

    phases: int = 0
    log: int = 0
    warnings: int = 0
    final: bool = False

    @classmethod
    def parse(cls, text: str | None) -> _Cursor:
        match = _CURSOR.match(text.strip()) if text else None
        if match is None:
            return cls()  # none, or not one of ours: from the start
        return cls(int(match[1]), int(match[2]), int(match[3]), match[4] is not None)

    def __str__(self) -> str:
        return f"{self.phases}.{self.log}.{self.warnings}" + (".end" if self.final else "")


@dataclass
class _Snapshot:
    status: DeploymentStatus
    phase: str | None
    phases: list[dict[str, Any]]
    warnings: list[str]
    error: str | None
    new_log: str  # the build log from the cursor on
    job: dict[str, Any] | None = field(default=None)


def _read_deployment(db: Database, pub_url: str, deployment_id: str, log_from: int) -> _Snapshot | None:
    """One consistent read of the deployment's row (only the part of the log not sent yet)."""
    with db.session() as session:
        row = session.execute(
            select(
                Deployment.status,
                Deployment.phase,
                Deployment.phases,
                Deployment.warnings,
                Deployment.error,
                Deployment.job_name,
                Deployment.job_version,
                func.substr(Deployment.build_log, log_from + 1),
            ).where(Deployment.id == deployment_id)
        ).one_or_none()
        if row is None:
            return None
        status, phase, phases, warnings, error, job_name, job_version, new_log = row
        job = None
        if status == DeploymentStatus.DONE:
            record = job_store.get_job(session, job_name, job_version)
            job = job_dto(record, pub_url) if record is not None else None
        return _Snapshot(status, phase, list(phases or []), list(warnings or []), error, new_log or "", job)


async def _deployment_events(
    db: Database, pub_url: str, deployment_id: str, cursor: _Cursor, changes: DeploymentChanges
) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    last_sent = loop.time()
    while True:
        seen = changes.version(deployment_id)
        read_at = loop.time()
        snapshot = await anyio.to_thread.run_sync(_read_deployment, db, pub_url, deployment_id, cursor.log)
        if snapshot is None:
            cursor.final = True
            yield sse_json(
                "failed",
                {
                    "status": "failed",
                    "phase": None,
                    "error": f"deployment {deployment_id} no longer exists",
                    "job": None,
                },
                str(cursor),
            )
            return
        events: list[bytes] = []
        for index in range(cursor.phases, len(snapshot.phases)):
            phase = snapshot.phases[index]
            cursor.phases = index + 1
            payload = {"index": index, "name": phase.get("name"), "started_at": phase.get("started_at")}
            events.append(sse_json("phase", payload, str(cursor)))
        finished = snapshot.status != DeploymentStatus.IN_PROGRESS
        # whole lines only until the end (the reporter appends whole lines, but a reader must
        # not rely on it)
        text = snapshot.new_log if finished else snapshot.new_log[: snapshot.new_log.rfind("\n") + 1]
        for match in _LOG_LINE.finditer(text):
            cursor.log += len(match[0])
            line = match[0].removesuffix("\n").removesuffix("\r")
            events.append(sse_json("log", {"line": line}, str(cursor)))
        for index in range(cursor.warnings, len(snapshot.warnings)):
            cursor.warnings = index + 1
            events.append(sse_json("warning", {"message": snapshot.warnings[index]}, str(cursor)))
        if finished:
            cursor.final = True
            final = {
                "status": snapshot.status.value,
                "phase": snapshot.phase,
                "error": snapshot.error,
                "job": snapshot.job,
            }
            events.append(sse_json(snapshot.status.value, final, str(cursor)))
        if events:
            yield b"".join(events)
            last_sent = loop.time()
        elif loop.time() - last_sent >= HEARTBEAT_SECONDS:
            yield comment("keep-alive")
            last_sent = loop.time()
        if finished:
            return
        await changes.wait(deployment_id, seen, POLL_SECONDS)
        # a burst of log lines: one read per MIN_READ_SECONDS at most
        await asyncio.sleep(max(0.0, read_at + MIN_READ_SECONDS - loop.time()))


@router.get(
    "/deploy/{deployment_id}/events",
    response_class=StreamingResponse,
    responses={**_SSE_RESPONSES, 204: {"description": "the client has seen the final event already"}},
    summary="A deployment's progress (Server-Sent Events)",
)
def deployment_events(
    deployment_id: str,
    request: Request,
    subject: CurrentSubject,
    last_event_id: Annotated[str | None, Header(description="resume after this event")] = None,
) -> Response:
    plane = control_plane(request)
    with plane.db.session() as session:
        deployment = deployment_store.get_deployment(session, deployment_id)
        if deployment is None:
            raise NotFound(f"deployment {deployment_id} not found")
        family = deployment.job_name
    require(request, subject, Scope.READ_JOB, family=family)
    cursor = _Cursor.parse(last_event_id)
    if cursor.final:
        return Response(status_code=204)
    return _stream(
        _deployment_events(plane.db, plane.pub_url, deployment_id, cursor, plane.deployments.changes)
    )
