from collections.abc import Callable

from tests.conftest import SAMPLE_JOBS, RunningJob
from tests.sample_jobs.api_docs import (
    argument_types,
    assert_swagger_page,
    openapi_document,
    request_body,
    required_arguments,
)

JOB = SAMPLE_JOBS / "adder"


def test_perform_adds_numbers_and_offset(run_job: Callable[..., RunningJob]) -> None:
    job = run_job(JOB)
    response = job.client.post("/api/v1/perform", json={"numbers": [40, 2]})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == 42

    assert job.client.post("/api/v1/perform", json={"numbers": [1.5, 2], "offset": -0.5}).json() == 3
    assert job.client.post("/pub/job/adder/0.0.1/api/v1/perform", json={"numbers": [1]}).json() == 1
    assert job.client.post("/pub/job/adder/latest/api/v1/perform", json={"numbers": []}).json() == 0


def test_bad_input_is_422_naming_the_field(run_job: Callable[..., RunningJob]) -> None:
    job = run_job(JOB)
    missing = job.client.post("/api/v1/perform", json={})
    assert missing.status_code == 422
    assert missing.json()["type"] == "InvalidArguments"
    assert "numbers" in missing.json()["error"]

    wrong_type = job.client.post("/api/v1/perform", json={"numbers": ["forty"]})
    assert wrong_type.status_code == 422
    assert "numbers" in wrong_type.json()["error"]

    unexpected = job.client.post("/api/v1/perform", json={"numbers": [1], "scale": 2})
    assert unexpected.status_code == 422
    assert "scale" in unexpected.json()["error"]

    not_an_object = job.client.post("/api/v1/perform", json=[1, 2])
    assert not_an_object.status_code == 422


def test_parameters_describe_perform(run_job: Callable[..., RunningJob]) -> None:
    job = run_job(JOB)
    response = job.client.get("/api/v1/parameters")
    assert response.status_code == 200
    numbers, offset = response.json()
    assert numbers["name"] == "numbers"
    assert numbers["required"] is True
    assert numbers["description"] == "The numbers to add."
    assert offset["name"] == "offset"
    assert offset["required"] is False
    assert offset["default"] == 0
    assert offset["description"] == "Added to the sum."


def test_openapi_shows_example_and_types(run_job: Callable[..., RunningJob]) -> None:
    job = run_job(JOB)
    document = openapi_document(job)
    assert document["info"]["version"] == "0.0.1"
    _, example = request_body(document, "/api/v1/perform")
    assert example == {"numbers": [40, 2]}
    assert argument_types(document, "/api/v1/perform") == {"numbers": ["number"], "offset": "number"}
    assert required_arguments(document, "/api/v1/perform") == {"numbers"}

    assert job.client.post("/api/v1/perform", json=example).json() == 42


def test_docs_and_home_page(run_job: Callable[..., RunningJob]) -> None:
    job = run_job(JOB)
    assert_swagger_page(job)
    assert_swagger_page(job, "/pub/job/adder/0.0.1")

    home = job.client.get("/")
    assert home.status_code in (302, 307)
    assert home.headers["location"] == "/docs"
