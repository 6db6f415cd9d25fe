"""The lifecycle's FastAPI application."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI

from lifecycle.control_plane import ControlPlane
from trackside import __version__

from . import deploy, errors, info, jobs

PREFIXES = ("/lifecycle/api/v1", "/api/v1")


def create_app(plane: ControlPlane) -> FastAPI:
    app = FastAPI(
        title="Trackside lifecycle",
        version=__version__,
        docs_url="/lifecycle/docs",
        openapi_url="/lifecycle/openapi.json",
        redoc_url=None,
    )
    app.state.control_plane = plane
    errors.install(app)
    api = APIRouter()
    for router in (info.router, deploy.router, jobs.router):
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
    return app
