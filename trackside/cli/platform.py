"""Commands that run the platform: `up` (everything in one process) and `serve` (one component)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from .output import TracksideCommand

DATA_DIR_HELP = (
    "where jobs, environments and the database live (default $TRACKSIDE_DATA_DIR or ~/.local/share/trackside)"
)


class Component(StrEnum):
    lifecycle = "lifecycle"
    pub = "pub"
    dashboard = "dashboard"


def up(
    port: Annotated[int, typer.Option(help="the one port for lifecycle, gateway and dashboard")] = 7200,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    data_dir: Annotated[Path | None, typer.Option(help=DATA_DIR_HELP)] = None,
) -> None:
    """Run the whole platform in this process (lifecycle at /lifecycle, gateway at /pub, dashboard at /dashboard).

    Ctrl-C stops it and its jobs; the next `trackside up` brings every job back.

    Example: trackside up --port 7200
    """
    from trackside.embedded import up as run_up

    run_up(port, data_dir, host)


def serve(
    component: Annotated[Component, typer.Argument(help="which component to run")],
    port: Annotated[int, typer.Option(help="port to listen on")] = 7200,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
) -> None:
    """Run one component alone (separate processes, as on Kubernetes), configured by environment.

    lifecycle: TRACKSIDE_DATABASE_URL, TRACKSIDE_SECRET_KEY, TRACKSIDE_DATA_DIR, TRACKSIDE_PUB_URL ...
    pub: TRACKSIDE_LIFECYCLE_URL and TRACKSIDE_GATEWAY_TOKEN (a token allowed the admin API).
    dashboard: TRACKSIDE_LIFECYCLE_URL; optional TRACKSIDE_DASHBOARD_SECRET, TRACKSIDE_PUBLIC_URL.

    Example: TRACKSIDE_LIFECYCLE_URL=http://lifecycle:7200 trackside serve pub --port 7205
    """
    from trackside.serve import serve as run_serve

    run_serve(component.value, host, port)


def register(app: typer.Typer) -> None:
    app.command(cls=TracksideCommand)(up)
    app.command(cls=TracksideCommand)(serve)
