"""Real databases for tests: SQLite (a file in tmp_path) and PostgreSQL (throwaway databases).

PostgreSQL: every test session (so every xdist worker) creates its own databases named
`trackside_test_<random>` through TRACKSIDE_TEST_POSTGRES_URL (default: the local server's
`postgres` database) and drops them at the end. Without a server the PostgreSQL variants skip,
or fail when CI=true.

Use: import the fixtures in a conftest (`from tests.db import database, ...  # noqa: F401`), then
- `database`: a migrated, empty `Database`, once per backend (the test runs twice);
- `make_database(backend, migrate=True)`: another fresh database (for migration tests);
- `count_queries(engine)`: the SQL statements executed inside a `with` block.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import pytest
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import OperationalError

from lifecycle.store.database import Database
from lifecycle.store.models import Base

IN_CI = os.environ.get("CI", "").lower() == "true"
POSTGRES_ADMIN_URL = os.environ.get(
    "TRACKSIDE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
BACKENDS = ("sqlite", "postgresql")


def unavailable(reason: str) -> NoReturn:
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: a missing real component fails the suite)")
    pytest.skip(reason)


class PostgresServer:
    """Creates throwaway databases and drops them all in `close()`."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = make_url(admin_url)
        self._admin = create_engine(
            self.admin_url, isolation_level="AUTOCOMMIT", pool_size=1, connect_args={"connect_timeout": 5}
        )
        self._created: list[str] = []
        with self._admin.connect() as connection:
            connection.execute(text("SELECT 1"))

    def create_database(self) -> URL:
        name = f"trackside_test_{secrets.token_hex(6)}"
        with self._admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        self._created.append(name)
        return self.admin_url.set(database=name)

    def close(self) -> None:
        with self._admin.connect() as connection:
            for name in self._created:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        self._admin.dispose()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    try:
        server = PostgresServer(POSTGRES_ADMIN_URL)
    except OperationalError as error:
        unavailable(f"PostgreSQL is not reachable at {make_url(POSTGRES_ADMIN_URL)!r}: {error.orig}")
    yield server
    server.close()


@pytest.fixture(scope="session")
def postgres_database(postgres_server: PostgresServer) -> Iterator[Database]:
    """One migrated PostgreSQL database per session; `database` empties it before each test."""
    db = Database(postgres_server.create_database())
    yield db
    db.dispose()


def empty_tables(db: Database) -> None:
    # DELETE, not TRUNCATE: on a handful of rows it is a hundred times faster
    with db.engine.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            connection.execute(table.delete())


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file that each test copies instead of migrating its own."""
    path = tmp_path_factory.mktemp("sqlite-template") / "trackside.db"
    Database(f"sqlite:///{path}").dispose()  # the last connection's close folds the WAL into the file
    return path


@pytest.fixture(params=BACKENDS)
def db_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database(db_backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Database]:
    if db_backend == "sqlite":
        path = tmp_path / "trackside.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        db = Database(f"sqlite:///{path}", migrate=False)
        yield db
        db.dispose()
        return
    db = request.getfixturevalue("postgres_database")
    empty_tables(db)
    yield db


MakeDatabase = Callable[..., Database]


@pytest.fixture
def make_database(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[MakeDatabase]:
    """`make_database("sqlite" | "postgresql", migrate=True)`: a new database of its own."""
    made: list[Database] = []

    def _make(backend: str, migrate: bool = True) -> Database:
        if backend == "sqlite":
            url: str | URL = f"sqlite:///{tmp_path / f'made-{len(made)}.db'}"
        else:
            url = request.getfixturevalue("postgres_server").create_database()
        db = Database(url, migrate=migrate)
        made.append(db)
        return db

    yield _make
    for db in made:
        db.dispose()


@contextmanager
def count_queries(engine: Engine) -> Iterator[list[str]]:
    """Collects every SQL statement the engine sends while the block runs."""
    statements: list[str] = []

    def _record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", _record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", _record)
