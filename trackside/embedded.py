"""`trackside up`: the whole platform in one process: the lifecycle at /lifecycle, the gateway at
/pub and the dashboard at /dashboard (which calls the lifecycle's app in-process). The platform is
imported lazily: the CLI must start fast."""

from __future__ import annotations

import gc
import logging
import os
import sys
from pathlib import Path


def up(port: int, data_dir: Path | None, host: str = "127.0.0.1") -> None:
    import uvicorn

    from dashboard.app import create_app as create_dashboard
    from dashboard.config import DashboardConfig
    from dashboard.lifecycle_api import LifecycleAPI
    from lifecycle.api.app import create_app
    from lifecycle.config import LifecycleConfig
    from lifecycle.control_plane import ControlPlane
    from pub.app import Gateway, GatewayConfig
    from pub.async_calls import AsyncCalls
    from pub.async_runner import AsyncSettings
    from pub.dispatch import PathDispatcher
    from trackside.embedded_async_store import EmbeddedAsyncStore
    from trackside.embedded_registry import EmbeddedRegistry

    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stdout,
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # the runner's probes are not news
    environ = dict(os.environ)
    if data_dir is not None:
        environ["TRACKSIDE_DATA_DIR"] = str(data_dir)
    config = LifecycleConfig.from_env(embedded=True, environ=environ)
    try:
        dashboard_config = DashboardConfig.from_env(environ, same_origin_gateway=True)
    except ValueError as error:
        print(f"Error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    base = f"http://{host}:{port}"
    plane = ControlPlane(config, pub_url=f"{base}/pub")
    registry = EmbeddedRegistry(plane)
    gateway = Gateway(registry, GatewayConfig.from_env(environ))
    async_calls = AsyncCalls(registry, EmbeddedAsyncStore(plane.db), AsyncSettings.from_env(environ))
    lifecycle_app = create_app(plane, stop_on_shutdown=True)
    dashboard_app = create_dashboard(dashboard_config, LifecycleAPI.in_process(lifecycle_app))
    report = plane.start()
    token_file = config.data_dir / "admin-token"
    print(f"Trackside is up: lifecycle {base}/lifecycle  (API docs {base}/lifecycle/docs)", flush=True)
    print(f"gateway: {base}/pub/job/NAME/VERSION/...", flush=True)
    print(f"dashboard: {base}/dashboard  (sign in with a user's password or an API token)", flush=True)
    print(f"data directory: {config.data_dir}", flush=True)
    if report.admin_token:
        print(f"admin token (shown once, also in {token_file}): {report.admin_token}", flush=True)
    else:
        print(f"admin token: see {token_file}", flush=True)
    # everything loaded so far lives as long as the process: keep it out of the collector's full
    # passes, which otherwise stall the gateway's event loop for tens of ms under load (p99)
    gc.collect()
    gc.freeze()
    try:
        uvicorn.run(
            # longest prefix first: the dispatcher takes the first that matches
            PathDispatcher(
                {"/pub/async": async_calls, "/pub": gateway, "/dashboard": dashboard_app}, lifecycle_app
            ),
            host=host,
            port=port,
            http="httptools",
            ws="wsproto",
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=10,
        )
    finally:
        plane.stop()  # also when uvicorn failed to start (e.g. the port is taken)
