"""The job's OpenAPI document: real argument types, input examples, the gateway's auth header."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from . import docstrings
from .arguments import ArgumentBinder

REF_TEMPLATE = "#/components/schemas/{name}"

_ERROR_SCHEMA = {
    "type": "object",
    "properties": {"error": {"type": "string"}, "type": {"type": "string"}},
    "required": ["error", "type"],
}


@dataclass(frozen=True)
class CallableEndpoint:
    """A job method exposed as POST: perform or an auxiliary endpoint."""

    path: str  # e.g. "/api/v1/perform"
    short_path: str  # as job authors name it, e.g. "/perform"
    method: Any
    binder: ArgumentBinder
    is_async: bool
    summary: str
    example: dict[str, Any] | None


def _return_schema(method: Any, components: dict[str, Any]) -> dict[str, Any]:
    annotation = getattr(method, "__annotations__", {}).get("return")
    if annotation is None:
        return {}
    try:
        import typing

        annotation = typing.get_type_hints(method).get("return", annotation)
        (schema,), defs = msgspec.json.schema_components([annotation], ref_template=REF_TEMPLATE)
    except Exception:
        return {}
    components.update(defs)
    return dict(schema)


def build(
    title: str,
    version: str,
    server_prefix: str,
    endpoints: list[CallableEndpoint],
    static_paths: list[str],
    has_webview: bool,
) -> dict[str, Any]:
    components: dict[str, Any] = {"Error": _ERROR_SCHEMA}
    paths: dict[str, Any] = {}
    for ep in endpoints:
        schema, defs = ep.binder.json_schema(REF_TEMPLATE)
        components.update(defs)
        schema_name = "Arguments_" + (ep.short_path.strip("/").replace("/", "_") or "root")
        schema["title"] = schema_name
        components[schema_name] = schema
        media: dict[str, Any] = {"schema": {"$ref": REF_TEMPLATE.format(name=schema_name)}}
        if ep.example is not None:
            media["example"] = ep.example
        description = docstrings.summary(ep.method)
        paths[ep.path] = {
            "post": {
                "summary": ep.summary,
                "description": description,
                "operationId": "call" + ep.path.replace("/", "_").replace("-", "_").replace(".", "_"),
                "tags": ["API"],
                "requestBody": {"required": True, "content": {"application/json": media}},
                "responses": {
                    "200": {
                        "description": "Result",
                        "content": {"application/json": {"schema": _return_schema(ep.method, components)}},
                    },
                    "400": _error_response("The job rejected the input (ValueError)"),
                    "422": _error_response("The body does not match the parameters"),
                    "429": _error_response("Too many requests waiting"),
                    "500": _error_response("The job failed"),
                },
            }
        }
    paths["/api/v1/parameters"] = {
        "get": {
            "summary": "Parameters of perform",
            "tags": ["API"],
            "operationId": "parameters",
            "responses": {"200": {"description": "Name, type, default, required and description of each"}},
        }
    }
    for p in static_paths:
        paths[p] = {
            "get": {
                "summary": f"Static content: {p}",
                "tags": ["Static"],
                "operationId": "static" + p.replace("/", "_").replace("-", "_").replace(".", "_"),
                "responses": {"200": {"description": "File content"}},
            }
        }
    if has_webview:
        paths["/api/v1/webview/"] = {
            "get": {
                "summary": "The job's web UI",
                "tags": ["Webview"],
                "operationId": "webview",
                "responses": {"200": {"description": "HTML"}},
            }
        }
    for p, summary in (
        ("/live", "Liveness"),
        ("/ready", "Readiness"),
        ("/health", "Health"),
        ("/metrics", "Prometheus metrics"),
    ):
        paths[p] = {
            "get": {
                "summary": summary,
                "tags": ["Status"],
                "operationId": p.strip("/"),
                "responses": {"200": {"description": summary}},
            }
        }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": version,
            "description": "A Trackside job: a Python class served over HTTP.",
        },
        "servers": [{"url": server_prefix or "/"}],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "RacetrackAuth": {"type": "apiKey", "in": "header", "name": "X-Racetrack-Auth"}
            },
        },
        "security": [{"RacetrackAuth": []}, {}],
    }


def _error_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": REF_TEMPLATE.format(name="Error")}}},
    }
