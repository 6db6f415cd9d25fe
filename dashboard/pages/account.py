"""Signing in and out, and the user's own profile: CLI token, password, tokens."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from ..csrf import FIELD as CSRF_FIELD
from ..csrf import SIGN_IN_COOKIE
from ..lifecycle_api import LifecycleError
from ..lifecycle_api import segment as seg
from ..page import PageRequest, page
from ..session import clear_session_cookie, set_session_cookie

SIGN_IN_PURPOSE = "sign-in"
CLI_TOKEN_DESCRIPTION = "CLI token (dashboard)"
SESSION_TOKEN_DESCRIPTION = "dashboard session"


def _next(ctx: PageRequest, value: str | None) -> str:
    """Where to go after signing in: a page of the dashboard only (no other site)."""
    prefix = ctx.dash.url()
    if value and value.startswith(prefix + "/") and not value.startswith("//") and "\\" not in value:
        return value
    return ctx.dash.url("/jobs")


def _sign_in_page(
    ctx: PageRequest,
    next_url: str,
    username: str = "",
    error: str | None = None,
    status: int = 200,
    token_error: bool = False,
) -> Response:
    nonce = ctx.request.cookies.get(SIGN_IN_COOKIE) or ctx.dash.csrf.new_nonce()
    response = ctx.render(
        "sign_in.html",
        http_status=status,
        next=next_url,
        username=username,
        error=error,
        token_error=token_error,
        sign_in_token=ctx.dash.csrf.token(nonce, SIGN_IN_PURPOSE),
    )
    response.set_cookie(
        SIGN_IN_COOKIE,
        nonce,
        httponly=True,
        samesite="lax",
        path=ctx.dash.url(),
        max_age=3600,
        secure=ctx.request.url.scheme == "https",
    )
    return response


@page(public=True)
async def sign_in_form(ctx: PageRequest) -> Response:
    next_url = _next(ctx, ctx.request.query_params.get("next"))
    if ctx.me is not None:
        return RedirectResponse(next_url, status_code=303)
    return _sign_in_page(ctx, next_url)


@page(public=True)
async def sign_in(ctx: PageRequest) -> Response:
    next_url = _next(ctx, ctx.field("next"))
    username = ctx.field("username")
    nonce = ctx.request.cookies.get(SIGN_IN_COOKIE)
    if not ctx.dash.csrf.valid(ctx.field(CSRF_FIELD), nonce, SIGN_IN_PURPOSE):
        return _sign_in_page(
            ctx,
            next_url,
            username,
            "The sign-in form had expired (or came from another site): please try again.",
            403,
        )
    api_token = ctx.field("token")
    if api_token:
        return await _sign_in_with_token(ctx, next_url, api_token)
    password = ctx.raw_field("password")
    if not username or not password:
        return _sign_in_page(ctx, next_url, username, "Enter your user name and password.", 400)
    try:
        body = await ctx.dash.api.post("/users/login", None, {"username": username, "password": password})
    except LifecycleError as e:
        if e.status == 401:
            return _sign_in_page(
                ctx, next_url, username, "Wrong user name or password (or the user is deactivated).", 401
            )
        return _sign_in_page(ctx, next_url, username, e.message, e.status if e.status >= 400 else 500)
    return _signed_in(ctx, next_url, str(body["token"]))


def _signed_in(ctx: PageRequest, next_url: str, token: str) -> Response:
    response = RedirectResponse(next_url, status_code=303)
    set_session_cookie(response, ctx.request, token)
    response.delete_cookie(SIGN_IN_COOKIE, path=ctx.dash.url())
    return response


async def _sign_in_with_token(ctx: PageRequest, next_url: str, api_token: str) -> Response:
    """A user's API token buys a session token of the browser's own (signing out revokes that
    one, never the token given)."""
    api = ctx.dash.api
    try:
        me = await api.get("/users/me", api_token)
        if me["subject_type"] != "user":
            return _sign_in_page(
                ctx,
                next_url,
                "",
                f"{me['subject']} is not a user: only users sign in here.",
                403,
                token_error=True,
            )
        issued = await api.post(
            f"/users/{seg(me['username'])}/tokens", api_token, {"description": SESSION_TOKEN_DESCRIPTION}
        )
    except LifecycleError as e:
        message = "The token is not valid (or expired, or revoked)." if e.status == 401 else e.message
        return _sign_in_page(
            ctx, next_url, "", message, e.status if e.status >= 400 else 500, token_error=True
        )
    return _signed_in(ctx, next_url, str(issued["token"]))


@page()
async def sign_out(ctx: PageRequest) -> Response:
    try:
        await ctx.post("/users/logout")
    except LifecycleError as e:
        if e.status not in (401, 409):
            raise
    if ctx.token:
        ctx.dash.identities.forget(ctx.token)
    response = ctx.redirect("/sign-in", notice="You are signed out.")
    clear_session_cookie(response, ctx.request)
    return response


# ---- profile ------------------------------------------------------------------------------------


def _remote(ctx: PageRequest) -> str:
    """The platform's root as the user reaches it: what `trackside login --remote` takes."""
    if ctx.dash.config.public_url:
        return ctx.dash.config.public_url
    url = ctx.request.url
    return f"{url.scheme}://{url.netloc}"


async def _profile(ctx: PageRequest, status: int = 200, **extra: Any) -> Response:
    assert ctx.me is not None
    tokens = await ctx.get(f"/users/{seg(ctx.me.username)}/tokens")
    context = {"new_token": None, "login_line": None, "password_error": None, **extra}
    return ctx.render("profile.html", http_status=status, tokens=tokens, **context)


@page()
async def profile(ctx: PageRequest) -> Response:
    return await _profile(ctx)


@page()
async def regenerate_token(ctx: PageRequest) -> Response:
    assert ctx.me is not None
    user = seg(ctx.me.username)
    days = ctx.field("expires_in_days")
    body: dict[str, Any] = {"description": CLI_TOKEN_DESCRIPTION}
    if days:
        if not days.isdigit() or not 1 <= int(days) <= 3650:
            return ctx.redirect("/profile", error="Expiry: choose a number of days from the list.")
        body["expires_in_days"] = int(days)
    for token in await ctx.get(f"/users/{user}/tokens"):
        if token["description"] == CLI_TOKEN_DESCRIPTION and token["id"] != ctx.me.token_id:
            await ctx.call("DELETE", f"/tokens/{token['id']}")
    issued = await ctx.post(f"/users/{user}/tokens", body)
    login_line = f"trackside login {issued['token']} --remote {_remote(ctx)}"
    return await _profile(ctx, new_token=issued["token"], login_line=login_line)


@page()
async def change_password(ctx: PageRequest) -> Response:
    assert ctx.me is not None
    new = ctx.raw_field("new_password")
    if new != ctx.raw_field("repeat_password"):
        return await _profile(
            ctx, 400, password_error={"message": "The two new passwords differ.", "errors": []}
        )
    try:
        await ctx.call(
            "PUT",
            f"/users/{seg(ctx.me.username)}/password",
            {"old_password": ctx.raw_field("old_password") or None, "new_password": new},
        )
    except LifecycleError as e:
        if e.status in (400, 403):
            message = "The current password is wrong." if e.status == 403 else e.message
            return await _profile(ctx, e.status, password_error={"message": message, "errors": e.errors})
        raise
    return ctx.redirect("/profile", notice="Your password was changed.")


@page()
async def revoke_own_token(ctx: PageRequest) -> Response:
    token_id = ctx.request.path_params["token_id"]
    await ctx.call("DELETE", f"/tokens/{token_id}")
    return ctx.redirect("/profile", notice=f"Token {token_id} was revoked.")


def _root(request: Request) -> Response:
    return RedirectResponse(request.app.state.dashboard.url("/jobs"), status_code=307)


routes = [
    Route("/", _root),
    Route("/sign-in", sign_in_form, methods=["GET"]),
    Route("/sign-in", sign_in, methods=["POST"]),
    Route("/sign-out", sign_out, methods=["POST"]),
    Route("/profile", profile, methods=["GET"]),
    Route("/profile/token", regenerate_token, methods=["POST"]),
    Route("/profile/password", change_password, methods=["POST"]),
    Route("/profile/tokens/{token_id:int}/revoke", revoke_own_token, methods=["POST"]),
]
