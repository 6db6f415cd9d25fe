"""The lifecycle's /metrics: deployments by result, phase durations and jobs by status, from the store."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from lifecycle.api.app import create_app
from lifecycle.control_plane import ControlPlane
from lifecycle.lifecycle_metrics import LifecycleMetrics, phase_durations
from lifecycle.store import deployments as deployment_store
from lifecycle.store import jobs as job_store
from lifecycle.store.column_types import utcnow
from lifecycle.store.database import Database
from lifecycle.store.models import DeploymentStatus, JobStatus
from tests.conftest import SAMPLE_JOBS
from tests.db import count_queries
from tests.gitservers import file_url, make_repo
from tests.lifecycle.platform import lifecycle_config

FETCH, BUILD, START, INIT, CHECK, DONE = (
    "fetching the source code",
    "building the environment",
    "starting the job",
    "initialising the entrypoint",
    "checking the input examples",
    "done",
)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


# ---- phase durations --------------------------------------------------------------------------

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


def _phases(*starts: tuple[str, float]) -> list[dict[str, Any]]:
    return [{"name": name, "started_at": (T0 + timedelta(seconds=at)).isoformat()} for name, at in starts]


def test_a_phase_lasts_until_the_next_starts_and_the_last_until_the_end() -> None:
    done = _phases((FETCH, 0), (BUILD, 2), (START, 5.5), (DONE, 6))
    assert phase_durations(done, T0 + timedelta(seconds=6)) == [(FETCH, 2), (BUILD, 3.5), (START, 0.5)]
    failed = _phases((FETCH, 0), (BUILD, 2))
    assert phase_durations(failed, T0 + timedelta(seconds=10)) == [(FETCH, 2), (BUILD, 8)]
    assert phase_durations(failed, None) == [(FETCH, 2)]  # unfinished: the last phase has no end yet
    malformed: list[Any] = [{"name": FETCH}, *_phases((BUILD, 1)), {"started_at": "yesterday"}, "x"]
    assert phase_durations(malformed, T0 + timedelta(seconds=4)) == [(BUILD, 3)]
    assert phase_durations([], T0) == []


# ---- from the store (SQLite and PostgreSQL) ----------------------------------------------------


def _deployment(
    db: Database,
    name: str,
    status: DeploymentStatus | None,
    starts: list[tuple[str, float]],
    end: float,
    at: datetime,
) -> None:
    with db.session() as session:
        deployment = deployment_store.create_deployment(
            session, job_name=name, job_version="1.0.0", manifest_yaml="name: x\n"
        )
        deployment.created_at = at
        for phase, offset in starts:
            deployment_store.start_phase(session, deployment.id, phase, now=at + timedelta(seconds=offset))
        if status is not None:
            deployment_store.finish_deployment(
                session, deployment.id, status, now=at + timedelta(seconds=end)
            )


def test_metrics_from_the_store_count_each_deployment_once_and_survive_a_restart(database: Database) -> None:
    now = utcnow()
    _deployment(database, "ok", DeploymentStatus.DONE, [(FETCH, 0), (BUILD, 1), (DONE, 4)], 4, now)
    _deployment(database, "bad", DeploymentStatus.FAILED, [(FETCH, 0), (BUILD, 0.5)], 60, now)
    _deployment(database, "busy", None, [(FETCH, 0)], 0, now)
    with database.session() as session:
        for name, status in (("a", JobStatus.RUNNING), ("b", JobStatus.RUNNING), ("c", JobStatus.ERROR)):
            job_store.create_job(
                session,
                name=name,
                version="1.0.0",
                manifest_yaml="",
                manifest={},
                owner_email="o@x.io",
                status=status,
            )

    metrics = LifecycleMetrics(database)
    with count_queries(database.engine) as statements:
        samples = parse(metrics.render().decode())
    assert len(statements) == 3, statements  # deployments by status, jobs by status, finished deployments
    assert len([s for s in statements if "FROM jobs" in s]) == 1
    assert value(samples, "lifecycle_store_up") == 1
    assert value(samples, "lifecycle_deployments_total", result="done") == 1
    assert value(samples, "lifecycle_deployments_total", result="failed") == 1
    assert value(samples, "lifecycle_deployments_in_progress") == 1
    assert [value(samples, "lifecycle_jobs", status=s.value) for s in JobStatus] == [0, 2, 1, 0, 0]

    phase = "lifecycle_deployment_phase_duration_seconds"
    assert value(samples, f"{phase}_count", phase=FETCH) == 2
    assert value(samples, f"{phase}_sum", phase=FETCH) == pytest.approx(1.5)
    assert value(samples, f"{phase}_count", phase=BUILD) == 2
    assert value(samples, f"{phase}_sum", phase=BUILD) == pytest.approx(62.5)  # 3 s done, 59.5 s failed
    assert value(samples, f"{phase}_bucket", phase=BUILD, le="5.0") == 1
    assert value(samples, f"{phase}_bucket", phase=BUILD, le="60.0") == 2
    assert value(samples, f"{phase}_count", phase=DONE) is None  # `done` is a marker, not a phase
    total = "lifecycle_deployment_duration_seconds"
    assert value(samples, f"{total}_sum", result="done") == pytest.approx(4)
    assert value(samples, f"{total}_sum", result="failed") == pytest.approx(60)

    # later scrapes add what finished since, each deployment once, also one committed late
    _deployment(
        database, "ok2", DeploymentStatus.DONE, [(FETCH, 0), (DONE, 2)], 2, now + timedelta(seconds=1)
    )
    assert value(parse(metrics.render().decode()), f"{phase}_count", phase=FETCH) == 3
    _deployment(database, "late", DeploymentStatus.FAILED, [(FETCH, 0)], 1, now - timedelta(minutes=5))
    samples = parse(metrics.render().decode())
    assert value(samples, f"{phase}_count", phase=FETCH) == 4
    assert value(samples, f"{total}_count", result="failed") == 2
    assert value(samples, "lifecycle_deployments_total", result="failed") == 2

    # a restarted lifecycle reports the same cumulative values: no counter reset
    restarted = parse(LifecycleMetrics(database).render().decode())
    assert {k: v for k, v in restarted.items() if k[0].startswith("lifecycle_")} == {
        k: v for k, v in samples.items() if k[0].startswith("lifecycle_")
    }


def test_an_unreadable_store_still_answers_with_process_metrics(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'trackside.db'}")
    metrics = LifecycleMetrics(db)
    with db.engine.begin() as connection:
        connection.exec_driver_sql("DROP TABLE jobs")
    samples = parse(metrics.render().decode())
    assert value(samples, "lifecycle_store_up") == 0
    assert any(name.startswith("python_") for name, _ in samples)
    db.dispose()


# ---- through the API, after real deploys ------------------------------------------------------


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, str]]:
    data = tmp_path_factory.mktemp("lifecycle-metrics")
    config = lifecycle_config(data)
    plane = ControlPlane(config, pub_url="http://127.0.0.1:7200/pub")
    report = plane.start()
    assert report.admin_token
    with TestClient(create_app(plane)) as client:
        yield client, report.admin_token
    plane.stop()


def _deploy(client: TestClient, token: str, name: str, repo: Path) -> dict[str, Any]:
    manifest = {
        "name": name,
        "owner_email": "sample@example.com",
        "jobtype": "python3:latest",
        "git": {"remote": file_url(repo)},
        "jobtype_extra": {"entrypoint_path": "entrypoint.py"},
    }
    headers = {"X-Racetrack-Auth": token}
    r = client.post("/api/v1/deploy", json={"manifest": manifest}, headers=headers)
    assert r.status_code == 202, r.text
    deadline = time.monotonic() + 120
    while True:
        body: dict[str, Any] = client.get(f"/api/v1/deploy/{r.json()['id']}", headers=headers).json()
        if body["status"] != "in_progress":
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.1)


def test_metrics_after_a_successful_and_a_failed_deploy(
    platform: tuple[TestClient, str], tmp_path: Path
) -> None:
    client, token = platform
    before = parse(client.get("/metrics").text)  # no token needed
    assert value(before, "lifecycle_deployments_total", result="done") == 0

    adder = make_repo(
        tmp_path / "adder", {"entrypoint.py": (SAMPLE_JOBS / "adder" / "entrypoint.py").read_text()}
    )
    assert _deploy(client, token, "adder", adder)["status"] == "done"
    broken = make_repo(tmp_path / "broken", {"entrypoint.py": "import not_a_module_anywhere\n"})
    failed = _deploy(client, token, "broken", broken)
    assert failed["status"] == "failed" and failed["phase"] == INIT

    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    assert token not in r.text
    samples = parse(r.text)
    assert value(samples, "lifecycle_deployments_total", result="done") == 1
    assert value(samples, "lifecycle_deployments_total", result="failed") == 1
    assert value(samples, "lifecycle_deployments_in_progress") == 0
    assert value(samples, "lifecycle_jobs", status="running") == 1
    assert value(samples, "lifecycle_jobs", status="starting") == 0
    phase = "lifecycle_deployment_phase_duration_seconds_count"
    assert {p: value(samples, phase, phase=p) for p in (FETCH, BUILD, START, INIT, CHECK, DONE)} == {
        FETCH: 2,
        BUILD: 2,
        START: 2,
        INIT: 2,
        CHECK: 1,
        DONE: None,
    }
    assert value(samples, "lifecycle_deployment_duration_seconds_count", result="failed") == 1
    assert (value(samples, "process_resident_memory_bytes") or 0) > 0
    assert value(samples, "process_cpu_seconds_total") is not None

    again = parse(client.get("/lifecycle/metrics").text)  # the same app's metrics, under /lifecycle too
    assert value(again, phase, phase=FETCH) == 2
    assert value(again, "lifecycle_deployments_total", result="done") == 1
