"""Server-Sent Event streams of the lifecycle API, against a real server (uvicorn on a free port):
following a job's log, and a deployment's progress as events."""

from __future__ import annotations

import asyncio
import json
import queue
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from lifecycle.api import streams
from lifecycle.api.app import create_app
from lifecycle.api.streams import _Cursor, _log_events, _overlap, sse
from lifecycle.auth import grant, issue_token
from lifecycle.auth.escs import create_esc
from lifecycle.auth.subjects import esc_subject
from lifecycle.control_plane import ControlPlane
from lifecycle.deploy.pipeline import PHASES
from lifecycle.store.models import Scope
from tests.conftest import SAMPLE_JOBS
from tests.lifecycle.platform import lifecycle_config
from tests.served_app import served
from trackside.build_context import pack_directory

API = "/api/v1"
BROKEN_ENTRYPOINT = "import not_a_module_anywhere_xyz\n"


def adder_context() -> str:
    return pack_directory(SAMPLE_JOBS / "adder")


def manifest(name: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": name,
        "owner_email": "sample@example.com",
        "jobtype": "python3:latest",
        "version": "0.0.1",
        "git": {"remote": "https://github.com/trackside/trackside", "directory": "sample-jobs/adder"},
        "jobtype_extra": {"entrypoint_path": "entrypoint.py"},
    }
    body.update(extra)
    return body


# ---- a tiny SSE client ------------------------------------------------------------------------------


@dataclass
class Event:
    event: str = "message"
    data: str = ""
    id: str | None = None
    comment: str | None = None  # set for a comment line (": ..."), which is no event

    def json(self) -> Any:
        return json.loads(self.data)


def parse_sse(lines: Iterable[str]) -> Iterator[Event]:
    current = Event()
    data: list[str] = []
    fields = False
    for line in lines:
        if line == "":
            if fields:
                current.data = "\n".join(data)
                yield current
            current, data, fields = Event(), [], False
            continue
        if line.startswith(":"):
            yield Event(event="", comment=line[1:].strip())
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        fields = True
        if name == "data":
            data.append(value)
        elif name == "event":
            current.event = value
        elif name == "id":
            current.id = value


@dataclass
class EventReader:
    """Reads a stream in a thread of its own, so a test can act while events arrive."""

    base_url: str
    path: str
    headers: dict[str, str]
    status: int | None = None
    events: queue.Queue[Event | None] = field(default_factory=queue.Queue)
    opened: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        assert self.opened.wait(15), f"{self.path} did not answer"

    def _read(self) -> None:
        try:
            with (
                httpx.Client(base_url=self.base_url, timeout=httpx.Timeout(10, read=60)) as client,
                client.stream("GET", self.path, headers=self.headers) as response,
            ):
                self.status = response.status_code
                self.opened.set()
                for event in parse_sse(response.iter_lines()):
                    if event.comment is None:
                        self.events.put(event)
        except BaseException as e:  # reported by the test through `error`
            self.error = e
        finally:
            self.opened.set()
            self.events.put(None)

    def next(self, timeout: float = 10) -> Event | None:
        """The next event; None once the stream has ended."""
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no event from {self.path} within {timeout}s") from None

    def until(self, done: Any, timeout: float = 30) -> list[Event]:
        """Events up to and including the first one for which `done(event)` is true."""
        seen: list[Event] = []
        deadline = time.monotonic() + timeout
        while True:
            event = self.next(max(0.1, deadline - time.monotonic()))
            assert event is not None, f"the stream ended first; saw {[(e.event, e.data) for e in seen]}"
            seen.append(event)
            if done(event):
                return seen

    def rest(self, timeout: float = 60) -> list[Event]:
        """Every event until the stream ends."""
        seen: list[Event] = []
        deadline = time.monotonic() + timeout
        while (event := self.next(max(0.1, deadline - time.monotonic()))) is not None:
            seen.append(event)
        assert self.error is None, self.error
        return seen


# ---- the platform -----------------------------------------------------------------------------------


class Platform:
    def __init__(self, plane: ControlPlane, base_url: str, token: str) -> None:
        self.plane = plane
        self.base_url = base_url
        self.token = token
        self.client = httpx.Client(base_url=base_url, timeout=30, headers=self.headers())

    def headers(self, token: str | None = None) -> dict[str, str]:
        return {"X-Racetrack-Auth": token or self.token}

    def deploy(self, body: dict[str, Any], build_context: str) -> str:
        r = self.client.post(f"{API}/deploy", json={"manifest": body, "build_context": build_context})
        assert r.status_code == 202, r.text
        deployment_id: str = r.json()["id"]
        return deployment_id

    def events(self, deployment_id: str, last_event_id: str | None = None) -> EventReader:
        headers = self.headers()
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        return EventReader(self.base_url, f"{API}/deploy/{deployment_id}/events", headers)

    def follow(self, name: str, version: str, tail: int = 0) -> EventReader:
        return EventReader(
            self.base_url, f"{API}/job/{name}/{version}/logs/stream?tail={tail}", self.headers()
        )

    def call(self, name: str, numbers: list[float]) -> Any:
        replicas = self.plane.runner.serving(name, "0.0.1")
        assert replicas, f"{name} has no ready replica"
        r = httpx.post(replicas[0].address + "/api/v1/perform", json={"numbers": numbers}, timeout=10)
        assert r.status_code == 200, r.text
        return r.json()

    def token_for_esc(self, name: str, read_family: str | None = None) -> str:
        with self.plane.db.session() as session:
            subject = esc_subject(create_esc(session, name, actor="test"))
            if read_family is not None:
                grant(session, subject, Scope.READ_JOB, actor="test", family=read_family)
            return issue_token(session, subject, actor="test").token


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    data = tmp_path_factory.mktemp("lifecycle-data")
    config = lifecycle_config(data)
    plane = ControlPlane(config, pub_url="http://127.0.0.1:7200/pub")
    report = plane.start()
    assert report.admin_token
    with served(create_app(plane), timeout_graceful_shutdown=2) as url:
        platform = Platform(plane, url, report.admin_token)
        yield platform
        platform.client.close()
        plane.stop()  # stops the jobs: open log streams end


@dataclass
class Deployed:
    deployment_id: str
    events: list[Event]


@pytest.fixture(scope="module")
def adder(platform: Platform) -> Deployed:
    """`stream-adder` deployed from a build context, with the events of its deployment."""
    deployment_id = platform.deploy(manifest("stream-adder"), adder_context())
    reader = platform.events(deployment_id)
    assert reader.status == 200
    return Deployed(deployment_id, reader.rest(timeout=180))


def _log_lines(events: list[Event]) -> list[str]:
    return [e.data for e in events if e.event == "message"]


# ---- deployment events --------------------------------------------------------------------------------


def test_a_successful_deployment_streams_its_phases_in_order_then_done(
    platform: Platform, adder: Deployed
) -> None:
    events = adder.events
    final = events[-1]
    assert final.event == "done", [(e.event, e.data) for e in events]
    body = final.json()
    assert body["status"] == "done" and body["error"] is None
    assert body["job"]["pub_url"] == "http://127.0.0.1:7200/pub/job/stream-adder/0.0.1"

    phases = [e.json() for e in events if e.event == "phase"]
    assert [p["name"] for p in phases] == list(PHASES)
    assert [p["index"] for p in phases] == list(range(len(PHASES)))
    assert all(p["started_at"] for p in phases)

    logs = [e.json()["line"] for e in events if e.event == "log"]
    assert logs[0] == "using the build context uploaded with the request"
    assert any("input example for /api/v1/perform: 200" in line for line in logs)
    # the stream's log is the deployment's build log, line for line
    build_log = platform.client.get(f"{API}/job/stream-adder/0.0.1/build-logs").json()["logs"]
    assert logs == build_log.splitlines()
    # the phases of a deployment come in order, each before the lines logged after it started
    kinds = [e.event for e in events]
    assert kinds.index("phase") == 0 and kinds.count("done") == 1
    assert {e.event for e in events} <= {"phase", "log", "warning", "done"}
    # every event has an id, a resume cursor that only moves forward
    cursors = [_Cursor.parse(e.id) for e in events]
    positions = [(c.phases, c.log, c.warnings) for c in cursors]
    assert positions == sorted(positions) and cursors[-1].final


def test_deployment_events_come_as_the_deployment_changes_not_at_the_next_poll(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(streams, "POLL_SECONDS", 600.0)  # a stream that only polled would sit here
    deployment_id = platform.deploy(manifest("stream-woken"), adder_context())
    reader = platform.events(deployment_id)
    assert reader.status == 200
    events = reader.rest(timeout=120)
    assert [e.json()["name"] for e in events if e.event == "phase"] == list(PHASES)
    assert events[-1].event == "done"


def test_deployment_events_resume_after_the_last_event_id(platform: Platform, adder: Deployed) -> None:
    events = adder.events
    resumed = platform.events(adder.deployment_id, last_event_id=events[3].id).rest()
    # the same events of each kind, in the same order (how phases and lines interleave depends
    # on what each poll found)
    for kind in ("phase", "log", "warning", "done"):
        assert [e.data for e in resumed if e.event == kind] == [e.data for e in events[4:] if e.event == kind]
    assert resumed[-1].id == events[-1].id
    # after the final event there is nothing more: 204 stops an EventSource from reconnecting
    r = platform.client.get(
        f"{API}/deploy/{adder.deployment_id}/events", headers={"Last-Event-ID": events[-1].id or ""}
    )
    assert r.status_code == 204 and r.content == b""
    # a cursor that is not one of ours starts from the beginning
    again = platform.events(adder.deployment_id, last_event_id="garbage").rest()
    assert sorted(e.data for e in again) == sorted(e.data for e in events)


def test_a_failing_deployment_ends_with_failed_and_its_error(platform: Platform, tmp_path: Any) -> None:
    job = tmp_path / "broken"
    job.mkdir()
    (job / "entrypoint.py").write_text(BROKEN_ENTRYPOINT)
    deployment_id = platform.deploy(manifest("stream-broken"), pack_directory(job))
    events = platform.events(deployment_id).rest(timeout=120)
    final = events[-1]
    assert final.event == "failed", [(e.event, e.data) for e in events]
    body = final.json()
    assert body["status"] == "failed" and body["job"] is None
    assert body["phase"] == "initialising the entrypoint"
    assert "not_a_module_anywhere_xyz" in body["error"]
    phases = [e.json()["name"] for e in events if e.event == "phase"]
    assert phases == list(PHASES[:4])
    assert [e.event for e in events].count("failed") == 1
    status = platform.client.get(f"{API}/deploy/{deployment_id}").json()
    assert status["status"] == "failed" and status["error"] == body["error"]


def test_a_deployment_that_fails_at_once_also_ends(platform: Platform) -> None:
    deployment_id = platform.deploy(manifest("stream-not-gzip"), "bm90IGEgdGFyYmFsbA==")
    events = platform.events(deployment_id).rest()
    assert [e.event for e in events] == ["phase", "log", "failed"]
    assert events[-1].json()["error"] == "the build context is not a valid gzip stream"


# ---- refusals -----------------------------------------------------------------------------------------


def test_streams_need_a_token_and_read_permission_and_an_existing_target(
    platform: Platform, adder: Deployed
) -> None:
    deploy_events = f"{API}/deploy/{adder.deployment_id}/events"
    log_stream = f"{API}/job/stream-adder/0.0.1/logs/stream"
    bare = httpx.Client(base_url=platform.base_url, timeout=10)
    for path in (deploy_events, log_stream):
        r = bare.get(path)
        assert r.status_code == 401 and r.json()["type"] == "Unauthenticated"
        r = bare.get(path, headers={"X-Racetrack-Auth": "tst_no-such-token"})
        assert r.status_code == 401 and r.json()["type"] == "Unauthenticated"

    outsider = platform.token_for_esc("stream-outsider")
    other_family = platform.token_for_esc("stream-other", read_family="some-other-job")
    for token in (outsider, other_family):
        for path in (deploy_events, log_stream):
            r = bare.get(path, headers=platform.headers(token))
            assert r.status_code == 403, r.text
            assert r.json()["type"] == "Forbidden" and "read_job" in r.json()["error"]
    reader_token = platform.token_for_esc("stream-reader", read_family="stream-adder")
    assert bare.get(f"{API}/deploy/{adder.deployment_id}", headers=platform.headers(reader_token)).is_success
    events = EventReader(platform.base_url, deploy_events, platform.headers(reader_token)).rest()
    assert events[-1].event == "done"

    for path in (
        f"{API}/deploy/00000000-0000-0000-0000-000000000000/events",
        f"{API}/job/no-such-job/0.0.1/logs/stream",
        f"{API}/job/stream-adder/9.x/logs/stream",
    ):
        r = platform.client.get(path)
        assert r.status_code == 404 and r.json()["type"] == "NotFound", r.text
    r = platform.client.get(f"{log_stream}?tail=-1")
    assert r.status_code == 400 and r.json()["type"] == "InvalidRequest"
    bare.close()


# ---- following a log (last of the platform's tests: it deletes the job) ----------------------------


def _follower_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "log-stream stream-adder 0.0.1"]


def test_a_client_that_disconnects_stops_following(platform: Platform, adder: Deployed) -> None:
    assert not _follower_threads()
    with (
        httpx.Client(base_url=platform.base_url, timeout=10) as client,
        client.stream("GET", f"{API}/job/stream-adder/0.x/logs/stream", headers=platform.headers()) as r,
    ):
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["cache-control"] == "no-cache"
        first = next(parse_sse(r.iter_lines()))
        assert first.comment == "log of stream-adder 0.0.1"  # the alias resolved
        deadline = time.monotonic() + 5
        while not _follower_threads():
            assert time.monotonic() < deadline
            time.sleep(0.02)
    # the client is gone: the follower lets go of the log with its next line
    deadline = time.monotonic() + 10
    while _follower_threads():
        assert time.monotonic() < deadline, "the follower outlived its client"
        platform.call("stream-adder", [1])
        time.sleep(0.1)


def test_following_a_log_shows_the_tail_then_calls_as_they_happen_until_the_job_is_deleted(
    platform: Platform, adder: Deployed
) -> None:
    platform.call("stream-adder", [1, 2])  # some history
    tail = platform.client.get(f"{API}/job/stream-adder/0.0.1/logs?tail=5").json()["logs"].splitlines()
    assert len(tail) == 5

    reader = platform.follow("stream-adder", "latest", tail=5)
    assert reader.status == 200
    assert [(reader.next() or Event()).data for _ in range(5)] == tail

    # the server's event loop is not held up by a stream that waits for lines
    started = time.monotonic()
    assert platform.client.get(f"{API}/info").status_code == 200
    assert time.monotonic() - started < 2

    for n in range(3):
        assert platform.call("stream-adder", [n, 40]) == n + 40
    accessed: list[str] = []
    while len(accessed) < 3:
        event = reader.next()
        assert event is not None and event.event == "message"
        if '"POST /api/v1/perform" 200' in event.data:
            accessed.append(event.data)
    assert all(line.startswith("[replica ") and "trackside.access" in line for line in accessed)

    r = platform.client.delete(f"{API}/job/stream-adder/0.0.1")
    assert r.status_code == 200, r.text
    rest = reader.rest(timeout=15)
    assert rest[-1].event == "end" and rest[-1].json() == {"reason": "stopped"}
    last_line = _log_lines(rest)[-1]
    assert last_line.startswith("[runner] ") and last_line.endswith(" stopped")
    assert platform.client.get(f"{API}/job/stream-adder/0.0.1/logs/stream").status_code == 404


# ---- the pieces -----------------------------------------------------------------------------------------


def test_event_encoding() -> None:
    assert sse("plain") == b"data: plain\n\n"
    assert sse("a\r\nb\rc\nd", event="log", event_id="1.2.3") == (
        b"id: 1.2.3\nevent: log\ndata: a\ndata: b\ndata: c\ndata: d\n\n"
    )
    assert sse("lone \ud800 surrogate") == b"data: lone ? surrogate\n\n"
    assert [e.data for e in parse_sse(sse("x\ny").decode().split("\n"))] == ["x\ny"]


def test_tail_and_follow_overlap() -> None:
    assert _overlap(["a", "b", "c"], []) == 0
    assert _overlap(["a", "b", "c"], ["d"]) == 0
    assert _overlap(["a", "b", "c"], ["c", "d"]) == 1
    assert _overlap(["a", "b", "c"], ["b", "c", "d"]) == 2
    assert _overlap(["a", "b"], ["a", "b"]) == 2
    assert _overlap(["x", "x"], ["x", "x", "x"]) == 2


def test_cursor() -> None:
    assert _Cursor.parse("3.120.1") == _Cursor(3, 120, 1, False)
    assert str(_Cursor(3, 120, 1, True)) == "3.120.1.end"
    for junk in (None, "", "1.2", "a.b.c", "1.2.3.4", "-1.0.0", "9" * 40 + ".0.0"):
        assert _Cursor.parse(junk) == _Cursor()


class FakeLog:
    """A version's log: `follow` subscribes at once, `logs` reads what was written, `write`
    appends and tells the followers; `between` lines are written right after a subscription
    (before the tail is read), as a busy job would."""

    def __init__(self, lines: list[str], between: list[str] | None = None) -> None:
        self.lines = list(lines)
        self.between = list(between or [])
        self.followers: list[queue.Queue[str | None]] = []

    def follow(self, name: str, version: str) -> Iterator[str]:
        lines: queue.Queue[str | None] = queue.Queue()
        self.followers.append(lines)
        for line in self.between:
            self.write(line)

        def drain() -> Iterator[str]:
            while (line := lines.get()) is not None:
                yield line

        return drain()

    def logs(self, name: str, version: str, tail: int) -> list[str]:
        return self.lines[-tail:]

    def write(self, line: str) -> None:
        self.lines.append(line)
        for follower in self.followers:
            follower.put(line)

    def close(self) -> None:
        for follower in self.followers:
            follower.put(None)


def _collect(log: FakeLog, tail: int, act: Any = None) -> list[Event]:
    async def run() -> list[Event]:
        chunks: list[bytes] = []
        events = _log_events(log, "job", "1.0.0", tail)
        chunks.append(await anext(events))  # the opening comment
        chunks.append(await anext(events))  # the first line: the follower runs
        if act is not None:
            await act()
        async for chunk in events:
            chunks.append(chunk)
        text = b"".join(chunks).decode()
        return [e for e in parse_sse(text.split("\n")) if e.comment is None]

    return asyncio.run(asyncio.wait_for(run(), 10))


def test_lines_written_while_the_tail_is_read_are_sent_once() -> None:
    log = FakeLog(["a", "b"], between=["c", "d"])

    async def more() -> None:
        log.write("e")
        await asyncio.sleep(0.1)
        log.close()

    events = _collect(log, tail=3, act=more)
    assert [e.data for e in events if e.event == "message"] == ["b", "c", "d", "e"]
    assert events[-1].event == "end"


def test_a_slow_reader_loses_lines_and_is_told_how_many(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(streams, "FOLLOW_BUFFER", 5)
    log = FakeLog([], between=["first"])

    async def flood() -> None:
        for n in range(50):
            log.write(f"line {n}")
        await asyncio.sleep(0.3)  # the reader does not read: the feed fills up, then drops
        log.close()

    events = _collect(log, tail=0, act=flood)
    lines = [e.data for e in events if e.event == "message"]
    dropped = [e.json()["lines"] for e in events if e.event == "dropped"]
    assert lines[0] == "first" and dropped and len(lines) <= 1 + 5
    assert len(lines) - 1 + sum(dropped) == 50
    assert lines[1:] == sorted(lines[1:], key=lambda line: int(line.split()[1]))
    assert events[-1].event == "end"
