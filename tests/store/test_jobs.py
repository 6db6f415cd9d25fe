"""Jobs and job families: CRUD, uniqueness, listing in one query."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from lifecycle.secrets import SecretBox
from lifecycle.store import AlreadyExists, Database, NotFound
from lifecycle.store.jobs import (
    create_job,
    delete_job,
    ensure_family,
    get_family,
    get_job,
    list_families,
    list_job_summaries,
    list_jobs,
    record_job_call,
    require_job,
    set_job_status,
)
from lifecycle.store.models import JobStatus, SecretKind
from lifecycle.store.secret_records import load_secrets, save_secrets
from tests.db import count_queries

MANIFEST = {"name": "adder", "owner_email": "a@example.com", "jobtype": "python3:latest"}


def _create(db: Database, name: str = "adder", version: str = "1.0.0", **extra: Any) -> None:
    with db.session() as session:
        create_job(
            session,
            name=name,
            version=version,
            manifest_yaml=f"name: {name}\n",
            manifest={**MANIFEST, "name": name, "version": version},
            owner_email="a@example.com",
            **extra,
        )


def test_create_get_and_update_a_job(database: Database) -> None:
    _create(database, deployed_by="alice", labels={"team": "x"}, replicas=2)

    with database.session() as session:
        job = require_job(session, "adder", "1.0.0")
        assert job.status is JobStatus.STARTING
        assert job.manifest["version"] == "1.0.0"
        assert job.labels == {"team": "x"}
        assert (job.replicas, job.deployed_by, job.last_call_at) == (2, "alice", None)
        assert job.created_at.tzinfo is not None
        family = get_family(session, "adder")
        assert family is not None and job.family_id == family.id

    with database.session() as session:
        set_job_status(session, "adder", "1.0.0", JobStatus.ERROR, error="boom")
    with database.session() as session:
        job = require_job(session, "adder", "1.0.0")
        assert (job.status, job.error) == (JobStatus.ERROR, "boom")
        assert job.updated_at >= job.created_at


def test_versions_share_one_family(database: Database) -> None:
    _create(database, version="1.0.0")
    _create(database, version="1.1.0")
    _create(database, name="other")
    with database.session() as session:
        assert [f.name for f in list_families(session)] == ["adder", "other"]
        family = get_family(session, "adder")
        assert family is not None and ensure_family(session, "adder").id == family.id
        assert [(j.name, j.version) for j in list_jobs(session)] == [
            ("adder", "1.0.0"),
            ("adder", "1.1.0"),
            ("other", "1.0.0"),
        ]
        assert [j.version for j in list_jobs(session, "adder")] == ["1.0.0", "1.1.0"]


def test_the_same_version_twice_is_already_exists(database: Database) -> None:
    _create(database)
    with pytest.raises(AlreadyExists, match=r"job adder 1\.0\.0 already exists"):
        _create(database)
    with database.session() as session:
        assert len(list_jobs(session)) == 1


def test_missing_jobs(database: Database) -> None:
    with database.session() as session:
        assert get_job(session, "nope", "1.0.0") is None
        with pytest.raises(NotFound, match=r"job nope 1\.0\.0 not found"):
            require_job(session, "nope", "1.0.0")
        assert delete_job(session, "nope", "1.0.0") is False


def test_an_unknown_status_is_refused_by_the_database(database: Database) -> None:
    _create(database)
    with pytest.raises(IntegrityError), database.session() as session:
        session.execute(text("UPDATE jobs SET status = 'bogus'"))


def test_delete_removes_the_job_and_its_secrets(database: Database) -> None:
    box = SecretBox(SecretBox.generate_key())
    _create(database)
    _create(database, version="2.0.0")
    with database.session() as session:
        save_secrets(session, box, SecretKind.RUNTIME_ENV, {"A": "1"}, job=("adder", "1.0.0"))
        save_secrets(session, box, SecretKind.RUNTIME_ENV, {"B": "2"}, job=("adder", "2.0.0"))
    with database.session() as session:
        assert delete_job(session, "adder", "1.0.0") is True
    with database.session() as session:
        assert get_job(session, "adder", "1.0.0") is None
        assert dict(load_secrets(session, box, SecretKind.RUNTIME_ENV, job=("adder", "1.0.0"))) == {}
        assert dict(load_secrets(session, box, SecretKind.RUNTIME_ENV, job=("adder", "2.0.0"))) == {"B": "2"}
        assert get_family(session, "adder") is not None


def test_record_job_call(database: Database) -> None:
    _create(database)
    at = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    with database.session() as session:
        record_job_call(session, "adder", "1.0.0", at)
    with database.session() as session:
        assert require_job(session, "adder", "1.0.0").last_call_at == at


def test_listing_a_thousand_versions_is_one_query(database: Database) -> None:
    with database.session() as session:
        family = ensure_family(session, "big")
        session.execute(
            text(
                "INSERT INTO jobs (name, version, family_id, status, manifest_yaml, manifest, owner_email,"
                " deployment_timestamp, replicas, labels, created_at, updated_at) VALUES (:name, :version,"
                " :family_id, 'running', 'name: big', :manifest, 'a@example.com', 0, 1, '{}', :now, :now)"
            ),
            [
                {
                    "name": "big",
                    "version": f"1.0.{i}",
                    "family_id": family.id,
                    "manifest": '{"name": "big"}',
                    "now": datetime.now(UTC),
                }
                for i in range(1000)
            ],
        )
    for lister in (list_jobs, list_job_summaries):
        with database.session() as session, count_queries(database.engine) as statements:
            jobs = lister(session)
        assert len(jobs) == 1000
        assert len(statements) == 1 and statements[0].lstrip().upper().startswith("SELECT")


def test_summaries_match_the_jobs(database: Database) -> None:
    _create(database, version="1.0.0", deployed_by="alice")
    _create(database, name="other", infrastructure_target="local")
    with database.session() as session:
        summaries = list_job_summaries(session)
        jobs = list_jobs(session)
        assert [
            (s.name, s.version, s.status, s.deployed_by, s.infrastructure_target, s.updated_at)
            for s in summaries
        ] == [
            (j.name, j.version, j.status, j.deployed_by, j.infrastructure_target, j.updated_at) for j in jobs
        ]
        assert [s.version for s in list_job_summaries(session, "other")] == ["1.0.0"]
        assert summaries[0].created_at.tzinfo is not None
