"""Database: the engine, sessions and migrations for one database URL (SQLite or PostgreSQL)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from lifecycle.config import LifecycleConfig
from lifecycle.store import migration

SQLITE_BUSY_TIMEOUT_MS = 10_000


def normalize_url(url: str | URL) -> URL:
    """PostgreSQL URLs get the psycopg 3 driver; SQLite and explicit drivers are kept."""
    parsed = make_url(url)
    if parsed.drivername in ("postgres", "postgresql"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


class Database:
    """Owns an engine. `session()` is a unit of work: committed on success, rolled back on error.

    Objects loaded in a session stay readable after it ends (expire_on_commit=False); JSON columns
    are not change-tracked in place, so assign a new list/dict to change one. On SQLite the
    transaction begins at a unit's first write (pysqlite's default, which lets writers wait on
    each other through the busy timeout); reads before it see the latest commits, as under
    PostgreSQL's READ COMMITTED. pysqlite breaks SAVEPOINTs: don't use `session.begin_nested()`.
    """

    def __init__(self, url: str | URL, *, migrate: bool = True, echo: bool = False) -> None:
        self.url = normalize_url(url)
        self.engine = _create_engine(self.url, echo)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        if migrate:
            self.upgrade()

    @classmethod
    def from_config(cls, config: LifecycleConfig, *, migrate: bool = True) -> Database:
        return cls(config.database_url, migrate=migrate)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def __repr__(self) -> str:
        return f"Database({self.url.render_as_string(hide_password=True)!r})"

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            yield session

    def upgrade(self, revision: str = "head") -> None:
        migration.upgrade(self.engine, revision)

    def dispose(self) -> None:
        self.engine.dispose()


def _create_engine(url: URL, echo: bool) -> Engine:
    if url.get_backend_name() != "sqlite":
        return create_engine(url, echo=echo, pool_pre_ping=True)
    in_memory = url.database in (None, "", ":memory:")
    if in_memory:
        # one shared connection, or every checkout would see its own empty database
        engine = create_engine(
            url, echo=echo, poolclass=StaticPool, connect_args={"check_same_thread": False}
        )
    else:
        Path(url.database or "").parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, echo=echo)

    @event.listens_for(engine, "connect")
    def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            if not in_memory:
                _use_wal(cursor)
                # NORMAL is durable across application crashes in WAL mode; only an OS crash can
                # lose the last transactions, and it saves an fsync per commit
                cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    return engine


def _use_wal(cursor: Any) -> None:
    """Switch the file to WAL (once per file: it stays so). The switch needs the file to itself and
    SQLite answers "database is locked" at once instead of waiting the busy timeout, so connections
    made at the same moment (processes starting together on a new file) retry it."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    delay = 0.005
    while True:
        try:
            if str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.2)
