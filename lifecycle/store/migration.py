"""Alembic, configured in code: `upgrade(engine)` brings any database to the models' schema.

To write a new revision after changing models.py, generate one against a database at head and
edit it: `make_revision(engine, "add column x")` (the file lands in migrations/versions/).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text

from lifecycle.store.models import Base

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
# any constant shared by every lifecycle process: serialises concurrent upgrades on PostgreSQL
_ADVISORY_LOCK_ID = 0x7472_6B73


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("file_template", "r%%(rev)s_%%(slug)s")
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError(f"no migrations in {MIGRATIONS_DIR}")
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    with engine.begin() as connection:
        _lock(connection)
        command.upgrade(alembic_config(connection), revision)


def downgrade(engine: Engine, revision: str) -> None:
    with engine.begin() as connection:
        _lock(connection)
        command.downgrade(alembic_config(connection), revision)


def schema_differences(engine: Engine) -> list[Any]:
    """What autogenerate would change to make the database match the models ([] when in step)."""
    with engine.connect() as connection, warnings.catch_warnings():
        # SQLite cannot reflect expression indexes (uq_permissions_grant); alembic warns and skips them
        warnings.filterwarnings("ignore", message=".*expression-based index.*")
        return list(compare_metadata(MigrationContext.configure(connection), Base.metadata))


def make_revision(engine: Engine, message: str) -> None:
    with engine.begin() as connection:
        rev_id = f"{int(head_revision()) + 1:04d}"
        command.revision(alembic_config(connection), message=message, autogenerate=True, rev_id=rev_id)


def _lock(connection: Connection) -> None:
    """Serialise concurrent upgrades (two processes starting on a fresh database) and keep each atomic."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _ADVISORY_LOCK_ID})
    elif connection.dialect.name == "sqlite":
        # pysqlite opens no transaction for DDL: an explicit one makes the migration all-or-nothing,
        # and IMMEDIATE takes the write lock first, so a second process waits (busy timeout) for it
        connection.exec_driver_sql("BEGIN IMMEDIATE")
