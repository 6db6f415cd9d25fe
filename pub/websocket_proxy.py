"""WebSocket upgrades through the gateway: a handshake with the replica, then frames both ways.

The gateway accepts the caller's handshake only after the replica accepted its own, with the
subprotocol the replica chose; a replica that refuses the connection is skipped for the next one;
a replica that answers the handshake with an HTTP status (404, 403 ...) passes it on; a close on
either side closes the other with the same code.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from .errors import TRACING_HEADER, deny_websocket
from .gateway_metrics import GatewayMetrics

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# request headers that belong to the caller's handshake with the gateway, not to the replica's
HANDSHAKE_HEADERS = frozenset(
    {
        b"sec-websocket-key",
        b"sec-websocket-version",
        b"sec-websocket-extensions",
        b"sec-websocket-protocol",
        b"sec-websocket-accept",
    }
)
# close codes that are never sent in a close frame (RFC 6455 §7.4.1)
_UNSENDABLE = {1005: 1000, 1006: 1011, 1015: 1011}


async def proxy_websocket(
    scope: Message,
    receive: Receive,
    send: Send,
    replicas: Sequence[str],
    target: bytes,
    headers: list[tuple[str, str]],
    request_id: str,
    job: str,
    version: str,
    metrics: GatewayMetrics,
    open_timeout: float,
) -> int:
    """Returns the status for the metrics: 101 when the session ran, else the refusal's status."""
    message = await receive()
    if message["type"] != "websocket.connect":
        return 499
    subprotocols = scope.get("subprotocols") or None
    upstream: ClientConnection | None = None
    failure = "no replica to call"
    for address in replicas:
        if not address.startswith("http://"):
            continue
        try:
            upstream = await connect(
                "ws://" + address[len("http://") :] + target.decode("ascii"),
                additional_headers=headers,
                subprotocols=subprotocols,
                compression=None,
                proxy=None,
                user_agent_header=None,
                open_timeout=open_timeout,
                ping_interval=None,
                max_size=None,
            )
            break
        except InvalidStatus as e:
            status = e.response.status_code
            await deny_websocket(
                scope, send, status, f"job {job} {version} refused the WebSocket: {status}", request_id
            )
            return status
        except (OSError, TimeoutError, InvalidHandshake) as e:
            metrics.upstream_error(job, version, "refused" if isinstance(e, OSError) else "invalid")
            failure = str(e) or e.__class__.__name__
    if upstream is None:
        await deny_websocket(
            scope, send, 502, f"job {job} {version} is unreachable: {failure}", request_id, reason="refused"
        )
        return 502

    await send(
        {
            "type": "websocket.accept",
            "subprotocol": upstream.subprotocol,
            "headers": [(TRACING_HEADER, request_id.encode("latin-1"))],
        }
    )
    to_job = asyncio.ensure_future(_caller_to_job(receive, upstream))
    to_caller = asyncio.ensure_future(_job_to_caller(upstream, send))
    try:
        await asyncio.wait((to_job, to_caller), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (to_job, to_caller):
            task.cancel()
        await asyncio.gather(to_job, to_caller, return_exceptions=True)
        with contextlib.suppress(Exception):
            await upstream.close()
    return 101


async def _caller_to_job(receive: Receive, upstream: ClientConnection) -> None:
    while True:
        message = await receive()
        kind = message["type"]
        if kind == "websocket.receive":
            text = message.get("text")
            try:
                await upstream.send(text if text is not None else (message.get("bytes") or b""))
            except ConnectionClosed:
                return
        elif kind == "websocket.disconnect":
            code: int = message.get("code") or 1000
            with contextlib.suppress(Exception):
                await upstream.close(_UNSENDABLE.get(code, code), message.get("reason") or "")
            return


async def _job_to_caller(upstream: ClientConnection, send: Send) -> None:
    try:
        async for data in upstream:
            if isinstance(data, str):
                await send({"type": "websocket.send", "text": data})
            else:
                await send({"type": "websocket.send", "bytes": data})
    except ConnectionClosed:
        pass
    code = upstream.close_code or 1000
    with contextlib.suppress(Exception):
        await send(
            {
                "type": "websocket.close",
                "code": _UNSENDABLE.get(code, code),
                "reason": upstream.close_reason or "",
            }
        )
