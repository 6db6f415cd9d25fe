"""Alembic migration scripts of the lifecycle store (run through lifecycle.store.migration)."""
