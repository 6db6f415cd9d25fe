"""Deployments: phases in order with start times, warnings, an appended build log, the outcome."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from lifecycle.store import Database, NotFound
from lifecycle.store.deployments import (
    add_warning,
    append_build_log,
    create_deployment,
    finish_deployment,
    get_deployment,
    in_progress_deployments,
    list_deployments,
    require_deployment,
    start_phase,
)
from lifecycle.store.models import DeploymentStatus


def _new(db: Database, version: str = "1.0.0") -> str:
    with db.session() as session:
        return create_deployment(
            session, job_name="adder", job_version=version, manifest_yaml="name: adder\n", deployed_by="alice"
        ).id


def test_a_deployment_from_start_to_done(database: Database) -> None:
    deployment_id = _new(database)
    t0 = datetime(2030, 1, 1, tzinfo=UTC)
    t1 = datetime(2030, 1, 1, 0, 0, 5, tzinfo=UTC)
    with database.session() as session:
        start_phase(session, deployment_id, "fetching the source code", now=t0)
        append_build_log(session, deployment_id, "line 1\n")
    with database.session() as session:
        start_phase(session, deployment_id, "building the environment", now=t1)
        append_build_log(session, deployment_id, "line 2\n")
        add_warning(session, deployment_id, "no input examples")
    with database.session() as session:
        assert [d.id for d in in_progress_deployments(session)] == [deployment_id]
        finish_deployment(session, deployment_id, DeploymentStatus.DONE)

    with database.session() as session:
        deployment = require_deployment(session, deployment_id)
        assert deployment.status is DeploymentStatus.DONE
        assert deployment.phase == "done"
        assert deployment.phases == [
            {"name": "fetching the source code", "started_at": t0.isoformat()},
            {"name": "building the environment", "started_at": t1.isoformat()},
        ]
        assert deployment.warnings == ["no input examples"]
        assert deployment.build_log == "line 1\nline 2\n"
        assert (deployment.deployed_by, deployment.force, deployment.error) == ("alice", False, None)
        assert deployment.finished_at is not None
        assert in_progress_deployments(session) == []


def test_a_failed_deployment_keeps_its_error(database: Database) -> None:
    deployment_id = _new(database)
    with database.session() as session:
        finish_deployment(session, deployment_id, DeploymentStatus.FAILED, error="requirement nope not found")
    with database.session() as session:
        deployment = require_deployment(session, deployment_id)
        assert (deployment.status, deployment.error) == (
            DeploymentStatus.FAILED,
            "requirement nope not found",
        )
        with pytest.raises(ValueError):
            finish_deployment(session, deployment_id, DeploymentStatus.IN_PROGRESS)


def test_listing_and_missing_deployments(database: Database) -> None:
    first, second = _new(database, "1.0.0"), _new(database, "2.0.0")
    with database.session() as session:
        assert {d.id for d in list_deployments(session, "adder")} == {first, second}
        assert [d.id for d in list_deployments(session, "adder", "2.0.0")] == [second]
        assert list_deployments(session, "other") == []
        assert get_deployment(session, "00000000-0000-0000-0000-000000000000") is None
        with pytest.raises(NotFound):
            start_phase(session, "00000000-0000-0000-0000-000000000000", "x")
