"""An httpx transport that calls an ASGI app in this process and streams its answer.

`trackside up` runs the dashboard next to the lifecycle: calling the lifecycle's app directly
skips the loopback socket and HTTP parsing. httpx's own ASGITransport reads the whole response
before returning it, which never ends for a Server-Sent Event stream; this one hands the body on
as the app sends it, and tells the app the client has gone (`http.disconnect`) when the
response is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import unquote

import httpx

logger = logging.getLogger("trackside.dashboard.transport")

Message = MutableMapping[str, Any]
ASGIApp = Callable[
    [MutableMapping[str, Any], Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
    Awaitable[None],
]

# how long a closed response's app gets to finish after `http.disconnect` before it is cancelled
CLOSE_GRACE_S = 1.0


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


_Item = Message | _Failed | None  # None: the app returned


class _Exchange:
    """One request to the app: its messages arrive on a queue as the app sends them."""

    def __init__(self, app: ASGIApp, scope: MutableMapping[str, Any], body: bytes) -> None:
        self._body: bytes | None = body
        self._disconnected = asyncio.Event()
        self.queue: asyncio.Queue[_Item] = asyncio.Queue()
        self.task = asyncio.create_task(self._run(app, scope))

    async def _run(self, app: ASGIApp, scope: MutableMapping[str, Any]) -> None:
        try:
            await app(scope, self._receive, self._send)
        except asyncio.CancelledError:
            raise
        except BaseException as e:  # after the response started the app re-raises what it logged
            self.queue.put_nowait(_Failed(e))
        finally:
            self.queue.put_nowait(None)

    async def _receive(self) -> Message:
        if self._body is not None:
            body, self._body = self._body, None
            return {"type": "http.request", "body": body, "more_body": False}
        await self._disconnected.wait()
        return {"type": "http.disconnect"}

    async def _send(self, message: Message) -> None:
        self.queue.put_nowait(message)

    async def close(self) -> None:
        self._disconnected.set()
        if self.task.done():
            return
        try:
            await asyncio.wait_for(asyncio.shield(self.task), CLOSE_GRACE_S)
        except (TimeoutError, Exception):
            self.task.cancel()
            with contextlib.suppress(BaseException):
                await self.task


class _Body(httpx.AsyncByteStream):
    def __init__(self, exchange: _Exchange) -> None:
        self._exchange = exchange

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            item = await self._exchange.queue.get()
            if item is None:
                return
            if isinstance(item, _Failed):
                raise httpx.ReadError(f"the app failed while answering: {item.error!r}")
            if item.get("type") == "http.response.body":
                chunk = item.get("body", b"")
                if chunk:
                    yield chunk
                if not item.get("more_body", False):
                    return

    async def aclose(self) -> None:
        await self._exchange.close()


class InProcessTransport(httpx.AsyncBaseTransport):
    def __init__(self, app: ASGIApp, client: tuple[str, int] = ("127.0.0.1", 0)) -> None:
        self.app = app
        self.client = client

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        url = request.url
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": request.method,
            "scheme": url.scheme,
            "path": unquote(url.path),
            "raw_path": url.raw_path.split(b"?", 1)[0],
            "query_string": url.query,
            "root_path": "",
            "headers": [(k.lower(), v) for k, v in request.headers.raw],
            "server": (url.host, url.port or (443 if url.scheme == "https" else 80)),
            "client": self.client,
            "state": {},
        }
        exchange = _Exchange(self.app, scope, body)
        while True:
            item = await exchange.queue.get()
            if item is None or isinstance(item, _Failed):
                await exchange.close()
                error = item.error if isinstance(item, _Failed) else None
                raise httpx.RemoteProtocolError(
                    f"the app ended without an answer ({error!r})", request=request
                )
            if item.get("type") == "http.response.start":
                break
        headers = [(bytes(k), bytes(v)) for k, v in item.get("headers", [])]
        return httpx.Response(int(item["status"]), headers=headers, stream=_Body(exchange), request=request)
