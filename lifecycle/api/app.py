"""The lifecycle's FastAPI application."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.responses import RedirectResponse

from lifecycle.control_plane import ControlPlane
from trackside import __version__

from . import (
    async_calls,
    audit,
    build_contexts,
    deploy,
    deployment_history,
    errors,
    escs,
    families,
    gateway,
    info,
    job_metrics,
    job_overview,
    job_public_endpoints,
    jobs,
    metrics,
    permissions,
    public_endpoints,
    redeploy,
    streams,
    users,
)
from .collapsed_slashes import CollapsedSlashes

PREFIXES = ("/lifecycle/api/v1", "/api/v1")


def create_app(plane: ControlPlane, stop_on_shutdown: bool = False) -> FastAPI:
    """`stop_on_shutdown`: the server owns the control plane, so stopping the server (SIGTERM,
    Ctrl-C) stops every job cleanly before the process goes."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        if stop_on_shutdown:
            await asyncio.to_thread(plane.stop)

    app = FastAPI(
        title="Trackside lifecycle",
        version=__version__,
        docs_url="/lifecycle/docs",
        openapi_url="/lifecycle/openapi.json",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.control_plane = plane
    errors.install(app)
    app.add_middleware(CollapsedSlashes)
    api = APIRouter()
    for router in (
        info.router,
        deploy.router,
        jobs.router,
        users.router,
        escs.router,
        permissions.router,
        families.router,
        audit.router,
        public_endpoints.router,
        streams.router,
        gateway.router,
        async_calls.router,
        # what a Kubernetes build pod fetches, with its build token
        build_contexts.router,
        # what the dashboard reads beyond Racetrack's API
        job_overview.router,
        deployment_history.router,
        job_metrics.router,
        job_public_endpoints.router,
        redeploy.router,
    ):
        api.include_router(router)
    for prefix in PREFIXES:
        app.include_router(api, prefix=prefix)

    probes = APIRouter(tags=["probes"])

    @probes.get("/live")
    def live() -> dict[str, Any]:
        return {"live": True, "service": "lifecycle"}

    @probes.get("/ready")
    def ready() -> dict[str, Any]:
        return {"ready": True, "service": "lifecycle"}

    @probes.get("/health")
    def health() -> dict[str, Any]:
        return {"service": "lifecycle", "status": "pass", "version": __version__}

    for prefix in ("", "/lifecycle"):
        app.include_router(probes, prefix=prefix)
        app.include_router(metrics.router, prefix=prefix)

    @app.api_route("/lifecycle/socket.io/{rest:path}", methods=["GET", "POST"], include_in_schema=False)
    def socket_io(rest: str) -> None:
        # `racetrack logs --follow` speaks socket.io here (docs/architecture/racetrack-api.md):
        # it prints this message instead of a bare 404
        raise errors.NotImplementedByTrackside(
            "racetrack logs --follow is not supported by Trackside: use `racetrack logs` without "
            "--follow, or `trackside logs --follow`"
        )

    @app.get("/", include_in_schema=False)
    @app.get("/lifecycle", include_in_schema=False)
    @app.get("/lifecycle/", include_in_schema=False)
    def home() -> RedirectResponse:
        return RedirectResponse("/lifecycle/docs")

    return app
