"""`trackside serve lifecycle|pub|dashboard`: one component of the platform in a process of its own, as on
Kubernetes. Configured by environment (12-factor); the platform is imported lazily.

lifecycle: everything `LifecycleConfig.from_env` reads (TRACKSIDE_DATA_DIR, TRACKSIDE_DATABASE_URL,
    TRACKSIDE_SECRET_KEY ...), TRACKSIDE_PUB_URL (the gateway's address as jobs and users reach
    it, e.g. http://pub.trackside:7205/pub; required) and TRACKSIDE_GATEWAY_TOKEN (optional: the
    gateways' credential, made a token of ESC `gateway` on start).
pub: TRACKSIDE_LIFECYCLE_URL (required), TRACKSIDE_GATEWAY_TOKEN (required),
    TRACKSIDE_PUB_AUTH_TTL (seconds a decision is fresh, default 5), TRACKSIDE_PUB_STALE_TTL
    (seconds answers are served while the lifecycle is unreachable, default 60), and what
    GatewayConfig.from_env and AsyncSettings.from_env read.
dashboard: TRACKSIDE_LIFECYCLE_URL (required), TRACKSIDE_DASHBOARD_SECRET (optional: the key its
    forms' CSRF tokens are signed with; random per process otherwise, which several replicas
    must not be) and TRACKSIDE_PUBLIC_URL (optional: the platform's root as users reach it, for
    the `trackside login` line it shows).
"""

from __future__ import annotations

import gc
import logging
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any


class ConfigurationError(Exception):
    """A required setting is missing or wrong; the message names it (exit 2)."""


class StartupFailed(Exception):
    """The component could not start with what it was given (e.g. its database is down; exit 1)."""


def serve(component: str, host: str, port: int, environ: Mapping[str, str] | None = None) -> None:
    env = dict(os.environ if environ is None else environ)
    _logging(env)
    try:
        if component == "lifecycle":
            app, stop = _lifecycle(env, host, port)
        elif component == "pub":
            app, stop = _pub(env), None
        elif component == "dashboard":
            app, stop = _dashboard(env, host, port), None
        else:
            raise ConfigurationError(f"unknown component {component!r}: lifecycle, pub or dashboard")
    except ConfigurationError as error:
        print(f"Error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    except StartupFailed as error:
        print(f"Error: {error}", file=sys.stderr)
        raise SystemExit(1) from None
    try:
        _run(app, host, port)
    finally:
        if stop is not None:
            stop()  # also when the server could not start (e.g. the port is taken)


def _required(env: Mapping[str, str], name: str, example: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ConfigurationError(f"{name} is not set (e.g. {name}={example})")
    return value


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise ConfigurationError(f"{name} must be a number of seconds, got {text!r}") from None
    if value < 0:
        raise ConfigurationError(f"{name} must not be negative, got {text!r}")
    return value


def _lifecycle(env: dict[str, str], host: str, port: int) -> tuple[Any, Callable[[], None]]:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    from lifecycle.api.app import create_app
    from lifecycle.auth.gateway_credential import BadGatewayToken, ensure_gateway_credential
    from lifecycle.config import LifecycleConfig
    from lifecycle.control_plane import ControlPlane

    pub_url = _required(env, "TRACKSIDE_PUB_URL", "http://127.0.0.1:7205/pub").rstrip("/")
    try:
        config = LifecycleConfig.from_env(embedded=False, environ=env)
    except ValueError as error:
        raise ConfigurationError(str(error)) from None
    try:
        where = make_url(config.database_url).render_as_string(hide_password=True)
    except ArgumentError:
        raise ConfigurationError(
            "TRACKSIDE_DATABASE_URL is not a database URL (e.g. postgresql://USER@HOST/DB)"
        ) from None

    def unusable(error: SQLAlchemyError) -> StartupFailed:
        problem = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        return StartupFailed(f"cannot use the database at {where} (TRACKSIDE_DATABASE_URL): {problem}")

    try:
        plane = ControlPlane(config, pub_url=pub_url)
    except ValueError as error:  # e.g. TRACKSIDE_SECRET_KEY
        raise ConfigurationError(str(error)) from None
    except SQLAlchemyError as error:
        raise unusable(error) from None
    gateway_token = env.get("TRACKSIDE_GATEWAY_TOKEN", "").strip()
    try:
        report = plane.start()
    except SQLAlchemyError as error:
        plane.stop()
        raise unusable(error) from None
    try:
        if gateway_token:
            ensure_gateway_credential(plane.db, gateway_token)
    except BadGatewayToken as error:
        plane.stop()
        raise ConfigurationError(str(error)) from None
    base = f"http://{host}:{port}"
    print(f"Trackside lifecycle: {base}/lifecycle  (API docs {base}/lifecycle/docs)", flush=True)
    print(f"gateway (TRACKSIDE_PUB_URL): {pub_url}", flush=True)
    token_file = config.data_dir / "admin-token"
    if report.admin_token:
        print(f"admin token (shown once, also in {token_file}): {report.admin_token}", flush=True)
    if not gateway_token:
        print(
            "no TRACKSIDE_GATEWAY_TOKEN: a gateway needs a token allowed call_admin_api "
            "(e.g. an ESC granted it)",
            flush=True,
        )
    return create_app(plane, stop_on_shutdown=True), plane.stop


def _pub(env: dict[str, str]) -> Any:
    from pub.app import Gateway, GatewayConfig
    from pub.async_calls import AsyncCalls
    from pub.async_runner import AsyncSettings
    from pub.dispatch import PathDispatcher
    from pub.lifecycle_async_store import LifecycleAsyncStore
    from pub.lifecycle_client import LifecycleRegistry

    lifecycle_url = _required(env, "TRACKSIDE_LIFECYCLE_URL", "http://127.0.0.1:7200")
    token = _required(env, "TRACKSIDE_GATEWAY_TOKEN", "the value given to the lifecycle")
    fresh = _seconds(env, "TRACKSIDE_PUB_AUTH_TTL", 5.0)
    stale = _seconds(env, "TRACKSIDE_PUB_STALE_TTL", 60.0)
    try:
        gateway_config = GatewayConfig.from_env(env)
        async_settings = AsyncSettings.from_env(env)
    except ValueError as error:
        raise ConfigurationError(str(error)) from None
    registry = LifecycleRegistry(lifecycle_url, token, fresh_ttl=fresh, stale_ttl=stale)
    gateway = Gateway(registry, gateway_config)
    async_calls = AsyncCalls(registry, LifecycleAsyncStore(lifecycle_url, token), async_settings)
    print(f"Trackside gateway for the lifecycle at {registry.api_url}", flush=True)
    return PathDispatcher({"/pub/async": async_calls}, gateway)


def _dashboard(env: dict[str, str], host: str, port: int) -> Any:
    from dashboard.app import create_app
    from dashboard.config import DashboardConfig
    from dashboard.lifecycle_api import LifecycleAPI

    lifecycle_url = _required(env, "TRACKSIDE_LIFECYCLE_URL", "http://127.0.0.1:7200")
    try:
        config = DashboardConfig.from_env(env)
    except ValueError as error:
        raise ConfigurationError(str(error)) from None
    api = LifecycleAPI.over_http(lifecycle_url)
    print(
        f"Trackside dashboard: http://{host}:{port}{config.prefix}  (lifecycle at {api.description})",
        flush=True,
    )
    return create_app(config, api)


def _logging(env: Mapping[str, str]) -> None:
    logging.basicConfig(
        level=env.get("LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stdout,
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)


def _run(app: Any, host: str, port: int) -> None:
    import uvicorn

    gc.collect()
    gc.freeze()  # see trackside.embedded: long-lived objects out of the collector's full passes
    uvicorn.run(
        app,
        host=host,
        port=port,
        http="httptools",
        ws="wsproto",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
    )
