from collections.abc import Callable

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import SAMPLE_JOBS, RunningJob
from tests.sample_jobs.api_docs import argument_types, assert_swagger_page, openapi_document, request_body

JOB = SAMPLE_JOBS / "metrics"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(job: RunningJob) -> tuple[str, dict[str, str], Samples]:
    """(raw text, {family name: type}, {(sample name, sorted labels): value})."""
    response = job.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    types: dict[str, str] = {}
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        types[family.name] = family.type
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return response.text, types, samples


def test_job_gauges_are_exposed(run_job: Callable[..., RunningJob]) -> None:
    job = run_job(JOB)
    text, types, samples = scrape(job)
    for name in ("sample_readings_recorded", "sample_temperature_celsius", "sample_sensor_errors"):
        assert types[name] == "gauge"
    assert samples[("sample_readings_recorded", ())] == 0
    assert samples[("sample_temperature_celsius", (("room", "kitchen"),))] == 21.5
    assert samples[("sample_temperature_celsius", (("room", "garage"),))] == -3.0
    assert samples[("sample_sensor_errors", ())] == 0
    assert "# HELP sample_temperature_celsius Last temperature reading per room" in text
    assert "# HELP sample_sensor_errors Sensor errors seen" in text


def test_metric_without_value_is_left_out(run_job: Callable[..., RunningJob]) -> None:
    job = run_job(JOB)
    text, types, _ = scrape(job)
    assert "sample_humidity_percent" not in types
    assert "sample_humidity_percent" not in text
    assert "metrics()" not in job.logs()


def test_gauges_follow_perform_calls(run_job: Callable[..., RunningJob]) -> None:
    job = run_job(JOB)
    for celsius in (17.0, 18.25):
        response = job.client.post("/api/v1/perform", json={"room": "attic", "celsius": celsius})
        assert response.status_code == 200
    assert response.json() == {"kitchen": 21.5, "garage": -3.0, "attic": 18.25}
    assert job.client.post("/api/v1/perform", json={"room": "attic"}).status_code == 422

    _, _, samples = scrape(job)
    assert samples[("sample_readings_recorded", ())] == 2
    assert samples[("sample_temperature_celsius", (("room", "attic"),))] == 18.25
    assert samples[("job_requests_total", (("endpoint", "/api/v1/perform"), ("status", "2XX")))] == 2
    assert samples[("job_requests_total", (("endpoint", "/api/v1/perform"), ("status", "4XX")))] == 1
    assert samples[("job_request_duration_seconds_count", (("endpoint", "/api/v1/perform"),))] == 3
    assert samples[("job_last_call_timestamp_seconds", ())] > 0


def test_openapi_and_docs(run_job: Callable[..., RunningJob]) -> None:
    job = run_job(JOB)
    document = openapi_document(job)
    assert argument_types(document, "/api/v1/perform") == {"room": "string", "celsius": "number"}
    assert request_body(document, "/api/v1/perform")[1] == {"room": "attic", "celsius": 18.25}
    assert_swagger_page(job)
