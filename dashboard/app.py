"""The dashboard's ASGI app: its pages at `/dashboard/...`, static files, and error pages that never
show a stack trace.

`trackside up` mounts it next to the lifecycle with `LifecycleAPI.in_process(lifecycle_app)`;
`trackside serve dashboard` runs it alone with `LifecycleAPI.over_http(TRACKSIDE_LIFECYCLE_URL)`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .config import DashboardConfig
from .csrf import CsrfGuard
from .lifecycle_api import LifecycleAPI
from .page import Dashboard, PageRequest, crash_page
from .pages import account, admin, deployments, jobs
from .rendering import STATIC, environment, static_version
from .session import Identities, session_token

logger = logging.getLogger("trackside.dashboard")


class _Static(StaticFiles):
    """The static files, cached for a day (their URLs carry a fingerprint)."""

    async def get_response(self, path: str, scope: Any) -> Response:
        response = await super().get_response(path, scope)
        if response.status_code == 200:
            response.headers["Cache-Control"] = "public, max-age=86400"
        return response


def _error_context(request: Request) -> PageRequest:
    dash: Dashboard = request.app.state.dashboard
    return PageRequest(request, dash, session_token(request), None)


async def _not_found(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 404
    ctx = _error_context(request)
    if status == 405:
        return ctx.error_page(405, "This address does not take that kind of request.", "Not allowed")
    if status != 404:
        return ctx.error_page(status, str(getattr(exc, "detail", "")) or "The request failed.")
    return ctx.error_page(404, f"There is no page at {request.url.path}.")


async def _crashed(request: Request, exc: Exception) -> Response:
    return crash_page(_error_context(request), exc)


async def _live(_: Request) -> Response:
    """The liveness probe: the process answers. No session, no lifecycle call (not a page): a
    lifecycle that is down must not get the dashboard restarted."""
    return JSONResponse({"status": "ok"}, headers={"Cache-Control": "no-store"})


class DashboardApp(Starlette):
    """`aclose()` closes the lifecycle client: at the end of its own lifespan (`trackside serve
    dashboard`), or called by `trackside up`'s dispatcher, which runs no lifespan for it."""

    dashboard: Dashboard

    async def aclose(self) -> None:
        await self.dashboard.api.aclose()


def create_app(config: DashboardConfig, api: LifecycleAPI) -> DashboardApp:
    dash = Dashboard(
        config=config,
        api=api,
        identities=Identities(api),
        csrf=CsrfGuard(config.secret_key),
        templates=environment(),
        static_version=static_version(),
    )

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        yield
        await api.aclose()

    def to_dashboard(_: Request) -> Response:
        return RedirectResponse(dash.url("/jobs"), status_code=307)

    app = DashboardApp(
        routes=[
            Route(config.prefix, to_dashboard),
            Mount(
                config.prefix,
                routes=[
                    Route("/live", _live, methods=["GET"]),
                    *account.routes,
                    *jobs.routes,
                    *deployments.routes,
                    *admin.routes,
                    Mount("/static", _Static(directory=STATIC), name="static"),
                ],
            ),
            Route("/", to_dashboard),
        ],
        exception_handlers={HTTPException: _not_found, Exception: _crashed},
        lifespan=lifespan,
    )
    app.state.dashboard = dash
    app.dashboard = dash
    return app
