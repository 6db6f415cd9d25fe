"""Admin pages (admins and users granted call_admin_api): users, ESCs and their tokens,
permissions, public endpoint requests, the audit log. The lifecycle checks every call again."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from starlette.responses import Response
from starlette.routing import Route

from ..lifecycle_api import LifecycleError
from ..lifecycle_api import segment as seg
from ..page import PageRequest, page

SUBJECT_TYPES = (("user", "User"), ("esc", "ESC"), ("family", "Job family"))
SCOPES = (
    "read_job",
    "call_job",
    "deploy_job",
    "deploy_new_family",
    "delete_job",
    "call_admin_api",
    "full_access",
)
ENDPOINT_STATES = ("pending", "approved", "rejected")
AUDIT_ACTIONS = (
    "deploy",
    "delete",
    "permission.grant",
    "permission.revoke",
    "public_endpoint.request",
    "public_endpoint.approve",
    "public_endpoint.reject",
    "token.create",
    "token.revoke",
    "user.create",
    "user.activate",
    "user.deactivate",
    "user.set_admin",
    "user.change_password",
    "user.delete",
    "esc.create",
    "esc.delete",
)
AUDIT_PAGE = 100
# form checks the lifecycle would refuse with a 400 anyway: refused to the user in the same words
_REFUSED = (400, 403, 404, 409)


def _back(ctx: PageRequest, default: str) -> str:
    """The `next` field when it is a page of the dashboard (a path), else `default`."""
    target = ctx.field("next")
    if target.startswith("/") and not target.startswith("//") and "\\" not in target and "://" not in target:
        return target
    return default


# ---- users --------------------------------------------------------------------------------------


async def _users(
    ctx: PageRequest, status: int = 200, error: dict[str, Any] | None = None, username: str = ""
) -> Response:
    users = await ctx.get("/users")
    return ctx.render(
        "admin_users.html", http_status=status, users=users, error=error, form_username=username
    )


@page(admin=True)
async def users(ctx: PageRequest) -> Response:
    return await _users(ctx)


@page(admin=True)
async def create_user(ctx: PageRequest) -> Response:
    username = ctx.field("username")
    body = {"username": username, "password": ctx.raw_field("password"), "is_admin": ctx.checked("is_admin")}
    try:
        await ctx.post("/users", body)
    except LifecycleError as e:
        if e.status in _REFUSED:
            return await _users(ctx, e.status, {"message": e.message, "errors": e.errors}, username)
        raise
    return ctx.redirect("/admin/users", notice=f"User {username} was created.")


async def _act(
    ctx: PageRequest, back: str, method: str, path: str, notice: Callable[[Any], str], json: Any = None
) -> Response:
    """One lifecycle call for a button: back to `back` saying what was done, or why it was refused."""
    try:
        answer = await ctx.call(method, path, json)
    except LifecycleError as e:
        if e.status in _REFUSED:
            return ctx.redirect(back, error=e.message)
        raise
    return ctx.redirect(back, notice=notice(answer))


async def _change_user(ctx: PageRequest, field: str, done: dict[bool, str]) -> Response:
    username = ctx.request.path_params["username"]
    value = ctx.field("value") == "true"
    return await _act(
        ctx,
        "/admin/users",
        "PATCH",
        f"/users/{seg(username)}",
        lambda _: done[value].format(username),
        {field: value},
    )


@page(admin=True)
async def set_user_active(ctx: PageRequest) -> Response:
    return await _change_user(
        ctx,
        "is_active",
        {True: "User {} is active again.", False: "User {} was deactivated: its tokens no longer work."},
    )


@page(admin=True)
async def set_user_admin(ctx: PageRequest) -> Response:
    return await _change_user(
        ctx, "is_admin", {True: "User {} is an admin now.", False: "User {} is no longer an admin."}
    )


# ---- ESCs ---------------------------------------------------------------------------------------


def _token_state(token: dict[str, Any], now: float) -> str:
    if token.get("revoked_at"):
        return "revoked"
    expires = token.get("expires_at")
    if expires and datetime.fromisoformat(expires).timestamp() <= now:
        return "expired"
    return "active"


async def _escs(ctx: PageRequest, status: int = 200, **extra: Any) -> Response:
    escs = await ctx.get("/escs")
    tokens = await asyncio.gather(
        *(ctx.get(f"/escs/{seg(esc['name'])}/tokens", include_revoked="true") for esc in escs)
    )
    now = time.time()
    for esc, esc_tokens in zip(escs, tokens, strict=True):
        for token in esc_tokens:
            token["state"] = _token_state(token, now)
        esc["tokens"] = sorted(esc_tokens, key=lambda t: (t["state"] != "active", -t["id"]))
    return ctx.render(
        "admin_escs.html", http_status=status, escs=escs, **{"new_token": None, "error": None, **extra}
    )


@page(admin=True)
async def escs(ctx: PageRequest) -> Response:
    return await _escs(ctx)


@page(admin=True)
async def create_esc(ctx: PageRequest) -> Response:
    name = ctx.field("name")
    try:
        await ctx.post("/escs", {"name": name})
    except LifecycleError as e:
        if e.status in _REFUSED:
            return await _escs(ctx, e.status, error={"message": e.message, "errors": e.errors})
        raise
    return ctx.redirect("/admin/escs", notice=f"ESC {name} was created. Give it a token, then permissions.")


@page(admin=True)
async def issue_esc_token(ctx: PageRequest) -> Response:
    name = ctx.request.path_params["name"]
    body: dict[str, Any] = {"description": ctx.field("description")}
    days = ctx.field("expires_in_days")
    if days:
        if not days.isdigit():
            return await _escs(
                ctx, 400, error={"message": "Expires after: a whole number of days.", "errors": []}
            )
        body["expires_in_days"] = int(days)
    try:
        issued = await ctx.post(f"/escs/{seg(name)}/tokens", body)
    except LifecycleError as e:
        if e.status in _REFUSED:
            return await _escs(ctx, e.status, error={"message": e.message, "errors": e.errors})
        raise
    new_token = {"esc": name, "token": issued["token"], "expires_at": issued.get("expires_at")}
    return await _escs(ctx, new_token=new_token)


@page(admin=True)
async def delete_esc(ctx: PageRequest) -> Response:
    name = ctx.request.path_params["name"]
    return await _act(
        ctx,
        "/admin/escs",
        "DELETE",
        f"/escs/{seg(name)}",
        lambda _: f"ESC {name} was deleted; its tokens no longer work.",
    )


@page(admin=True)
async def revoke_token(ctx: PageRequest) -> Response:
    token_id = ctx.request.path_params["token_id"]
    return await _act(
        ctx,
        _back(ctx, "/admin/escs"),
        "DELETE",
        f"/tokens/{token_id}",
        lambda _: f"Token {token_id} was revoked.",
    )


# ---- permissions --------------------------------------------------------------------------------


@page(admin=True)
async def permissions(ctx: PageRequest) -> Response:
    params = ctx.request.query_params
    subject_type = params.get("subject_type", "")
    subject_type = subject_type if subject_type in dict(SUBJECT_TYPES) else ""
    subject_name = params.get("subject_name", "").strip()
    job = params.get("job", "").strip()
    error = None
    try:
        rows = await ctx.get(
            "/permissions",
            subject_type=subject_type or None,
            subject_name=subject_name if subject_type else None,
        )
    except LifecycleError as e:
        if e.status not in (400, 404):
            raise
        rows, error = [], {"message": e.message, "errors": []}
    if subject_name and not subject_type:
        rows = [p for p in rows if p["subject_name"] == subject_name]
    if job:  # what applies to the family: its own permissions and those for any job
        rows = [p for p in rows if p["job_family"] in (None, job)]
    back = "/admin/permissions" + (f"?{ctx.query()}" if ctx.query() else "")
    return ctx.render(
        "admin_permissions.html",
        permissions=rows,
        error=error,
        subject_types=SUBJECT_TYPES,
        subject_labels=dict(SUBJECT_TYPES),
        scopes=SCOPES,
        subject_type=subject_type,
        subject_name=subject_name,
        job=job,
        back=back,
    )


@page(admin=True)
async def grant_permission(ctx: PageRequest) -> Response:
    back = _back(ctx, "/admin/permissions")
    body = {
        "subject_type": ctx.field("subject_type"),
        "subject_name": ctx.field("subject_name"),
        "scope": ctx.field("scope"),
        "job_family": ctx.field("job_family") or None,
        "job_version": ctx.field("job_version") or None,
        "endpoint": ctx.field("endpoint") or None,
    }
    try:
        granted = await ctx.post("/permissions", body)
    except LifecycleError as e:
        if e.status in _REFUSED:
            details = "; ".join(f"{x.get('field')}: {x.get('message')}" for x in e.errors) if e.errors else ""
            return ctx.redirect(back, error=f"Not granted: {details or e.message}")
        raise
    on = granted["job_family"] or "any job"
    if granted["job_version"]:
        on += f" {granted['job_version']}"
    if granted["endpoint"]:
        on += f" (endpoint {granted['endpoint']})"
    return ctx.redirect(back, notice=f"Granted {granted['scope']} on {on} to {granted['subject_name']}.")


@page(admin=True)
async def revoke_permission(ctx: PageRequest) -> Response:
    permission_id = ctx.request.path_params["permission_id"]
    return await _act(
        ctx,
        _back(ctx, "/admin/permissions"),
        "DELETE",
        f"/permissions/{permission_id}",
        lambda _: f"Permission {permission_id} was revoked.",
    )


# ---- public endpoints ---------------------------------------------------------------------------


@page(admin=True)
async def public_endpoints(ctx: PageRequest) -> Response:
    status = ctx.request.query_params.get("status", "pending")
    status = status if status in ENDPOINT_STATES else ""
    requests = await ctx.get("/public-endpoints", status=status or None)
    requests.sort(key=lambda r: r["id"], reverse=True)
    back = "/admin/public-endpoints" + (f"?{ctx.query()}" if ctx.query() else "")
    return ctx.render("admin_public_endpoints.html", requests=requests, status=status, back=back)


async def _decide(ctx: PageRequest, approve: bool) -> Response:
    request_id = ctx.request.path_params["request_id"]

    def notice(decided: dict[str, Any]) -> str:
        what = f"{decided['endpoint']} of {decided['job_name']} {decided['job_version']}"
        return (
            f"Approved: {what} is callable without a token."
            if approve
            else f"Rejected: {what} needs a token."
        )

    return await _act(
        ctx,
        _back(ctx, "/admin/public-endpoints"),
        "POST",
        f"/public-endpoints/{request_id}/{'approve' if approve else 'reject'}",
        notice,
    )


@page(admin=True)
async def approve_endpoint(ctx: PageRequest) -> Response:
    return await _decide(ctx, True)


@page(admin=True)
async def reject_endpoint(ctx: PageRequest) -> Response:
    return await _decide(ctx, False)


# ---- audit log ----------------------------------------------------------------------------------


@page(admin=True)
async def audit(ctx: PageRequest) -> Response:
    params = ctx.request.query_params
    actor, action = params.get("actor", "").strip(), params.get("action", "").strip()
    before = params.get("before_id", "")
    before_id = int(before) if before.isdigit() and int(before) > 0 else None
    page_ = await ctx.get(
        "/audit", limit=AUDIT_PAGE, actor=actor or None, action=action or None, before_id=before_id
    )
    return ctx.render(
        "admin_audit.html",
        events=page_["events"],
        next_before_id=page_["next_before_id"],
        before_id=before_id,
        actor=actor,
        action=action,
        known_actions=AUDIT_ACTIONS,
    )


routes = [
    Route("/admin", users, methods=["GET"]),
    Route("/admin/users", users, methods=["GET"]),
    Route("/admin/users", create_user, methods=["POST"]),
    Route("/admin/users/{username}/active", set_user_active, methods=["POST"]),
    Route("/admin/users/{username}/admin", set_user_admin, methods=["POST"]),
    Route("/admin/escs", escs, methods=["GET"]),
    Route("/admin/escs", create_esc, methods=["POST"]),
    Route("/admin/escs/{name}/tokens", issue_esc_token, methods=["POST"]),
    Route("/admin/escs/{name}/delete", delete_esc, methods=["POST"]),
    Route("/admin/tokens/{token_id:int}/revoke", revoke_token, methods=["POST"]),
    Route("/admin/permissions", permissions, methods=["GET"]),
    Route("/admin/permissions", grant_permission, methods=["POST"]),
    Route("/admin/permissions/{permission_id:int}/revoke", revoke_permission, methods=["POST"]),
    Route("/admin/public-endpoints", public_endpoints, methods=["GET"]),
    Route("/admin/public-endpoints/{request_id:int}/approve", approve_endpoint, methods=["POST"]),
    Route("/admin/public-endpoints/{request_id:int}/reject", reject_endpoint, methods=["POST"]),
    Route("/admin/audit", audit, methods=["GET"]),
]
