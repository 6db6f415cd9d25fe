"""Alembic's head equals the models, on both backends; SQLite runs in WAL mode."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from alembic import op
from sqlalchemy import CheckConstraint, inspect, text

from lifecycle.config import LifecycleConfig
from lifecycle.store import migration
from lifecycle.store.database import SQLITE_BUSY_TIMEOUT_MS, Database, normalize_url
from lifecycle.store.models import Base
from tests.db import BACKENDS, MakeDatabase


@pytest.mark.parametrize("backend", BACKENDS)
def test_upgrade_of_an_empty_database_gives_the_models_schema(
    make_database: MakeDatabase, backend: str
) -> None:
    db = make_database(backend, migrate=False)
    assert migration.current_revision(db.engine) is None
    assert inspect(db.engine).get_table_names() == []

    db.upgrade()

    assert migration.current_revision(db.engine) == migration.head_revision()
    assert migration.schema_differences(db.engine) == []
    tables = set(inspect(db.engine).get_table_names())
    assert tables == set(Base.metadata.tables) | {"alembic_version"}


@pytest.mark.parametrize("backend", BACKENDS)
def test_constraints_autogenerate_does_not_compare_are_there_too(
    make_database: MakeDatabase, backend: str
) -> None:
    db = make_database(backend)
    inspector = inspect(db.engine)
    for table in Base.metadata.sorted_tables:
        expected = {c.name for c in table.constraints if isinstance(c, CheckConstraint)}
        assert {c["name"] for c in inspector.get_check_constraints(table.name)} == expected, table.name
    with db.engine.connect() as connection:
        if backend == "sqlite":
            sql = connection.execute(
                text("SELECT sql FROM sqlite_master WHERE type = 'index' AND name = 'uq_permissions_grant'")
            ).scalar_one()
        else:
            sql = connection.execute(
                text("SELECT indexdef FROM pg_indexes WHERE indexname = 'uq_permissions_grant'")
            ).scalar_one()
    assert "UNIQUE" in sql.upper() and "coalesce" in sql.lower()


@pytest.mark.parametrize("backend", BACKENDS)
def test_downgrade_to_base_and_upgrade_again(make_database: MakeDatabase, backend: str) -> None:
    db = make_database(backend)
    migration.downgrade(db.engine, "base")
    assert set(inspect(db.engine).get_table_names()) <= {"alembic_version"}
    db.upgrade()
    db.upgrade()  # at head already: nothing to do
    assert migration.schema_differences(db.engine) == []


def test_a_fresh_sqlite_database_is_created_and_migrated_on_first_use(tmp_path: Path) -> None:
    config = LifecycleConfig.from_env(environ={"TRACKSIDE_DATA_DIR": str(tmp_path / "data")})
    db = Database.from_config(config)
    try:
        assert (tmp_path / "data" / "trackside.db").is_file()
        assert migration.current_revision(db.engine) == migration.head_revision()
        with db.session() as session:
            assert session.execute(text("SELECT count(*) FROM jobs")).scalar_one() == 0
    finally:
        db.dispose()


def test_sqlite_runs_in_wal_mode_with_foreign_keys_and_a_busy_timeout(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        with db.engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == SQLITE_BUSY_TIMEOUT_MS
        assert (tmp_path / "x.db-wal").exists()
    finally:
        db.dispose()


def test_postgresql_urls_get_the_psycopg_driver() -> None:
    assert normalize_url("postgresql://u@h/db").drivername == "postgresql+psycopg"
    assert normalize_url("postgres://u@h/db").drivername == "postgresql+psycopg"
    assert normalize_url("sqlite:///x.db").drivername == "sqlite"


def test_repr_hides_the_password() -> None:
    db = Database("postgresql://user:hunter2@127.0.0.1:1/db", migrate=False)
    assert "hunter2" not in repr(db)


def test_many_starts_opening_a_new_sqlite_file_at_once_all_succeed(tmp_path: Path) -> None:
    """Switching a new file to WAL needs it to itself, and SQLite refuses at once (no busy wait)
    while another connection is at it: each start must wait its turn, never fail."""
    for round_ in range(30):
        url = f"sqlite:///{tmp_path / f'new-{round_}.db'}"
        barrier = threading.Barrier(6)
        errors: list[BaseException] = []

        def start(
            url: str = url, barrier: threading.Barrier = barrier, errors: list[BaseException] = errors
        ) -> None:
            try:
                barrier.wait()
                Database(url).dispose()
            except BaseException as error:
                errors.append(error)

        threads = [threading.Thread(target=start) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == [], f"round {round_}"


@pytest.mark.parametrize("backend", BACKENDS)
def test_concurrent_first_starts_migrate_once(make_database: MakeDatabase, backend: str) -> None:
    url = make_database(backend, migrate=False).url
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def start() -> None:
        try:
            barrier.wait()
            Database(url).dispose()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    db = Database(url, migrate=False)
    try:
        assert migration.schema_differences(db.engine) == []
    finally:
        db.dispose()


def test_a_failed_sqlite_migration_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = Database(f"sqlite:///{tmp_path / 'x.db'}", migrate=False)
    try:
        real_create_table = op.create_table

        def failing_create_table(name: str, *args: Any, **kwargs: Any) -> Any:
            if name == "users":
                raise RuntimeError("disk on fire")
            return real_create_table(name, *args, **kwargs)

        monkeypatch.setattr(op, "create_table", failing_create_table)
        with pytest.raises(RuntimeError, match="disk on fire"):
            db.upgrade()
        assert inspect(db.engine).get_table_names() == []
    finally:
        db.dispose()


@pytest.mark.parametrize("backend", BACKENDS)
def test_subject_ids_are_never_reused_also_after_upgrading_from_0001(
    make_database: MakeDatabase, backend: str
) -> None:
    from lifecycle.auth.escs import create_esc, delete_esc
    from lifecycle.auth.subjects import esc_subject
    from lifecycle.auth.tokens import issue_token, list_tokens
    from lifecycle.store.models import SubjectType

    db = make_database(backend, migrate=False)
    db.upgrade("0001")
    with db.session() as session:  # data written under the old schema survives the upgrade
        kept = create_esc(session, "kept", actor="tests").id
        old = create_esc(session, "old", actor="tests")
        issue_token(session, esc_subject(old), actor="tests")
        old_id = old.id
    db.upgrade()
    with db.session() as session:
        assert delete_esc(session, "old", actor="tests")
    with db.session() as session:
        new = create_esc(session, "new", actor="tests")
        assert new.id not in (kept, old_id)
        assert list_tokens(session, SubjectType.ESC, new.id, include_revoked=True) == []
    assert migration.schema_differences(db.engine) == []
