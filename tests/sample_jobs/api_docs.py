"""Reading a running job's API documentation the way Swagger UI does."""

from __future__ import annotations

from typing import Any

from tests.conftest import RunningJob


def openapi_document(job: RunningJob) -> dict[str, Any]:
    response = job.client.get("/openapi.json")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    document: dict[str, Any] = response.json()
    return document


def resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref is None:
        return schema
    prefix = "#/components/schemas/"
    assert ref.startswith(prefix), ref
    return resolve(document, document["components"]["schemas"][ref[len(prefix) :]])


def request_body(document: dict[str, Any], path: str) -> tuple[dict[str, Any], Any]:
    """(argument schema with references resolved, input example) of `POST path`."""
    media = document["paths"][path]["post"]["requestBody"]["content"]["application/json"]
    return resolve(document, media["schema"]), media.get("example")


def shape(document: dict[str, Any], schema: dict[str, Any]) -> Any:
    """A schema reduced to its type: "number", ["number"] for a list of numbers, [["number"]] ..."""
    schema = resolve(document, schema)
    if schema.get("type") == "array":
        return [shape(document, schema.get("items", {}))]
    return schema.get("type")


def argument_types(document: dict[str, Any], path: str) -> dict[str, Any]:
    schema, _ = request_body(document, path)
    return {name: shape(document, prop) for name, prop in schema.get("properties", {}).items()}


def required_arguments(document: dict[str, Any], path: str) -> set[str]:
    schema, _ = request_body(document, path)
    return set(schema.get("required", []))


def assert_swagger_page(job: RunningJob, prefix: str = "") -> None:
    """GET /docs is Swagger UI pointing at the job's own OpenAPI document, with its assets served."""
    page = job.client.get(prefix + "/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "SwaggerUIBundle" in page.text
    assert f'"{prefix}/openapi.json"' in page.text
    bundle = job.client.get(prefix + "/docs/assets/swagger-ui-bundle.js")
    assert bundle.status_code == 200
    assert "javascript" in bundle.headers["content-type"]
