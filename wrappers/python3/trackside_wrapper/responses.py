"""Sending ASGI responses: JSON, errors in the job's error shape, files and redirects."""

from __future__ import annotations

import os
from typing import Any

import msgspec

from .asgi import Send

JSON = b"application/json"
encode = msgspec.json.encode
_CHUNK = 256 * 1024


def _headers(
    content_type: bytes, length: int, tracing_id: str, extra: list[tuple[bytes, bytes]] | None
) -> list[tuple[bytes, bytes]]:
    headers = [(b"content-type", content_type), (b"content-length", str(length).encode())]
    if tracing_id:
        headers.append((b"x-request-tracing-id", tracing_id.encode("latin-1", "replace")))
    if extra:
        headers.extend(extra)
    return headers


async def send_bytes(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes = JSON,
    tracing_id: str = "",
    extra_headers: list[tuple[bytes, bytes]] | None = None,
    head: bool = False,
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": _headers(content_type, len(body), tracing_id, extra_headers),
        }
    )
    await send({"type": "http.response.body", "body": b"" if head else body})


async def send_json(
    send: Send,
    status: int,
    payload: Any,
    tracing_id: str = "",
    extra_headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    await send_bytes(send, status, msgspec.json.encode(payload), JSON, tracing_id, extra_headers)


def error_body(message: str, error_type: str, **extra: Any) -> dict[str, Any]:
    return {"error": message, "type": error_type, **extra}


async def send_error(
    send: Send,
    status: int,
    message: str,
    error_type: str,
    tracing_id: str = "",
    extra_headers: list[tuple[bytes, bytes]] | None = None,
    **extra: Any,
) -> None:
    await send_json(send, status, error_body(message, error_type, **extra), tracing_id, extra_headers)


async def send_redirect(send: Send, location: str, tracing_id: str = "") -> None:
    await send_bytes(
        send, 307, b"", b"text/plain", tracing_id, [(b"location", location.encode("latin-1", "replace"))]
    )


async def send_file(
    send: Send, path: str, content_type: str, tracing_id: str = "", head: bool = False
) -> None:
    size = os.stat(path).st_size
    ctype = content_type.encode()
    if content_type.startswith("text/") and "charset" not in content_type:
        ctype += b"; charset=utf-8"
    await send(
        {"type": "http.response.start", "status": 200, "headers": _headers(ctype, size, tracing_id, None)}
    )
    if head or size == 0:
        await send({"type": "http.response.body", "body": b""})
        return
    with open(path, "rb") as f:
        while True:
            chunk = f.read(_CHUNK)
            more = len(chunk) == _CHUNK
            await send({"type": "http.response.body", "body": chunk, "more_body": more})
            if not more:
                break
