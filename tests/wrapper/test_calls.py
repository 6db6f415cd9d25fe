"""Job calls through real HTTP: arguments, results, every error code, docs and home page."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import JobRunner, RunningJob, raw_http, start_job, write_job

ENTRYPOINT = '''
import dataclasses
import datetime
import decimal
import enum
import logging

import numpy as np
import pydantic

from trackside_wrapper.logs import tracing_id_var

log = logging.getLogger("kitchen")


class Colour(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Point:
    x: int
    y: float


class Item(pydantic.BaseModel):
    name: str
    quantity: int = 1


class Kitchen:
    def perform(self, a: int, b: float = 1.5, tags: list[str] | None = None, when: datetime.date | None = None):
        """Multiply a by b.

        :param a: An integer.
        :param b: A factor.
        """
        return {"product": a * b, "tags": tags, "when": when, "types": [type(a).__name__, type(b).__name__]}

    def auxiliary_endpoints(self):
        return {
            "/fail": self.fail,
            "/bad-value": self.bad_value,
            "/types": self.types,
            "/extras": self.extras,
            "/order": self.order,
            "/untyped": self.untyped,
            "/tracing": self.tracing,
            "/unserialisable": self.unserialisable,
            "/nothing": self.nothing,
        }

    def fail(self) -> None:
        raise RuntimeError("kaboom in the job")

    def bad_value(self, n: int) -> int:
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        return n

    def types(self):
        return {
            "np_float": np.float64(1.25), "np_int": np.int64(7), "np_array": np.arange(6).reshape(2, 3),
            "np_bool": np.bool_(True), "np_strided": np.arange(10)[::3],
            "point": Point(1, 2.5), "item": Item(name="x"), "decimal": decimal.Decimal("1.10"),
            "whole_decimal": decimal.Decimal("3"), "datetime": datetime.datetime(2024, 5, 6, 7, 8, 9),
            "colour": Colour.RED, "set": {1}, "tuple": (1, 2), "int_keys": {1: "a"},
        }

    def extras(self, first: str, **kwargs):
        return {"first": first, "extras": kwargs}

    def order(self, item: Item) -> dict:
        return {"name": item.name, "quantity": item.quantity, "is_model": isinstance(item, Item)}

    def untyped(self, anything, other=3):
        return [anything, other]

    def tracing(self):
        log.info("inside the job")
        return tracing_id_var.get()

    def unserialisable(self):
        return object()

    def nothing(self):
        return None

    def docs_input_examples(self):
        return {"/perform": {"a": 2, "b": 3}, "/extras": {"first": "x", "more": 1}}
'''


@pytest.fixture(scope="module")
def kitchen(module_tmp: Path) -> Iterator[RunningJob]:
    job_dir = write_job(module_tmp / "kitchen", ENTRYPOINT, name="kitchen")
    job = start_job(job_dir, module_tmp)
    yield job
    job.stop()


def test_perform_coerces_arguments_and_applies_defaults(kitchen: RunningJob) -> None:
    r = kitchen.client.post("/api/v1/perform", json={"a": "4", "when": "2024-01-02"})
    assert r.status_code == 200
    assert r.json() == {"product": 6.0, "tags": None, "when": "2024-01-02", "types": ["int", "float"]}
    assert r.headers["content-type"] == "application/json"


def test_routes_are_served_under_any_pub_prefix(kitchen: RunningJob) -> None:
    for prefix in (
        "/pub/job/kitchen/1.2.3",
        "/pub/job/kitchen/latest",
        "/pub/job/whatever/9.x",
        "/pub/fatman/k/1",
    ):
        r = kitchen.client.post(f"{prefix}/api/v1/perform", json={"a": 1, "b": 2})
        assert r.status_code == 200, prefix
        assert r.json()["product"] == 2.0
        assert kitchen.client.get(f"{prefix}/live").status_code == 200


@pytest.mark.parametrize(
    ("body", "field", "fragment"),
    [
        ({"b": 2}, "a", "missing required field"),
        ({"a": "x"}, "a", "Expected `int`"),
        ({"a": 1, "c": 3}, "c", "unknown field"),
        ({"a": 1, "tags": "notalist"}, "tags", "Expected `array | null`"),
        ({"a": 1, "tags": [1]}, "tags.0", "Expected `str`"),
        ({"a": 1, "when": "yesterday"}, "when", "Invalid"),
    ],
)
def test_invalid_arguments_get_422_naming_the_field(
    kitchen: RunningJob, body: dict, field: str, fragment: str
) -> None:
    r = kitchen.client.post("/api/v1/perform", json=body)
    assert r.status_code == 422, r.text
    error = r.json()
    assert error["type"] == "InvalidArguments"
    assert error["error"].startswith(f"invalid arguments: {field}: ")
    assert fragment in error["error"]
    assert ".".join(str(p) for p in error["details"][0]["loc"]) == field


@pytest.mark.parametrize("body", [b"[1, 2]", b'"text"', b"42", b"null"])
def test_non_object_body_gets_422(kitchen: RunningJob, body: bytes) -> None:
    r = kitchen.client.post("/api/v1/perform", content=body)
    assert r.status_code == 422
    assert "must be a JSON object" in r.json()["error"]


@pytest.mark.parametrize("body", [b"{", b"{'a': 1}", b"not json", b'{"a": 1,}', b"\xff\xfe"])
def test_invalid_json_gets_400(kitchen: RunningJob, body: bytes) -> None:
    r = kitchen.client.post("/api/v1/perform", content=body)
    assert r.status_code == 400
    assert r.json()["type"] == "InvalidJSON"
    assert "not valid JSON" in r.json()["error"]


def test_value_error_gets_400_with_its_message(kitchen: RunningJob) -> None:
    r = kitchen.client.post("/api/v1/bad-value", json={"n": -1})
    assert r.status_code == 400
    assert r.json() == {"error": "n must be >= 0, got -1", "type": "ValueError"}
    assert kitchen.client.post("/api/v1/bad-value", json={"n": 5}).json() == 5


def test_other_errors_get_500_and_the_traceback_stays_in_the_log(kitchen: RunningJob) -> None:
    tracing_id = str(uuid.uuid4())
    r = kitchen.client.post("/api/v1/fail", json={}, headers={"X-Request-Tracing-Id": tracing_id})
    assert r.status_code == 500
    body = r.json()
    assert body["type"] == "RuntimeError"
    assert "kaboom in the job" in body["error"]
    assert "Traceback" not in r.text and "entrypoint.py" not in r.text
    logs = kitchen.wait_for_log("kaboom in the job")
    assert "Traceback (most recent call last)" in logs
    assert f"[{tracing_id}]" in logs


def test_unserialisable_result_is_a_clear_500(kitchen: RunningJob) -> None:
    r = kitchen.client.post("/api/v1/unserialisable")
    assert r.status_code == 500
    assert r.json()["type"] == "NotSerializable"
    assert "object" in r.json()["error"]


def test_common_result_types_serialise(kitchen: RunningJob) -> None:
    r = kitchen.client.post("/api/v1/types", json={})
    assert r.status_code == 200, r.text
    assert r.json() == {
        "np_float": 1.25,
        "np_int": 7,
        "np_array": [[0, 1, 2], [3, 4, 5]],
        "np_bool": True,
        "np_strided": [0, 3, 6, 9],
        "point": {"x": 1, "y": 2.5},
        "item": {"name": "x", "quantity": 1},
        "decimal": 1.1,
        "whole_decimal": 3,
        "datetime": "2024-05-06T07:08:09",
        "colour": "red",
        "set": [1],
        "tuple": [1, 2],
        "int_keys": {"1": "a"},
    }
    assert kitchen.client.post("/api/v1/nothing").json() is None


def test_kwargs_accepts_extra_arguments(kitchen: RunningJob) -> None:
    r = kitchen.client.post("/api/v1/extras", json={"first": "a", "x": 1, "y": [2]})
    assert r.json() == {"first": "a", "extras": {"x": 1, "y": [2]}}
    assert kitchen.client.post("/api/v1/extras", json={"x": 1}).status_code == 422


def test_pydantic_model_parameters_are_validated_by_pydantic(kitchen: RunningJob) -> None:
    r = kitchen.client.post("/api/v1/order", json={"item": {"name": "pen", "quantity": "3"}})
    assert r.json() == {"name": "pen", "quantity": 3, "is_model": True}
    r = kitchen.client.post("/api/v1/order", json={"item": {"quantity": 3}})
    assert r.status_code == 422
    assert r.json()["details"][0]["loc"] == ["item", "name"]


def test_untyped_parameters_pass_json_through(kitchen: RunningJob) -> None:
    assert kitchen.client.post("/api/v1/untyped", json={"anything": {"k": [1]}}).json() == [{"k": [1]}, 3]


def test_empty_body_means_no_arguments(kitchen: RunningJob) -> None:
    assert kitchen.client.post("/api/v1/nothing", content=b"").status_code == 200
    r = kitchen.client.post("/api/v1/perform", content=b"")
    assert r.status_code == 422 and "a" in r.json()["error"]


def test_tracing_id_is_generated_returned_and_visible_to_the_job(kitchen: RunningJob) -> None:
    r = kitchen.client.post("/api/v1/tracing")
    generated = r.headers["x-request-tracing-id"]
    assert uuid.UUID(generated).version == 4 and r.json() == generated
    r = kitchen.client.post("/api/v1/tracing", headers={"X-Request-Tracing-Id": "trace-me-123"})
    assert r.headers["x-request-tracing-id"] == "trace-me-123"
    assert r.json() == "trace-me-123"
    logs = kitchen.wait_for_log("[trace-me-123] kitchen: inside the job")
    assert '[trace-me-123] trackside.access: "POST /api/v1/tracing" 200' in logs


def test_method_and_path_errors(kitchen: RunningJob) -> None:
    r = kitchen.client.get("/api/v1/perform")
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    r = kitchen.client.post("/api/v1/nope")
    assert r.status_code == 404 and r.json()["type"] == "NotFound"


def test_body_over_the_limit_gets_413_without_being_read(kitchen: RunningJob) -> None:
    port = int(kitchen.url.rsplit(":", 1)[1])
    # announced size over the 16 MiB default: refused from the headers alone
    status, _, body = raw_http(
        port,
        b"POST /api/v1/perform HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 17000000\r\nConnection: close\r\n\r\n{",
    )
    assert status == 413
    assert b"exceeds the limit" in body


def test_chunked_body_over_a_configured_limit_gets_413(tmp_path: Path, run_job: JobRunner) -> None:
    job_dir = write_job(
        tmp_path / "small", "class J:\n    def perform(self, data: str = ''):\n        return len(data)\n"
    )
    job = run_job(job_dir, args=("--max-body-size", "1k"))

    def chunks() -> Iterator[bytes]:
        yield b'{"data": "'
        for _ in range(10):
            yield b"x" * 200
        yield b'"}'

    r = job.client.post("/api/v1/perform", content=chunks())
    assert r.status_code == 413
    assert job.client.post("/api/v1/perform", json={"data": "x" * 900}).json() == 900
    assert job.client.get("/live").status_code == 200


def test_parameters_describe_perform(kitchen: RunningJob) -> None:
    r = kitchen.client.get("/api/v1/parameters")
    assert r.json() == [
        {"name": "a", "type": "int", "required": True, "description": "An integer."},
        {"name": "b", "type": "float", "required": False, "default": 1.5, "description": "A factor."},
        {"name": "tags", "type": "list[str] | None", "required": False, "default": None},
        {"name": "when", "type": "datetime.date | None", "required": False, "default": None},
    ]


def test_openapi_shows_real_types_and_examples(kitchen: RunningJob) -> None:
    doc = kitchen.client.get("/pub/job/kitchen/1.2.3/openapi.json").json()
    assert doc["servers"] == [{"url": "/pub/job/kitchen/1.2.3"}]
    perform = doc["paths"]["/api/v1/perform"]["post"]
    media = perform["requestBody"]["content"]["application/json"]
    assert media["example"] == {"a": 2, "b": 3}
    schema = doc["components"]["schemas"][media["schema"]["$ref"].rsplit("/", 1)[1]]
    assert schema["properties"]["a"]["type"] == "integer"
    assert schema["properties"]["b"] == {"type": "number", "default": 1.5, "description": "A factor."}
    assert schema["required"] == ["a"]
    assert perform["description"] == "Multiply a by b."
    extras = doc["paths"]["/api/v1/extras"]["post"]["requestBody"]["content"]["application/json"]
    assert extras["example"] == {"first": "x", "more": 1}
    order = doc["paths"]["/api/v1/order"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    order_schema = doc["components"]["schemas"][order["$ref"].rsplit("/", 1)[1]]
    item_ref = order_schema["properties"]["item"]
    assert item_ref.get("title") == "Item" or "$ref" in item_ref
    assert doc["components"]["securitySchemes"]["RacetrackAuth"]["name"] == "X-Racetrack-Auth"


def test_swagger_ui_is_served_without_a_cdn(kitchen: RunningJob) -> None:
    r = kitchen.client.get("/pub/job/kitchen/1.2.3/docs")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert '"/pub/job/kitchen/1.2.3/openapi.json"' in r.text
    assert "/pub/job/kitchen/1.2.3/docs/assets/swagger-ui-bundle.js" in r.text
    asset = kitchen.client.get("/pub/job/kitchen/1.2.3/docs/assets/swagger-ui-bundle.js")
    assert asset.status_code == 200 and len(asset.content) > 100_000
    assert "javascript" in asset.headers["content-type"]
    assert kitchen.client.get("/docs/assets/../../job.yaml").status_code == 404


def test_root_redirects_to_the_home_page(kitchen: RunningJob) -> None:
    r = kitchen.client.get("/pub/job/kitchen/1.2.3/", follow_redirects=False)
    assert r.status_code == 307 and r.headers["location"] == "/pub/job/kitchen/1.2.3/docs"
    r = kitchen.client.get("/", follow_redirects=False)
    assert r.headers["location"] == "/docs"


def test_home_page_from_manifest(tmp_path: Path, run_job: JobRunner) -> None:
    job_dir = write_job(
        tmp_path / "home",
        "class J:\n    def perform(self):\n        return 1\n",
        manifest_extra="  home_page: /api/v1/webview\n",
    )
    job = run_job(job_dir)
    r = job.client.get("/pub/job/testjob/1.2.3", follow_redirects=False)
    assert r.headers["location"] == "/pub/job/testjob/1.2.3/api/v1/webview"


def test_unknown_routes_are_json_404(kitchen: RunningJob) -> None:
    r = httpx.get(kitchen.url + "/definitely/not/here")
    assert r.status_code == 404 and r.json()["error"] == "not found: /definitely/not/here"
