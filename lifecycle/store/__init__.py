"""The lifecycle's store: SQLAlchemy models, the Database (engine, sessions, migrations), repositories."""

from lifecycle.store.database import Database
from lifecycle.store.errors import AlreadyExists, NotFound

__all__ = ["AlreadyExists", "Database", "NotFound"]
