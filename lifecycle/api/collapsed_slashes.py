"""Paths with runs of slashes served as if written with one: Racetrack's CLI joins its remote and
`/api/v1` as given, so a remote set with a trailing slash (`http://host/lifecycle/`) asks for
`/lifecycle//api/v1/...`. Pure ASGI: one substring test per request."""

from __future__ import annotations

import re
from typing import Any

_RUN = re.compile(r"/{2,}")


class CollapsedSlashes:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket") and "//" in scope["path"]:
            scope = {**scope, "path": _RUN.sub("/", scope["path"])}
            raw = scope.get("raw_path")
            if raw:
                scope["raw_path"] = re.sub(rb"/{2,}", b"/", raw)
        await self.app(scope, receive, send)
