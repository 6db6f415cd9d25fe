"""The audit log: who did what to which resource."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from lifecycle.store.column_types import utcnow
from lifecycle.store.models import AuditEvent

SYSTEM_ACTOR = "system"


def record_event(
    session: Session,
    actor: str,
    action: str,
    target: str,
    details: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> AuditEvent:
    """Add an event to the session's unit of work, so it is kept only if the change it records is."""
    event = AuditEvent(time=now or utcnow(), actor=actor, action=action, target=target, details=details or {})
    session.add(event)
    return event


def list_events(
    session: Session,
    *,
    limit: int = 100,
    before_id: int | None = None,
    action: str | None = None,
    actor: str | None = None,
) -> list[AuditEvent]:
    """Newest first; page with `before_id` = the last id of the previous page."""
    query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
    if before_id is not None:
        query = query.where(AuditEvent.id < before_id)
    if action is not None:
        query = query.where(AuditEvent.action == action)
    if actor is not None:
        query = query.where(AuditEvent.actor == actor)
    return list(session.scalars(query))
