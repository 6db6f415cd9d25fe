"""Deployments: the recent ones (live), one deployment's progress (live), and the deploy form for
people who do not use the CLI."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import yaml
from starlette.responses import Response
from starlette.routing import Route

from ..event_proxy import proxy_events
from ..lifecycle_api import LifecycleError
from ..lifecycle_api import segment as seg
from ..page import PageRequest, page

# the lifecycle's deploy phases, in order (DESIGN §2.3)
PHASES = (
    "fetching the source code",
    "building the environment",
    "starting the job",
    "initialising the entrypoint",
    "checking the input examples",
    "done",
)
DEPLOYMENT_STATUSES = ("in_progress", "done", "failed")
RECENT = 50
MANIFEST_PLACEHOLDER = """name: adder
owner_email: you@example.com
jobtype: python3:latest
version: 0.0.1
git:
  remote: https://github.com/you/your-repo
jobtype_extra:
  entrypoint_path: entrypoint.py
"""


@page()
async def deployments(ctx: PageRequest) -> Response:
    job = ctx.request.query_params.get("job", "").strip()
    status = ctx.request.query_params.get("status", "")
    status = status if status in DEPLOYMENT_STATUSES else ""
    recent = await ctx.get("/deployments", job_name=job or None, status=status or None, limit=RECENT)
    return ctx.render(
        "deployments.html", deployments=recent, job_filter=job, status_filter=status, phase_count=len(PHASES)
    )


@page()
async def deployment_changes(ctx: PageRequest) -> Response:
    job = ctx.request.query_params.get("job", "").strip()
    return await proxy_events(ctx, "/deployments/events", {"job_name": job} if job else None)


def _form(
    ctx: PageRequest, status: int = 200, error: dict[str, Any] | None = None, **values: Any
) -> Response:
    return ctx.render(
        "deploy_form.html",
        http_status=status,
        error=error,
        manifest=values.get("manifest", ""),
        git_username=values.get("git_username", ""),
        force=values.get("force", False),
        placeholder=MANIFEST_PLACEHOLDER,
    )


@page()
async def new_deployment(ctx: PageRequest) -> Response:
    return _form(ctx)


def parse_manifest_text(text: str) -> dict[str, Any]:
    """The manifest as a mapping; ValueError naming the line when the YAML is not one."""
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ValueError(f"The manifest is not valid YAML{where}: {problem}") from None
    if not isinstance(loaded, dict):
        raise ValueError("The manifest must be a YAML mapping (name: ..., owner_email: ..., ...).")
    return loaded


@page()
async def submit_deployment(ctx: PageRequest) -> Response:
    text = ctx.raw_field("manifest")
    values = {"manifest": text, "git_username": ctx.field("git_username"), "force": ctx.checked("force")}
    try:
        manifest = parse_manifest_text(text)
    except ValueError as e:
        return _form(ctx, 400, {"message": str(e), "errors": []}, **values)
    body: dict[str, Any] = {"manifest": manifest, "force": values["force"]}
    password = ctx.raw_field("git_password")
    if values["git_username"] or password:
        body["git_credentials"] = {"username": values["git_username"], "password": password}
    try:
        started = await ctx.post("/deploy", body)
    except LifecycleError as e:
        if e.status in (400, 403, 409):
            return _form(ctx, e.status, {"message": e.message, "errors": e.errors}, **values)
        raise
    return ctx.redirect(f"/deployments/{seg(started['id'])}")


def phase_view(deployment: dict[str, Any], now: float | None = None) -> list[dict[str, Any]]:
    """Every phase (the known ones, then any other recorded) with its state and duration."""
    recorded = list(deployment.get("phases") or [])
    starts = [_timestamp(p.get("started_at")) for p in recorded]
    finished = deployment.get("finish_time")
    status = deployment["status"]
    now = time.time() if now is None else now
    by_name = {p.get("name"): i for i, p in enumerate(recorded)}
    names = list(PHASES) + [p.get("name") for p in recorded if p.get("name") not in PHASES]
    view = []
    for name in names:
        index = by_name.get(name)
        if index is None:
            view.append({"name": name, "state": "waiting", "started_at": None, "duration_s": None})
            continue
        last = index == len(recorded) - 1
        end = (finished or now) if last else starts[index + 1]
        start = starts[index]
        state = "done"
        if last and status == "in_progress":
            state = "current"
        elif last and status == "failed":
            state = "failed"
        view.append(
            {
                "name": name,
                "state": state,
                "started_at": recorded[index].get("started_at"),
                "duration_s": None if start is None or end is None else max(end - start, 0.0),
            }
        )
    return view


def _timestamp(text: Any) -> float | None:
    try:
        return datetime.fromisoformat(str(text)).timestamp()
    except ValueError:
        return None


@page()
async def deployment(ctx: PageRequest) -> Response:
    deployment_id = ctx.request.path_params["deployment_id"]
    found = await ctx.get(f"/deploy/{seg(deployment_id)}")
    now = time.time()
    found["duration_s"] = (found.get("finish_time") or now) - found["create_time"]
    found["warnings"] = [w for w in (found.get("warnings") or "").split("\n") if w]
    build_log, known = "", False
    if found["status"] != "in_progress":
        try:
            log = await ctx.get(f"/job/{seg(found['job_name'])}/{seg(found['job_version'])}/build-logs")
        except LifecycleError as e:
            if e.status == 401:
                raise
        else:
            if log.get("deployment_id") == deployment_id:
                build_log, known = log["logs"], True
    return ctx.render(
        "deployment.html", d=found, phases=phase_view(found, now), build_log=build_log, build_log_known=known
    )


@page()
async def deployment_events(ctx: PageRequest) -> Response:
    deployment_id = ctx.request.path_params["deployment_id"]
    return await proxy_events(ctx, f"/deploy/{seg(deployment_id)}/events")


routes = [
    Route("/deployments", deployments, methods=["GET"]),
    Route("/deployments", submit_deployment, methods=["POST"]),
    Route("/deployments/events", deployment_changes, methods=["GET"]),
    Route("/deployments/new", new_deployment, methods=["GET"]),
    Route("/deployments/{deployment_id}", deployment, methods=["GET"]),
    Route("/deployments/{deployment_id}/events", deployment_events, methods=["GET"]),
]
