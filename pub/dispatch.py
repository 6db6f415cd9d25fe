"""Several ASGI apps on one server, chosen by path prefix: the gateway next to the lifecycle.

A pure ASGI dispatcher (one prefix test per request), so the gateway's path pays for no
framework. Lifespan events go to the default app; mounted apps with a `start()` are started once it
has started (one that fails is logged, not fatal: such an app must start itself when first used),
and those with an `aclose()` are closed when it has shut down.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class PathDispatcher:
    """`mounts`: prefix → app (e.g. `{"/pub": gateway}`: `/pub` and `/pub/...`, not `/public`);
    anything else goes to `default`. Apps see the full path (no root_path games)."""

    def __init__(self, mounts: Mapping[str, ASGIApp], default: ASGIApp) -> None:
        self._mounts = [(prefix.rstrip("/"), app) for prefix, app in mounts.items()]
        self._default = default

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        path: str = scope.get("path", "")
        for prefix, app in self._mounts:
            if path.startswith(prefix) and (len(path) == len(prefix) or path[len(prefix)] == "/"):
                await app(scope, receive, send)
                return
        await self._default(scope, receive, send)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_after_closing(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete":
                for _, app in self._mounts:
                    start = getattr(app, "start", None)
                    if start is not None:
                        try:
                            await start()
                        except Exception:  # e.g. its store is unreachable: it starts on first use
                            logger.exception("%r could not start now; it tries again when first used", app)
            if message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                for _, app in self._mounts:
                    close = getattr(app, "aclose", None)
                    if close is not None:
                        await close()
            await send(message)

        await self._default(scope, receive, send_after_closing)
