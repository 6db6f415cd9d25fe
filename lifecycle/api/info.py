"""Platform information, probes, login and token validation."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel

from lifecycle.auth.users import login as login_user
from trackside import __version__

from .dependencies import CurrentSubject, control_plane
from .errors import Unauthenticated

router = APIRouter()


@router.get("/info", tags=["platform"])
def info(request: Request) -> dict[str, Any]:
    plane = control_plane(request)
    return {
        "lifecycle_version": __version__,
        "auth_required": True,
        "external_pub_url": plane.pub_url,
        "infrastructure_targets": plane.infrastructure_targets(),
    }


class LoginBody(BaseModel):
    username: str
    password: str


@router.post("/users/login", tags=["users"])
def login(body: LoginBody, request: Request) -> dict[str, str]:
    with control_plane(request).db.session() as session:
        issued = login_user(session, body.username, body.password)
        if issued is None:
            raise Unauthenticated("wrong username or password")
        return {"token": issued.token, "username": body.username}


@router.get("/users/validate_user_auth", tags=["users"])
def validate_user_auth(subject: CurrentSubject) -> dict[str, Any]:
    return {"username": subject.name, "subject": subject.description, "is_admin": subject.is_admin}
