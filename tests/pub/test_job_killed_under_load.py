"""A job process killed while callers keep the gateway busy (a real `trackside up`, 32 concurrent
callers): requests in flight get 502 JSON, new ones 502/503 at once (never a hang) until the
supervisor has the job back, then 200 again."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.conftest import SAMPLE_JOBS
from tests.gitservers import file_url, make_repo
from tests.lifecycle.platform import TracksideUp, job_manifest

CALLERS = 32


@dataclass
class Answer:
    sent: float  # seconds since the load started
    received: float
    status: int  # 0: no answer within the client's timeout (a hang)
    body: object


async def load(
    url: str, token: str, kill_at: float, kill: Callable[[], None], limit: float
) -> tuple[list[Answer], float]:
    """CALLERS callers; `kill()` after `kill_at` seconds; until 200s have come back for a second
    after the kill (or `limit` seconds). The answers, and when the kill happened."""
    answers: list[Answer] = []
    started = time.monotonic()
    killed_at: list[float] = []
    recovered_at: list[float] = []

    async def caller(client: httpx.AsyncClient) -> None:
        while True:
            now = time.monotonic() - started
            if now > limit or (recovered_at and now > recovered_at[0] + 1.0):
                return
            try:
                r = await client.post(url, json={"numbers": [40, 2]})
                body: object = r.json()
                status = r.status_code
            except httpx.TimeoutException:
                status, body = 0, None
            answers.append(Answer(now, time.monotonic() - started, status, body))
            if killed_at and status == 200 and now > killed_at[0] and not recovered_at:
                recovered_at.append(now)

    async def killer() -> None:
        await asyncio.sleep(kill_at)
        kill()
        killed_at.append(time.monotonic() - started)

    headers = {"X-Racetrack-Auth": token}
    limits = httpx.Limits(max_connections=CALLERS, max_keepalive_connections=CALLERS)
    async with httpx.AsyncClient(headers=headers, timeout=10, limits=limits) as client:
        await asyncio.gather(killer(), *(caller(client) for _ in range(CALLERS)))
    return answers, killed_at[0]


def test_a_job_killed_during_load(tmp_path: Path) -> None:
    up = TracksideUp(tmp_path / "data", tmp_path / "up.log")
    try:
        repo = make_repo(
            tmp_path / "adder", {"entrypoint.py": (SAMPLE_JOBS / "adder" / "entrypoint.py").read_text()}
        )
        done = up.wait(up.deploy(job_manifest("adder", file_url(repo))))
        assert done["status"] == "done", done
        [pid] = up.job_pids("adder", "0.0.1")
        url = f"{up.url}/pub/job/adder/latest/api/v1/perform"

        answers, killed_at = asyncio.run(
            load(url, up.token, kill_at=2.0, kill=lambda: os.kill(pid, signal.SIGKILL), limit=60)
        )
        statuses = Counter(a.status for a in answers)
        before = Counter(a.status for a in answers if a.received < killed_at)
        after = [a for a in answers if a.sent >= killed_at]

        assert set(before) == {200}, [a for a in answers if a.status != 200][:3]  # steady load first
        assert statuses[0] == 0, statuses  # no request hung
        assert set(statuses) <= {200, 502, 503}, statuses
        failures = [a for a in answers if a.status != 200]
        assert failures, f"the kill went unnoticed: {statuses}"
        for failure in failures:
            assert isinstance(failure.body, dict) and failure.body["error"] and failure.body["requestId"], (
                failure
            )
        assert after and after[-1].status == 200, Counter(a.status for a in after)  # back after the restart
        deadline = time.monotonic() + 10  # the supervisor's log line naming the new process
        while not up.job_pids("adder", "0.0.1") - {pid}:
            assert time.monotonic() < deadline, "no new job process"
            time.sleep(0.1)
        print(f"answers after the kill: {Counter(a.status for a in after)}")  # shown with -s
    finally:
        up.stop()
