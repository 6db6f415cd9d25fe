"""The dashboard's one way to the platform: the lifecycle API (`/lifecycle/api/v1`), always with the
signed-in user's own token, so what a page shows and does is what the lifecycle allows that user.

Over HTTP (`trackside serve dashboard`, TRACKSIDE_LIFECYCLE_URL) or, in `trackside up`, straight
into the lifecycle's ASGI app in the same process (see asgi_transport).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
import msgspec

from .asgi_transport import ASGIApp, InProcessTransport

API_PATH = "/lifecycle/api/v1"
AUTH_HEADER = "X-Racetrack-Auth"
TIMEOUT = httpx.Timeout(30.0, connect=5.0)
STREAM_TIMEOUT = httpx.Timeout(30.0, connect=5.0, read=None)
# the base URL requests carry in-process (never resolved: no socket is opened)
IN_PROCESS_BASE = "http://lifecycle.in-process"


@dataclass
class LifecycleError(Exception):
    """The lifecycle said no (its status and message), or could not be reached (status 503)."""

    status: int
    message: str
    type: str = "Error"
    errors: list[dict[str, str]] = field(default_factory=list)

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class Stream:
    """An open event stream: the lifecycle's status and headers, and its bytes as they come."""

    status: int
    headers: httpx.Headers
    chunks: AsyncIterator[bytes]


def segment(value: str) -> str:
    """A name or version as one segment of an API path (`/job/{segment}/{segment}`)."""
    return quote(value, safe="")


def _error(response: httpx.Response) -> LifecycleError:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        listed = body.get("errors")
        errors = [
            {"field": str(e.get("field", "")), "message": str(e.get("message", ""))}
            for e in (listed if isinstance(listed, list) else [])
            if isinstance(e, dict)
        ]
        return LifecycleError(response.status_code, body["error"], str(body.get("type", "Error")), errors)
    text = response.text.strip()[:300] or response.reason_phrase
    return LifecycleError(response.status_code, f"the lifecycle answered {response.status_code}: {text}")


class LifecycleAPI:
    def __init__(self, client: httpx.AsyncClient, description: str) -> None:
        self._client = client
        self.description = description  # where it is, for error pages

    @classmethod
    def over_http(cls, url: str) -> LifecycleAPI:
        """`url`: the lifecycle's root (`http://lifecycle:7200`) or its API root."""
        base = url.rstrip("/").removesuffix(API_PATH).removesuffix("/lifecycle")
        client = httpx.AsyncClient(
            base_url=base + API_PATH,
            timeout=TIMEOUT,
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
        )
        return cls(client, base)

    @classmethod
    def in_process(cls, app: ASGIApp) -> LifecycleAPI:
        client = httpx.AsyncClient(
            base_url=IN_PROCESS_BASE + API_PATH, transport=InProcessTransport(app), timeout=TIMEOUT
        )
        return cls(client, "the lifecycle in this process")

    async def aclose(self) -> None:
        await self._client.aclose()

    # ---- the calls -------------------------------------------------------------------------------

    def _unreachable(self, error: httpx.HTTPError) -> LifecycleError:
        return LifecycleError(
            503,
            f"the lifecycle ({self.description}) cannot be reached: {error.__class__.__name__}",
            "Unavailable",
        )

    async def call(
        self,
        method: str,
        path: str,
        token: str | None,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
    ) -> Any:
        """The answer's JSON; LifecycleError for any answer but 2xx."""
        headers = {AUTH_HEADER: token} if token else {}
        clean = None if params is None else {k: v for k, v in params.items() if v is not None and v != ""}
        try:
            response = await self._client.request(method, path, headers=headers, json=json, params=clean)
        except httpx.HTTPError as e:
            raise self._unreachable(e) from None
        if response.status_code >= 400:
            raise _error(response)
        if response.status_code == 204 or not response.content:
            return None
        try:
            return msgspec.json.decode(response.content)  # a job listing is large: faster than json
        except msgspec.DecodeError:
            raise LifecycleError(
                502, "the lifecycle answered with something that is not JSON", "BadAnswer"
            ) from None

    async def get(self, path: str, token: str | None, **params: Any) -> Any:
        return await self.call("GET", path, token, params=params)

    async def post(self, path: str, token: str | None, json: Any = None) -> Any:
        return await self.call("POST", path, token, json=json)

    @asynccontextmanager
    async def stream(
        self, path: str, token: str, params: dict[str, Any] | None = None, last_event_id: str | None = None
    ) -> AsyncIterator[Stream]:
        """An event stream of the lifecycle's, open for the `with` block (closed after it)."""
        headers = {AUTH_HEADER: token, "Accept": "text/event-stream"}
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        request = self._client.build_request(
            "GET", path, headers=headers, params=params, timeout=STREAM_TIMEOUT
        )
        try:
            response = await self._client.send(request, stream=True)
        except httpx.HTTPError as e:
            raise self._unreachable(e) from None
        try:
            if response.status_code >= 400:
                await response.aread()
                raise _error(response)
            yield Stream(response.status_code, response.headers, response.aiter_raw())
        finally:
            await response.aclose()
