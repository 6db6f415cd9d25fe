"""The jobs page (every version the user may read, live) and one job version's page (status,
metrics, public endpoints, deployment history, logs, manifest; redeploy and delete)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Any, TypeVar

from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from .. import job_list
from ..event_proxy import proxy_events
from ..lifecycle_api import LifecycleError
from ..lifecycle_api import segment as seg
from ..page import PageRequest, page

T = TypeVar("T")
DEFAULT_TAIL = 100
MAX_TAIL = 10_000
BUILD_LOG_TAIL = 2_000
HISTORY = 20


@page()
async def jobs(ctx: PageRequest) -> Response:
    params = ctx.request.query_params
    q, status = params.get("q", "").strip(), params.get("status", "")
    sort, order = params.get("sort", "name"), params.get("order", "")
    overview = await ctx.get("/jobs/overview")
    listing = job_list.build(
        overview["jobs"],
        q,
        status if status in job_list.STATUSES else "",
        sort,
        order,
        now=time.time(),
        link=ctx.dash.gateway_link,
    )
    sort = sort if sort in job_list.SORTS else "name"
    descending = order == "desc" if order in ("asc", "desc") else sort in ("last_call", "updated")
    return ctx.render(
        "jobs.html",
        list=listing,
        readable=overview["readable"],
        q=q,
        status=status,
        sort=sort,
        order=order,
        descending=descending,
    )


@page()
async def job_events(ctx: PageRequest) -> Response:
    return await proxy_events(ctx, "/jobs/overview/events")


async def _or_error(call: Awaitable[T]) -> T | LifecycleError:
    try:
        return await call
    except LifecycleError as e:
        if e.status == 401:
            raise
        return e


def _tail(text: str | None) -> int:
    try:
        return max(10, min(int(text or DEFAULT_TAIL), MAX_TAIL))
    except ValueError:
        return DEFAULT_TAIL


@page()
async def job_page(ctx: PageRequest) -> Response:
    name, version = ctx.request.path_params["name"], ctx.request.path_params["version"]
    job = await ctx.get(f"/job/{seg(name)}/{seg(version)}")
    if job["version"] != version:  # `latest` or a wildcard: show the version's own address
        return RedirectResponse(
            ctx.dash.url(f"/jobs/{seg(job['name'])}/{seg(job['version'])}"), status_code=307
        )
    tail = _tail(ctx.request.query_params.get("tail"))
    base = f"/job/{seg(name)}/{seg(version)}"
    running = job["status"] == "running"

    async def nothing() -> None:
        return None

    family, history, metrics, endpoints, logs, build = await asyncio.gather(
        _or_error(ctx.get("/jobs/overview", name=name)),
        _or_error(ctx.get("/deployments", job_name=name, job_version=version, limit=HISTORY)),
        _or_error(ctx.get(f"{base}/metrics-summary")) if running else _or_error(nothing()),
        _or_error(ctx.get(f"{base}/public-endpoints")),
        _or_error(ctx.get(f"{base}/logs", tail=tail)),
        _or_error(ctx.get(f"{base}/build-logs", tail=BUILD_LOG_TAIL)),
    )
    versions: list[dict[str, Any]] = [] if isinstance(family, LifecycleError) else family["jobs"]
    versions.sort(key=lambda v: job_list.version_key(v["version"]), reverse=True)
    entry = next((v for v in versions if v["version"] == version), None)
    metrics_error = None
    if isinstance(metrics, LifecycleError):
        metrics_error, metrics = f"Metrics could not be read: {metrics.message}", None
    elif metrics is not None and metrics["replicas_read"] == 0:
        metrics_error, metrics = (
            "Metrics could not be read from the job: " + "; ".join(metrics["errors"] or ["no ready replica"]),
            None,
        )
    return ctx.render(
        "job.html",
        job=job,
        entry=entry,
        versions=versions,
        deployments=[] if isinstance(history, LifecycleError) else history,
        metrics=metrics,
        metrics_error=metrics_error,
        endpoints=[] if isinstance(endpoints, LifecycleError) else endpoints,
        logs=f"(the log cannot be read: {logs.message})"
        if isinstance(logs, LifecycleError)
        else logs["logs"],
        tail=tail,
        build_log="" if isinstance(build, LifecycleError) else build["logs"],
        build_log_deployment=None if isinstance(build, LifecycleError) else build.get("deployment_id"),
    )


@page()
async def follow_logs(ctx: PageRequest) -> Response:
    name, version = ctx.request.path_params["name"], ctx.request.path_params["version"]
    tail = ctx.request.query_params.get("tail", "0")
    return await proxy_events(
        ctx, f"/job/{seg(name)}/{seg(version)}/logs/stream", {"tail": tail if tail.isdigit() else "0"}
    )


@page()
async def delete_job(ctx: PageRequest) -> Response:
    name, version = ctx.request.path_params["name"], ctx.request.path_params["version"]
    back = f"/jobs/{seg(name)}/{seg(version)}"
    if ctx.field("confirm") != name:
        return ctx.redirect(back + "#actions", error=f"Not deleted: type the job's name, {name}, to confirm.")
    try:
        await ctx.call("DELETE", f"/job/{seg(name)}/{seg(version)}")
    except LifecycleError as e:
        if e.status in (403, 404, 409):
            return ctx.redirect(back if e.status != 404 else "/jobs", error=f"Not deleted: {e.message}")
        raise
    return ctx.redirect("/jobs", notice=f"{name} {version} was deleted.")


@page()
async def redeploy_job(ctx: PageRequest) -> Response:
    name, version = ctx.request.path_params["name"], ctx.request.path_params["version"]
    try:
        started = await ctx.post(f"/job/{seg(name)}/{seg(version)}/redeploy")
    except LifecycleError as e:
        if e.status in (400, 403, 404, 409):
            return ctx.redirect(f"/jobs/{seg(name)}/{seg(version)}", error=f"Not redeployed: {e.message}")
        raise
    return ctx.redirect(f"/deployments/{started['id']}", notice=f"Redeploying {name} {version}.")


routes = [
    Route("/jobs", jobs, methods=["GET"]),
    Route("/jobs/events", job_events, methods=["GET"]),
    Route("/jobs/{name}/{version}", job_page, methods=["GET"]),
    Route("/jobs/{name}/{version}/logs/stream", follow_logs, methods=["GET"]),
    Route("/jobs/{name}/{version}/delete", delete_job, methods=["POST"]),
    Route("/jobs/{name}/{version}/redeploy", redeploy_job, methods=["POST"]),
]
