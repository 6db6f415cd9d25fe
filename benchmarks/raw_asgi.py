"""Baseline (c): the adder's work as a bare ASGI app on the same uvicorn setup as the wrapper.

It parses the JSON body, adds the numbers and answers JSON; there is no framework, validation,
logging or metrics, so it is the floor that the wrapper's overhead is measured against. The
standard library's json keeps it independent of the wrapper's dependencies; for a body this small
its cost is a few microseconds either way.

    python -m benchmarks.raw_asgi --port PORT
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_JSON_HEADERS = [(b"content-type", b"application/json")]
_READY = b'{"ready":true}'


async def _respond(send: Send, status: int, body: bytes) -> None:
    headers = [*_JSON_HEADERS, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def app(scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/api/v1/perform" and scope["method"] == "POST":
        try:
            args = json.loads(await _read_body(receive))
            result = sum(args["numbers"]) + args.get("offset", 0)
        except (ValueError, KeyError, TypeError) as e:
            await _respond(send, 422, json.dumps({"error": str(e)}).encode())
            return
        await _respond(send, 200, json.dumps(result).encode())
    elif path in ("/ready", "/live"):
        await _respond(send, 200, _READY)
    else:
        await _respond(send, 404, b'{"error":"not found"}')


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.raw_asgi")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    import uvicorn

    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        http="httptools",
        loop=loop,
        access_log=False,
        log_level="warning",
        lifespan="off",
        server_header=False,
    )


if __name__ == "__main__":
    main()
