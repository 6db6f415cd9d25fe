"""The audit log (admin only), newest first, paged with `before_id`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict

from lifecycle.store.audit import list_events
from lifecycle.store.models import ACTOR_LENGTH

from .dependencies import CurrentSubject, control_plane, require_admin

router = APIRouter(tags=["audit"])

MAX_PAGE = 1000


class AuditEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    time: datetime
    actor: str
    action: str
    target: str
    details: dict[str, Any]


class AuditPage(BaseModel):
    events: list[AuditEventOut]
    next_before_id: int | None  # pass as before_id for the next (older) page; None on the last one


@router.get("/audit")
def audit_log(
    request: Request,
    subject: CurrentSubject,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    before_id: Annotated[int | None, Query(ge=1)] = None,
    action: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    actor: Annotated[str | None, Query(min_length=1, max_length=ACTOR_LENGTH)] = None,
) -> AuditPage:
    require_admin(request, subject, "the audit log")
    with control_plane(request).db.session() as session:
        events = list_events(session, limit=limit, before_id=before_id, action=action, actor=actor)
        return AuditPage(
            events=[AuditEventOut.model_validate(e) for e in events],
            next_before_id=events[-1].id if len(events) == limit else None,
        )
