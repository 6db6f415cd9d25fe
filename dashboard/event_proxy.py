"""Server-Sent Event streams of the lifecycle, passed through to the browser with the user's token
(so they work when the dashboard and the lifecycle are different origins), closed upstream as
soon as the browser goes away."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
from starlette.responses import PlainTextResponse, Response, StreamingResponse

from .lifecycle_api import LifecycleError
from .page import PageRequest

STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


async def proxy_events(ctx: PageRequest, path: str, params: dict[str, Any] | None = None) -> Response:
    """The stream at `path` of the lifecycle API. A refusal is answered with its status and
    message as text (an EventSource stops on it); `Last-Event-ID` is passed on."""
    if ctx.token is None:
        return PlainTextResponse("not signed in", status_code=401)
    stack = contextlib.AsyncExitStack()
    try:
        stream = await stack.enter_async_context(
            ctx.dash.api.stream(path, ctx.token, params, ctx.request.headers.get("Last-Event-ID"))
        )
    except LifecycleError as e:
        await stack.aclose()
        return PlainTextResponse(e.message, status_code=e.status)
    if stream.status == 204:
        await stack.aclose()
        return Response(status_code=204)

    async def relay() -> AsyncIterator[bytes]:
        try:
            async for chunk in stream.chunks:
                yield chunk
        except httpx.HTTPError:  # the upstream went away: the browser's EventSource reconnects
            return
        finally:
            await stack.aclose()

    return StreamingResponse(relay(), media_type="text/event-stream", headers=STREAM_HEADERS)
