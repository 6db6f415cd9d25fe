from collections.abc import Callable

import pytest

from tests.conftest import SAMPLE_JOBS, RunningJob
from tests.sample_jobs.api_docs import (
    argument_types,
    assert_swagger_page,
    openapi_document,
    request_body,
    required_arguments,
)

JOB = SAMPLE_JOBS / "auxiliary-endpoints"
SAMPLE = [2, 4, 4, 4, 5, 5, 7, 9]


def test_perform_and_auxiliary_endpoints(run_job: Callable[..., RunningJob]) -> None:
    job = run_job(JOB)
    summary = job.client.post("/api/v1/perform", json={"values": SAMPLE})
    assert summary.status_code == 200
    assert summary.json() == {"count": 8, "mean": 5.0, "median": 4.5, "stdev": 2.0}

    assert job.client.post("/api/v1/percentile", json={"values": SAMPLE, "q": 75}).json() == 5.5
    assert job.client.post("/api/v1/percentile", json={"values": [3, 1, 2]}).json() == 2

    histogram = job.client.post("/api/v1/histogram", json={"values": SAMPLE, "bins": 4})
    assert histogram.status_code == 200
    assert histogram.json() == {"edges": [2.0, 3.75, 5.5, 7.25, 9.0], "counts": [1, 5, 1, 1]}

    prefixed = job.client.post("/pub/job/auxiliary-endpoints/0.0.1/api/v1/histogram", json={"values": [1, 2]})
    assert prefixed.json()["counts"] == [1, 0, 0, 1]


def test_auxiliary_arguments_are_validated(run_job: Callable[..., RunningJob]) -> None:
    job = run_job(JOB)
    wrong_type = job.client.post("/api/v1/histogram", json={"values": SAMPLE, "bins": "many"})
    assert wrong_type.status_code == 422
    assert "bins" in wrong_type.json()["error"]

    missing = job.client.post("/api/v1/percentile", json={"q": 10})
    assert missing.status_code == 422
    assert "values" in missing.json()["error"]

    out_of_range = job.client.post("/api/v1/percentile", json={"values": SAMPLE, "q": 150})
    assert out_of_range.status_code == 400
    assert out_of_range.json() == {"error": "q must lie between 0 and 100, got 150.0", "type": "ValueError"}

    assert job.client.post("/api/v1/perform", json={"values": []}).status_code == 400
    assert job.client.get("/api/v1/percentile").status_code == 405
    assert job.client.post("/api/v1/median", json={"values": SAMPLE}).status_code == 404


@pytest.mark.parametrize(
    ("path", "types", "required", "example"),
    [
        ("/api/v1/perform", {"values": ["number"]}, {"values"}, {"values": SAMPLE}),
        (
            "/api/v1/percentile",
            {"values": ["number"], "q": "number"},
            {"values"},
            {"values": SAMPLE, "q": 75},
        ),
        (
            "/api/v1/histogram",
            {"values": ["number"], "bins": "integer"},
            {"values"},
            {"values": SAMPLE, "bins": 4},
        ),
    ],
)
def test_openapi_documents_every_endpoint(
    run_job: Callable[..., RunningJob], path: str, types: dict, required: set[str], example: dict
) -> None:
    job = run_job(JOB)
    document = openapi_document(job)
    assert argument_types(document, path) == types
    assert required_arguments(document, path) == required
    _, shown = request_body(document, path)
    assert shown == example
    assert job.client.post(path, json=shown).status_code == 200


def test_docs_page(run_job: Callable[..., RunningJob]) -> None:
    assert_swagger_page(run_job(JOB))
