"""API errors: every failure is JSON `{"error", "type"}` with the right status code."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger("trackside.lifecycle.api")


class APIError(Exception):
    status = 500
    type = "InternalError"

    def __init__(self, message: str, **extra: object) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra


class NotImplementedByTrackside(APIError):
    status, type = 501, "NotImplemented"


class BadRequest(APIError):
    status, type = 400, "BadRequest"


class Unauthenticated(APIError):
    status, type = 401, "Unauthenticated"


class Forbidden(APIError):
    status, type = 403, "Forbidden"


class NotFound(APIError):
    status, type = 404, "NotFound"


class Conflict(APIError):
    status, type = 409, "Conflict"


def _body(message: str, error_type: str, **extra: object) -> dict[str, object]:
    return {"error": message, "type": error_type, **extra}


def _field(loc: tuple[object, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    return ".".join(parts) or "body"


def install(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def api_error(_: Request, exc: APIError) -> JSONResponse:
        return JSONResponse(_body(exc.message, exc.type, **exc.extra), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": _field(tuple(e.get("loc", ()))), "message": e.get("msg", "")} for e in exc.errors()
        ]
        summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:10])
        return JSONResponse(
            _body(f"invalid request: {summary}", "InvalidRequest", errors=errors), status_code=400
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = {404: "NotFound", 405: "MethodNotAllowed"}.get(exc.status_code, "HTTPError")
        return JSONResponse(_body(str(exc.detail), kind), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unexpected error in %s %s", request.method, request.url.path)
        return JSONResponse(
            _body(f"internal error: {exc.__class__.__name__}", "InternalError"), status_code=500
        )


class InvalidRequest(BadRequest):
    type = "InvalidRequest"  # what request-validation errors are called too


def field_error(field: str, message: str) -> BadRequest:
    """A 400 shaped like the request-validation errors: `errors: [{field, message}]`."""
    return InvalidRequest(
        f"invalid request: {field}: {message}", errors=[{"field": field, "message": message}]
    )
