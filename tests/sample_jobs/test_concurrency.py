import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import SAMPLE_JOBS, RunningJob
from tests.sample_jobs.api_docs import argument_types, assert_swagger_page, openapi_document, request_body

JOB = SAMPLE_JOBS / "concurrency"


def gauge(job: RunningJob, name: str) -> float:
    for family in text_string_to_metric_families(job.client.get("/metrics").text):
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    raise AssertionError(f"{name} not in /metrics")


def wait_for_gauge(job: RunningJob, name: str, value: float, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while gauge(job, name) != value:
        assert time.monotonic() < deadline, f"{name} did not reach {value}"
        time.sleep(0.01)


def call(url: str, ticket: int, seconds: float = 0.5) -> tuple[httpx.Response, float]:
    with httpx.Client(base_url=url, timeout=30) as client:
        response = client.post("/api/v1/perform", json={"ticket": ticket, "seconds": seconds})
        return response, time.monotonic()


def test_one_runs_two_wait_the_rest_get_429(run_job: Callable[..., RunningJob]) -> None:
    job = run_job(JOB)
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=3) as pool:
        # the first call holds the slot long enough for the queue to fill even on a busy machine
        calls: list[Future[tuple[httpx.Response, float]]] = [pool.submit(call, job.url, 1, 1.5)]
        wait_for_gauge(job, "job_requests_in_flight", 1)
        calls += [pool.submit(call, job.url, 2)]
        wait_for_gauge(job, "job_requests_queued", 1)
        calls += [pool.submit(call, job.url, 3)]
        wait_for_gauge(job, "job_requests_queued", 2)

        before = time.monotonic()
        refused = job.client.post("/api/v1/perform", json={"ticket": 4})
        assert time.monotonic() - before < 1, "a full queue must refuse at once"
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "1"
        assert refused.json()["type"] == "TooManyRequests"

        results = [f.result() for f in calls]
    for ticket, (response, _) in enumerate(results, start=1):
        assert response.status_code == 200
        assert response.json() == {"ticket": ticket, "most_at_once": 1}
    finished = [at for _, at in results]
    assert finished == sorted(finished), "queued calls run in arrival order"
    assert finished[-1] - started >= 2.4

    assert gauge(job, "job_rejected_requests_total") == 1
    metrics = job.client.get("/metrics").text
    assert 'job_requests_total{endpoint="/api/v1/perform",status="4XX"} 1.0' in metrics
    assert 'job_requests_total{endpoint="/api/v1/perform",status="2XX"} 3.0' in metrics
    assert gauge(job, "job_requests_in_flight") == 0
    assert gauge(job, "job_requests_queued") == 0


def test_serves_again_after_the_burst(run_job: Callable[..., RunningJob]) -> None:
    job = run_job(JOB)
    with ThreadPoolExecutor(max_workers=6) as pool:
        statuses = sorted(
            f.result()[0].status_code for f in [pool.submit(call, job.url, i) for i in range(6)]
        )
    assert statuses.count(200) >= 3
    assert set(statuses) <= {200, 429}
    assert job.client.post("/api/v1/perform", json={"ticket": 7, "seconds": 0}).json() == {
        "ticket": 7,
        "most_at_once": 1,
    }


def test_openapi_and_docs(run_job: Callable[..., RunningJob]) -> None:
    job = run_job(JOB)
    document = openapi_document(job)
    assert argument_types(document, "/api/v1/perform") == {"ticket": "integer", "seconds": "number"}
    assert request_body(document, "/api/v1/perform")[1] == {"ticket": 1, "seconds": 0.5}
    assert "429" in document["paths"]["/api/v1/perform"]["post"]["responses"]
    assert_swagger_page(job)
