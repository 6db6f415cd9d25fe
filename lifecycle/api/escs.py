"""ESCs (external service consumers) and their tokens: all admin only.

An ESC starts without permissions: grant it `call_job` on what it may call (POST /permissions).
Its tokens are revoked with `DELETE /tokens/{id}` like any other.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict

from lifecycle.auth import escs as esc_store
from lifecycle.auth import tokens as token_store
from lifecycle.auth.subjects import esc_subject
from lifecycle.store.errors import AlreadyExists
from lifecycle.store.models import Esc, SubjectType

from .dependencies import CurrentSubject, control_plane, require_admin
from .errors import Conflict, NotFound, field_error
from .users import IssuedTokenOut, TokenBody, TokenOut, issue

router = APIRouter(tags=["escs"])


class EscBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str


class EscOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    created_at: datetime


def _esc(request: Request, name: str) -> Esc:
    with control_plane(request).db.session() as session:
        esc = esc_store.get_esc(session, name)
        if esc is None:
            raise NotFound(f"ESC {name} not found")
        return esc


@router.post("/escs", status_code=201)
def create_esc(body: EscBody, request: Request, subject: CurrentSubject) -> EscOut:
    require_admin(request, subject, "ESCs")
    try:
        with control_plane(request).db.session() as session:
            return EscOut.model_validate(esc_store.create_esc(session, body.name, actor=subject.description))
    except ValueError as e:
        raise field_error("name", str(e)) from None
    except AlreadyExists:
        raise Conflict(f"ESC {body.name} already exists") from None


@router.get("/escs")
def list_escs(request: Request, subject: CurrentSubject) -> list[EscOut]:
    require_admin(request, subject, "ESCs")
    with control_plane(request).db.session() as session:
        return [EscOut.model_validate(esc) for esc in esc_store.list_escs(session)]


@router.delete("/escs/{name}")
def delete_esc(name: str, request: Request, subject: CurrentSubject) -> dict[str, Any]:
    """Removes the ESC with its permissions; its tokens are revoked."""
    require_admin(request, subject, f"ESC {name}")
    with control_plane(request).db.session() as session:
        if not esc_store.delete_esc(session, name, actor=subject.description):
            raise NotFound(f"ESC {name} not found")
    return {"name": name, "deleted": True}


@router.post("/escs/{name}/tokens", status_code=201)
def issue_esc_token(name: str, body: TokenBody, request: Request, subject: CurrentSubject) -> IssuedTokenOut:
    require_admin(request, subject, f"ESC {name}")
    return issue(request, subject, esc_subject(_esc(request, name)), body)


@router.get("/escs/{name}/tokens")
def list_esc_tokens(
    name: str,
    request: Request,
    subject: CurrentSubject,
    include_revoked: Annotated[bool, Query()] = False,
) -> list[TokenOut]:
    require_admin(request, subject, f"ESC {name}")
    esc = _esc(request, name)
    with control_plane(request).db.session() as session:
        records = token_store.list_tokens(session, SubjectType.ESC, esc.id, include_revoked)
        return [TokenOut.model_validate(record) for record in records]
