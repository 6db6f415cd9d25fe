"""Mounting the job's own web UI (`webview_app(base_url)`), WSGI or ASGI, at /api/v1/webview."""

from __future__ import annotations

import inspect
from typing import Any, cast

from .asgi import ASGIApp


def is_asgi(app: Any) -> bool:
    if inspect.iscoroutinefunction(app):
        return True
    call = getattr(app, "__call__", None)  # noqa: B004 - an instance's __call__, not callable()
    return call is not None and inspect.iscoroutinefunction(call)


def as_asgi(app: Any, max_workers: int = 10) -> ASGIApp:
    if not callable(app):
        raise TypeError(f"webview_app() must return a WSGI or ASGI application, got {type(app).__name__}")
    if is_asgi(app):
        return cast(ASGIApp, app)
    from a2wsgi import WSGIMiddleware  # only jobs with a WSGI webview pay for it

    return cast(ASGIApp, WSGIMiddleware(app, workers=max_workers))
