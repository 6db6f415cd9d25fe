"""/metrics and the job's log: what operators see."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import JobRunner, RunningJob, start_job, write_job

JOB = """
import logging
log = logging.getLogger("metered")

class Metered:
    def __init__(self):
        self.calls = 0

    def perform(self, fail: bool = False):
        self.calls += 1
        log.info("call number %d", self.calls)
        log.debug("debug detail")
        if fail:
            raise RuntimeError("asked to fail")
        return self.calls

    def metrics(self):
        return [
            {"name": "metered_calls", "description": "Calls so far", "value": self.calls},
            {"name": "metered_zero", "value": 0},
            {"name": "metered_missing", "value": None},
            {"name": "metered_by_colour", "value": 2.5, "labels": {"colour": "blue"}},
            {"name": "metered_by_colour", "value": 1, "labels": {"colour": "red"}},
            {"name": "bad name!", "value": 1},
        ]
"""


@pytest.fixture(scope="module")
def metered(module_tmp: Path) -> Iterator[RunningJob]:
    job = start_job(write_job(module_tmp / "metered", JOB, name="metered"), module_tmp)
    yield job
    job.stop()


def _sample(text: str, series: str) -> float:
    match = re.search(rf"^{re.escape(series)} (\S+)$", text, re.M)
    assert match, f"{series} missing from:\n{text}"
    return float(match.group(1))


def test_request_metrics(metered: RunningJob) -> None:
    before = time.time()
    for _ in range(3):
        assert metered.client.post("/api/v1/perform", json={}).status_code == 200
    assert metered.client.post("/api/v1/perform", json={"fail": True}).status_code == 500
    assert metered.client.post("/api/v1/perform", json={"nope": 1}).status_code == 422
    for _ in range(5):
        metered.client.get("/live")
        metered.client.get("/health")
    text = metered.client.get("/pub/job/metered/1.2.3/metrics").text
    assert _sample(text, 'job_requests_total{endpoint="/api/v1/perform",status="2XX"}') == 3
    assert _sample(text, 'job_requests_total{endpoint="/api/v1/perform",status="5XX"}') == 1
    assert _sample(text, 'job_requests_total{endpoint="/api/v1/perform",status="4XX"}') == 1
    assert _sample(text, 'job_request_duration_seconds_count{endpoint="/api/v1/perform"}') == 5
    assert _sample(text, 'job_request_duration_seconds_bucket{endpoint="/api/v1/perform",le="+Inf"}') == 5
    assert "/live" not in text and "/health" not in text
    assert _sample(text, "job_requests_in_flight") == 0
    assert _sample(text, "job_requests_queued") == 0
    assert _sample(text, "job_last_call_timestamp_seconds") >= before
    assert 0 < _sample(text, "job_init_duration_seconds") < 30
    assert _sample(text, "process_resident_memory_bytes") > 0


def test_job_metrics_are_gauges(metered: RunningJob) -> None:
    metered.client.post("/api/v1/perform", json={})
    text = metered.client.get("/metrics").text
    assert "# HELP metered_calls Calls so far" in text
    assert "# TYPE metered_calls gauge" in text
    assert _sample(text, "metered_calls") >= 1
    assert _sample(text, "metered_zero") == 0
    assert "metered_missing" not in text
    assert _sample(text, 'metered_by_colour{colour="blue"}') == 2.5
    assert _sample(text, 'metered_by_colour{colour="red"}') == 1
    assert "bad name" not in text
    assert "invalid metric name 'bad name!'" in metered.logs()


def test_log_lines_carry_tracing_id_and_skip_probes(metered: RunningJob) -> None:
    metered.client.post("/api/v1/perform", json={}, headers={"X-Request-Tracing-Id": "obs-1"})
    logs = metered.wait_for_log('[obs-1] trackside.access: "POST /api/v1/perform" 200')
    assert re.search(r"^\S+ INFO \[obs-1\] metered: call number \d+$", logs, re.M)
    assert "debug detail" not in logs
    assert "GET /live" not in logs and "GET /metrics" not in logs and "GET /health" not in logs


def test_structured_logs_with_caller_and_level(tmp_path: Path, run_job: JobRunner) -> None:
    job_dir = write_job(tmp_path / "structured", JOB, name="structured")
    job = run_job(job_dir, env={"LOG_STRUCTURED": "true", "LOG_CALLER_NAME": "true", "LOG_LEVEL": "debug"})
    job.client.post(
        "/api/v1/perform", json={}, headers={"X-Request-Tracing-Id": "json-1", "X-Caller-Name": "User alice"}
    )
    job.wait_for_log('"logger":"trackside.access"')
    entries = [json.loads(line) for line in job.logs().splitlines() if line.startswith("{")]
    mine = [e for e in entries if e.get("tracing_id") == "json-1"]
    assert {e["logger"] for e in mine} == {"metered", "trackside.access"}
    assert all(e["caller"] == "User alice" for e in mine)
    debug = next(e for e in mine if e["message"] == "debug detail")
    assert debug["level"] == "DEBUG" and debug["time"].endswith("Z")
    assert all(line.startswith("{") for line in job.logs().splitlines() if line.strip())


def test_caller_is_left_out_unless_asked(metered: RunningJob) -> None:
    metered.client.post(
        "/api/v1/perform",
        json={},
        headers={"X-Request-Tracing-Id": "obs-2", "X-Caller-Name": "ESC secret-service"},
    )
    logs = metered.wait_for_log("[obs-2] trackside.access")
    assert "secret-service" not in logs


def test_warning_level_silences_access_log(tmp_path: Path, run_job: JobRunner) -> None:
    job = run_job(write_job(tmp_path / "quiet", JOB, name="quiet"), env={"LOG_LEVEL": "WARNING"})
    job.client.post("/api/v1/perform", json={"fail": True}, headers={"X-Request-Tracing-Id": "q-1"})
    logs = job.wait_for_log("asked to fail")
    assert "trackside.access" not in logs and "call number" not in logs


def test_log_lines_are_not_lost_when_the_job_stops(tmp_path: Path, run_job: JobRunner) -> None:
    job = run_job(write_job(tmp_path / "stopping", JOB, name="stopping"))
    for i in range(50):
        job.client.post("/api/v1/perform", json={}, headers={"X-Request-Tracing-Id": f"stop-{i}"})
    job.stop()
    logs = job.logs()
    assert all(f'[stop-{i}] trackside.access: "POST /api/v1/perform" 200' in logs for i in range(50))
    assert "Finished server process" in logs
