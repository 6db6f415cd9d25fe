"""Who is signed in: the lifecycle token in the `X-Racetrack-Auth` cookie (the one the gateway and
the lifecycle accept from browsers too), and what `/users/me` says about it."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from .lifecycle_api import LifecycleAPI, LifecycleError

COOKIE = "X-Racetrack-Auth"
# how long an identity is taken as known without asking the lifecycle again; the data every page
# shows is asked for with the token each time, so a revoked token sees nothing in that window
IDENTITY_TTL_S = 5.0
MAX_CACHED = 1000


@dataclass(frozen=True)
class Identity:
    username: str
    subject: str
    is_admin: bool
    can_administer: bool
    token_id: int | None

    @classmethod
    def from_me(cls, body: dict[str, Any]) -> Identity:
        return cls(
            username=str(body["username"]),
            subject=str(body["subject"]),
            is_admin=bool(body.get("is_admin")),
            can_administer=bool(body.get("can_administer")),
            token_id=body.get("token_id"),
        )


def session_token(request: Request) -> str | None:
    return request.cookies.get(COOKIE) or None


def _key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Identities:
    """`/users/me` answers, kept briefly per token (by its hash)."""

    def __init__(self, api: LifecycleAPI) -> None:
        self._api = api
        self._cache: dict[str, tuple[float, Identity]] = {}

    async def of(self, token: str | None) -> Identity | None:
        """None when there is no token or the lifecycle does not accept it."""
        if not token:
            return None
        key = _key(token)
        now = time.monotonic()
        cached = self._cache.get(key)
        if cached is not None and now - cached[0] < IDENTITY_TTL_S:
            return cached[1]
        try:
            body = await self._api.get("/users/me", token)
        except LifecycleError as e:
            if e.status == 401:
                self._cache.pop(key, None)
                return None
            raise
        identity = Identity.from_me(body)
        if len(self._cache) >= MAX_CACHED:
            self._cache = {k: v for k, v in self._cache.items() if now - v[0] < IDENTITY_TTL_S}
        self._cache[key] = (now, identity)
        return identity

    def forget(self, token: str) -> None:
        self._cache.pop(_key(token), None)


def is_https(request: Request) -> bool:
    return request.url.scheme == "https"


def set_session_cookie(response: Response, request: Request, token: str) -> None:
    response.set_cookie(COOKIE, token, httponly=True, samesite="lax", secure=is_https(request), path="/")


def clear_session_cookie(response: Response, request: Request) -> None:
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="lax", secure=is_https(request))
