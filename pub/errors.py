"""The gateway's own answers: JSON `{"error", "requestId", ...}` with the status that says why.

401 no or bad token, 403 no permission, 404 unknown job or version, 400 a path or header the
gateway refuses to forward, 502 job unreachable, 503 job not ready, 504 upstream timeout.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

import msgspec

Message = MutableMapping[str, Any]
Send = Callable[[Message], Awaitable[None]]

JSON = (b"content-type", b"application/json")
TRACING_HEADER = b"x-request-tracing-id"

_encode = msgspec.json.Encoder().encode


def error_body(status: int, message: str, request_id: str, **extra: Any) -> bytes:
    return _encode({"error": message, "requestId": request_id, "status": status, **extra})


def error_headers(
    body: bytes, request_id: str, headers: Iterable[tuple[bytes, bytes]] = ()
) -> list[tuple[bytes, bytes]]:
    return [
        JSON,
        (b"content-length", b"%d" % len(body)),
        (TRACING_HEADER, request_id.encode("latin-1")),
        *headers,
    ]


async def send_error(
    send: Send,
    status: int,
    message: str,
    request_id: str,
    headers: Iterable[tuple[bytes, bytes]] = (),
    **extra: Any,
) -> None:
    body = error_body(status, message, request_id, **extra)
    await send(
        {"type": "http.response.start", "status": status, "headers": error_headers(body, request_id, headers)}
    )
    await send({"type": "http.response.body", "body": body})


async def deny_websocket(
    scope: Message,
    send: Send,
    status: int,
    message: str,
    request_id: str,
    headers: Iterable[tuple[bytes, bytes]] = (),
    **extra: Any,
) -> None:
    """Refuse a WebSocket handshake with the JSON error (servers that support the denial response
    extension), or by closing before accepting (the client sees 403)."""
    if "websocket.http.response" in scope.get("extensions", {}):
        body = error_body(status, message, request_id, **extra)
        await send(
            {
                "type": "websocket.http.response.start",
                "status": status,
                "headers": error_headers(body, request_id, headers),
            }
        )
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await send({"type": "websocket.close", "code": 1008 if status in (401, 403) else 1011})
