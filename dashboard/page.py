"""A page request: who asks (the session), the checked form, and the answer (a rendered page, a
redirect with a one-time notice, or a readable error page).

Every handler is wrapped by `page(...)`, which
- sends a visitor without a valid session to the sign-in page (coming back afterwards),
- checks the CSRF token of every POST (403 page otherwise),
- keeps admin pages to those who may administer (403 page otherwise),
- turns the lifecycle's refusals into pages with its message (a 401 signs the user out).
"""

from __future__ import annotations

import functools
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlencode, urlsplit

from jinja2 import Environment
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from .config import DashboardConfig
from .csrf import FIELD as CSRF_FIELD
from .csrf import CsrfGuard
from .lifecycle_api import LifecycleAPI, LifecycleError
from .session import Identities, Identity, clear_session_cookie, session_token

logger = logging.getLogger("trackside.dashboard")

FLASH_COOKIE = "trackside_flash"
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}
_TITLES = {
    400: "That did not work",
    401: "Please sign in",
    403: "Not allowed",
    404: "Not found",
    409: "Conflict",
    500: "Something went wrong",
    503: "The lifecycle is not reachable",
}


@dataclass
class Dashboard:
    """What every page shares: made once per app."""

    config: DashboardConfig
    api: LifecycleAPI
    identities: Identities
    csrf: CsrfGuard
    templates: Environment
    static_version: str

    def url(self, path: str = "") -> str:
        return self.config.prefix + path

    def gateway_link(self, pub_url: str) -> str:
        """A job's address on the gateway, as a link: path-only when the gateway shares our origin."""
        if self.config.same_origin_gateway:
            parts = urlsplit(pub_url)
            return parts.path + (f"?{parts.query}" if parts.query else "")
        return pub_url


class PageRequest:
    def __init__(self, request: Request, dash: Dashboard, token: str | None, me: Identity | None) -> None:
        self.request = request
        self.dash = dash
        self.token = token
        self.me = me
        self.form: FormData = FormData()

    # ---- the lifecycle, as the signed-in user ---------------------------------------------------

    async def get(self, path: str, **params: Any) -> Any:
        return await self.dash.api.get(path, self.token, **params)

    async def post(self, path: str, json: Any = None) -> Any:
        return await self.dash.api.post(path, self.token, json)

    async def call(self, method: str, path: str, json: Any = None) -> Any:
        return await self.dash.api.call(method, path, self.token, json=json)

    # ---- the form ---------------------------------------------------------------------------------

    def field(self, name: str, default: str = "") -> str:
        value = self.form.get(name)
        return value.strip() if isinstance(value, str) else default

    def raw_field(self, name: str) -> str:
        """The value as typed (passwords, manifests): not stripped."""
        value = self.form.get(name)
        return value if isinstance(value, str) else ""

    def checked(self, name: str) -> bool:
        return self.form.get(name) in ("on", "true", "1")

    # ---- answers -------------------------------------------------------------------------------

    @property
    def csrf_token(self) -> str:
        return self.dash.csrf.token(self.token) if self.token else ""

    def query(self, **overrides: Any) -> str:
        """This page's query string with some parameters changed (empty ones left out)."""
        params = {**self.request.query_params, **{k: str(v) for k, v in overrides.items()}}
        return urlencode({k: v for k, v in params.items() if v != ""})

    @property
    def section(self) -> str:
        """The first path segment below the prefix: `jobs`, `deployments`, `admin` ..."""
        rest = self.request.url.path[len(self.dash.url()) :]
        return rest.strip("/").split("/", 1)[0]

    def render(self, template: str, http_status: int = 200, **context: Any) -> HTMLResponse:
        flash = _read_flash(self.request)
        html = self.dash.templates.get_template(template).render(
            me=self.me,
            section=self.section,
            query=self.query,
            now=time.time(),
            csrf_field=CSRF_FIELD,
            csrf_token=self.csrf_token,
            url=self.dash.url,
            static=lambda name: f"{self.dash.url('/static/')}{name}?v={self.dash.static_version}",
            gateway_link=self.dash.gateway_link,
            flash=flash,
            **context,
        )
        response = HTMLResponse(
            html, status_code=http_status, headers={**SECURITY_HEADERS, "Cache-Control": "no-store"}
        )
        if flash is not None:
            response.delete_cookie(FLASH_COOKIE, path=self.dash.url())
        return response

    def redirect(self, path: str, notice: str | None = None, error: str | None = None) -> RedirectResponse:
        """303 to a page of the dashboard (`path` below the prefix), with a message shown once there."""
        response = RedirectResponse(self.dash.url(path), status_code=303)
        if notice or error:
            value = json.dumps({"kind": "error" if error else "ok", "text": error or notice})
            response.set_cookie(
                FLASH_COOKIE, quote(value), path=self.dash.url(), httponly=True, samesite="lax", max_age=60
            )
        return response

    def error_page(self, status: int, message: str, title: str | None = None) -> HTMLResponse:
        return self.render(
            "error.html",
            http_status=status,
            status_code=status,
            title=title or _TITLES.get(status, "Error"),
            message=message,
        )


def _read_flash(request: Request) -> dict[str, str] | None:
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return None
    try:
        value = json.loads(unquote(raw))
    except ValueError:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("text"), str):
        return None
    return {"kind": "error" if value.get("kind") == "error" else "ok", "text": value["text"][:500]}


def sign_in_redirect(request: Request, dash: Dashboard) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if request.method != "GET" or not target.startswith(dash.url()):
        target = dash.url("/jobs")
    response = RedirectResponse(dash.url(f"/sign-in?next={quote(target, safe='')}"), status_code=303)
    if session_token(request):
        clear_session_cookie(response, request)
    return response


Handler = Callable[[PageRequest], Awaitable[Response]]


def page(
    *, admin: bool = False, public: bool = False
) -> Callable[[Handler], Callable[[Request], Awaitable[Response]]]:
    def wrap(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        @functools.wraps(handler)
        async def endpoint(request: Request) -> Response:
            started = time.perf_counter()
            response = await answer(request)
            # how long the page took on the server (its lifecycle calls included): what
            # benchmarks/dashboard.py reports, and what a browser's developer tools show
            response.headers["Server-Timing"] = f"page;dur={(time.perf_counter() - started) * 1000:.2f}"
            return response

        async def answer(request: Request) -> Response:
            dash: Dashboard = request.app.state.dashboard
            token = session_token(request)
            ctx = PageRequest(request, dash, token, None)
            try:
                ctx.me = await dash.identities.of(token)
            except LifecycleError as e:
                return ctx.error_page(e.status if e.status >= 500 else 503, e.message)
            if ctx.me is None and not public:
                return sign_in_redirect(request, dash)
            if request.method == "POST":
                ctx.form = await request.form()
                if not public and not dash.csrf.valid(_str(ctx.form.get(CSRF_FIELD)), token):
                    return ctx.error_page(
                        403,
                        "This form was sent without a valid security token (it may have come from another "
                        "site, or from a page opened before you signed in again). Go back, reload the "
                        "page and try again.",
                        "Form refused",
                    )
            if admin and (ctx.me is None or not ctx.me.can_administer):
                return ctx.error_page(
                    403, "The admin pages are for admins and for users granted call_admin_api."
                )
            try:
                return await handler(ctx)
            except LifecycleError as e:
                if e.status == 401:
                    dash.identities.forget(token or "")
                    return sign_in_redirect(request, dash)
                return ctx.error_page(e.status if e.status in _TITLES else 500, e.message)
            except Exception as e:  # a bug: a page that says so, the traceback in the log only
                return crash_page(ctx, e)

        return endpoint

    return wrap


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def crash_page(ctx: PageRequest, error: BaseException) -> Response:
    """500, with a reference to find the traceback by in the log."""
    ref = secrets.token_hex(4)
    request = ctx.request
    logger.error("dashboard error %s in %s %s", ref, request.method, request.url.path, exc_info=error)
    try:
        return ctx.render(
            "error.html",
            http_status=500,
            status_code=500,
            title=_TITLES[500],
            message="The dashboard could not show this page. The error is in the platform's log.",
            reference=ref,
        )
    except Exception:  # the templates themselves: a plain page still says what happened
        return Response(f"Something went wrong (reference {ref}).", status_code=500, media_type="text/plain")
