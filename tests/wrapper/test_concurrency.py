"""max_concurrency / max_concurrency_queue under real concurrent HTTP requests."""

from __future__ import annotations

import asyncio
import re
import socket
import time
from pathlib import Path

import httpx

from tests.conftest import JobRunner, RunningJob, write_job

COUNTING_JOB = """
import asyncio
import threading
import time

class Counting:
    def __init__(self):
        self.lock = threading.Lock()
        self.seq = 0
        self.active = 0
        self.peak = 0
        self.threads = set()

    def perform(self, sleep: float = 0.5, tag: str = ""):
        with self.lock:
            self.seq += 1
            order = self.seq
            self.active += 1
            self.peak = max(self.peak, self.active)
            self.threads.add(threading.current_thread().name)
        time.sleep(sleep)
        with self.lock:
            self.active -= 1
        return {"order": order, "tag": tag}

    def auxiliary_endpoints(self):
        return {"/stats": self.stats, "/async-sleep": self.async_sleep}

    def stats(self):
        return {"peak": self.peak, "threads": len(self.threads)}

    async def async_sleep(self, sleep: float = 0.3):
        self.active += 1
        self.peak = max(self.peak, self.active)
        await asyncio.sleep(sleep)
        self.active -= 1
        return "slept"
"""


def _job(tmp_path: Path, run_job: JobRunner, limit: int, queue: int | None) -> RunningJob:
    extra = f"  max_concurrency: {limit}\n" + (
        f"  max_concurrency_queue: {queue}\n" if queue is not None else ""
    )
    return run_job(write_job(tmp_path / "counting", COUNTING_JOB, manifest_extra=extra))


def _metric(job: RunningJob, name: str) -> float:
    text = job.client.get("/metrics").text
    match = re.search(rf"^{name} (\S+)$", text, re.M)
    assert match, f"{name} not in metrics"
    return float(match.group(1))


def _wait_metric(job: RunningJob, name: str, value: float, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while _metric(job, name) != value:
        assert time.monotonic() < deadline, f"{name} never reached {value}"
        time.sleep(0.01)


async def _burst(url: str, n: int, payload: dict) -> list[tuple[httpx.Response, float]]:
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=httpx.Limits(max_connections=n)) as client:
        start = time.monotonic()

        async def one() -> tuple[httpx.Response, float]:
            r = await client.post("/api/v1/perform", json=payload)
            return r, time.monotonic() - start

        return await asyncio.gather(*(one() for _ in range(n)))


def test_queue_full_gets_429_at_once(tmp_path: Path, run_job: JobRunner) -> None:
    job = _job(tmp_path, run_job, 1, 2)
    results = asyncio.run(_burst(job.url, 10, {"sleep": 0.6}))
    ok = [r for r, _ in results if r.status_code == 200]
    rejected = [(r, t) for r, t in results if r.status_code == 429]
    assert len(ok) == 3 and len(rejected) == 7, [r.status_code for r, _ in results]
    for r, elapsed in rejected:
        assert elapsed < 0.6, "a rejection waited for the running call"
        assert r.headers["retry-after"] == "1"
        assert r.json()["type"] == "TooManyRequests"
        assert "1 request(s) at a time and at most 2 more may wait" in r.json()["error"]
    assert sorted(r.json()["order"] for r in ok) == [1, 2, 3]
    assert _metric(job, "job_rejected_requests_total") == 7
    assert (
        'job_requests_total{endpoint="/api/v1/perform",status="4XX"} 7.0' in job.client.get("/metrics").text
    )


def test_waiting_calls_run_in_arrival_order(tmp_path: Path, run_job: JobRunner) -> None:
    job = _job(tmp_path, run_job, 1, 5)

    async def scenario() -> dict[str, int]:
        async with httpx.AsyncClient(base_url=job.url, timeout=30) as client:
            tasks = {}
            for i, tag in enumerate("ABCDE"):
                tasks[tag] = asyncio.create_task(
                    client.post("/api/v1/perform", json={"sleep": 0.3 if tag == "A" else 0.05, "tag": tag})
                )
                # each call is queued before the next is sent, so arrival order is certain
                await asyncio.to_thread(_wait_metric, job, "job_requests_queued", float(i))
            return {tag: (await t).json()["order"] for tag, t in tasks.items()}

    assert asyncio.run(scenario()) == {"A": 1, "B": 2, "C": 3, "D": 4, "E": 5}


def test_rejection_happens_before_the_body_is_read(tmp_path: Path, run_job: JobRunner) -> None:
    job = _job(tmp_path, run_job, 1, 0)
    port = int(job.url.rsplit(":", 1)[1])

    async def scenario() -> bytes:
        async with httpx.AsyncClient(base_url=job.url, timeout=30) as client:
            running = asyncio.create_task(client.post("/api/v1/perform", json={"sleep": 2}))
            await asyncio.to_thread(_wait_metric, job, "job_requests_in_flight", 1.0)
            # headers announce a body that is never sent: only a refusal that does not read it can answer
            with socket.create_connection(("127.0.0.1", port), timeout=1.5) as sock:
                sock.sendall(
                    b"POST /api/v1/perform HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 5000\r\n\r\n"
                )
                answer = sock.recv(4096)
            assert (await running).status_code == 200
            return answer

    answer = asyncio.run(scenario())
    assert answer.startswith(b"HTTP/1.1 429")
    assert b"retry-after: 1" in answer.lower()


def test_health_and_metrics_do_not_wait_behind_user_work(tmp_path: Path, run_job: JobRunner) -> None:
    job = _job(tmp_path, run_job, 1, 3)

    async def scenario() -> list[float]:
        async with httpx.AsyncClient(base_url=job.url, timeout=30) as client:
            calls = [
                asyncio.create_task(client.post("/api/v1/perform", json={"sleep": 1.5})) for _ in range(4)
            ]
            await asyncio.to_thread(_wait_metric, job, "job_requests_queued", 3.0)
            timings = []
            for path in (
                "/live",
                "/ready",
                "/health",
                "/metrics",
                "/docs",
                "/openapi.json",
                "/api/v1/parameters",
            ):
                start = time.monotonic()
                r = await client.get(path)
                assert r.status_code == 200, path
                timings.append(time.monotonic() - start)
            await asyncio.gather(*calls)
            return timings

    assert max(asyncio.run(scenario())) < 1.0


def test_threads_are_capped_at_max_concurrency(tmp_path: Path, run_job: JobRunner) -> None:
    job = _job(tmp_path, run_job, 3, None)
    results = asyncio.run(_burst(job.url, 12, {"sleep": 0.2}))
    assert all(r.status_code == 200 for r, _ in results)
    stats = job.client.post("/api/v1/stats").json()
    assert stats == {"peak": 3, "threads": 3}


def test_async_methods_are_capped_too(tmp_path: Path, run_job: JobRunner) -> None:
    job = _job(tmp_path, run_job, 2, None)

    async def scenario() -> list[int]:
        async with httpx.AsyncClient(base_url=job.url, timeout=30) as client:
            rs = await asyncio.gather(
                *(client.post("/api/v1/async-sleep", json={"sleep": 0.2}) for _ in range(6))
            )
            return [r.status_code for r in rs]

    assert asyncio.run(scenario()) == [200] * 6
    assert job.client.post("/api/v1/stats").json()["peak"] == 2


def test_a_caller_leaving_the_queue_frees_its_place(tmp_path: Path, run_job: JobRunner) -> None:
    job = _job(tmp_path, run_job, 1, 1)
    port = int(job.url.rsplit(":", 1)[1])

    async def scenario() -> None:
        async with httpx.AsyncClient(base_url=job.url, timeout=30) as client:
            running = asyncio.create_task(client.post("/api/v1/perform", json={"sleep": 0.8}))
            await asyncio.to_thread(_wait_metric, job, "job_requests_in_flight", 1.0)
            sock = socket.create_connection(("127.0.0.1", port))
            body = b'{"sleep": 0}'
            sock.sendall(
                b"POST /api/v1/perform HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
                % (len(body), body)
            )
            await asyncio.to_thread(_wait_metric, job, "job_requests_queued", 1.0)
            sock.close()
            assert (await running).status_code == 200
            await asyncio.to_thread(_wait_metric, job, "job_requests_in_flight", 0.0)
            await asyncio.to_thread(_wait_metric, job, "job_requests_queued", 0.0)
            follow = await client.post("/api/v1/perform", json={"sleep": 0})
            assert follow.status_code == 200

    asyncio.run(scenario())
