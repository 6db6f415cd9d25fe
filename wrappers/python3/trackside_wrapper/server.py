"""Building the job app from a directory and serving it with uvicorn."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from . import body_limit
from .app import JobApp, options_from_env
from .entrypoint import describe_failure
from .logs import configure_logging
from .manifest import ManifestError, job_settings, load_manifest_dict

logger = logging.getLogger("trackside.wrapper")

JOB_DIR_ENV = "TRACKSIDE_WRAPPER_JOB_DIR"


def create_app(job_dir: str | Path, max_body_size: int | None = None) -> JobApp:
    """The job app for JOB_DIR. A bad manifest does not stop the process: /live reports it."""
    path = Path(job_dir).resolve()
    try:
        settings = job_settings(load_manifest_dict(path))
    except ManifestError as e:
        logger.error("invalid job manifest: %s", e)
        return JobApp(path, None, options_from_env(max_body_size), settings_failure=describe_failure(e, path))
    return JobApp(path, settings, options_from_env(max_body_size))


def websockets_wanted(app: JobApp) -> bool:
    """WebSocket support costs every job memory and start time, so only webview jobs get it.

    Decided before the job is imported, from the entrypoint's text; TRACKSIDE_WEBSOCKETS=on|off
    overrides the guess.
    """
    forced = os.environ.get("TRACKSIDE_WEBSOCKETS", "").strip().lower()
    if forced in ("on", "true", "1", "off", "false", "0"):
        return forced in ("on", "true", "1")
    if app.settings is None:
        return False
    try:
        source = (app.job_dir / app.settings.entrypoint_path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return "webview_app" in source


def create_app_from_env() -> JobApp:
    """uvicorn factory used with --reload: the worker process re-reads everything from the environment."""
    configure_logging()
    job_dir = os.environ[JOB_DIR_ENV]
    os.chdir(job_dir)
    return create_app(job_dir)


def serve(
    job_dir: Path, host: str, port: int, reload: bool = False, max_body_size: int | None = None
) -> None:
    import uvicorn

    configure_logging()
    job_dir = job_dir.resolve()
    os.chdir(job_dir)
    common: dict[str, Any] = dict(
        host=host,
        port=port,
        loop="auto",
        http="httptools",
        access_log=False,
        log_config=None,
        server_header=False,
        timeout_graceful_shutdown=10,
        lifespan="on",
    )
    if max_body_size:
        os.environ[body_limit.ENV_VAR] = str(max_body_size)
    app = create_app(job_dir, max_body_size)
    common["ws"] = "wsproto" if websockets_wanted(app) else "none"
    if reload:
        os.environ[JOB_DIR_ENV] = str(job_dir)
        uvicorn.run(
            "trackside_wrapper.server:create_app_from_env",
            factory=True,
            reload=True,
            reload_dirs=[str(job_dir)],
            reload_includes=["*.py", "*.yaml", "*.yml", "*.txt", "*.json", "*.html", "*.css", "*.js"],
            **common,
        )
        return
    uvicorn.run(app, **common)
