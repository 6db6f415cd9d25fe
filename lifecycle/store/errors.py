"""Errors of the store's repository functions, for the API to turn into 404 and 409."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session


class NotFound(LookupError):
    """The named record does not exist."""


class AlreadyExists(Exception):
    """A record with the same unique key exists."""


def flush_new(session: Session, what: str) -> None:
    """Flush pending inserts; a unique-key clash becomes AlreadyExists(what).

    No savepoint is used (pysqlite's transaction handling breaks them), so after AlreadyExists
    the session's transaction is over: let the error end the unit of work.
    """
    try:
        session.flush()
    except IntegrityError as error:
        raise AlreadyExists(f"{what} already exists") from error
