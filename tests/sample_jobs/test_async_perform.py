import asyncio
import time
from collections.abc import Callable

import httpx

from tests.conftest import SAMPLE_JOBS, RunningJob
from tests.sample_jobs.api_docs import (
    argument_types,
    assert_swagger_page,
    openapi_document,
    request_body,
    required_arguments,
)

JOB = SAMPLE_JOBS / "async-perform"


def test_async_perform_adds(run_job: Callable[..., RunningJob]) -> None:
    job = run_job(JOB)
    response = job.client.post("/api/v1/perform", json={"numbers": [1, 2, 3]})
    assert response.status_code == 200
    assert response.json() == 6
    assert job.client.post("/api/v1/perform", json={"numbers": [], "delay": 0.01}).json() == 0

    fractional = job.client.post("/api/v1/perform", json={"numbers": [1, 2.5]})
    assert fractional.status_code == 422
    assert "numbers" in fractional.json()["error"]


def test_many_slow_calls_overlap_on_the_event_loop(run_job: Callable[..., RunningJob]) -> None:
    """90 calls awaiting 1.5 s each finish together: they do not queue for the wrapper's worker threads."""
    job = run_job(JOB)

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=job.url, timeout=30) as client:
            return await asyncio.gather(
                *(client.post("/api/v1/perform", json={"numbers": [i, 1], "delay": 1.5}) for i in range(90))
            )

    started = time.monotonic()
    responses = asyncio.run(burst())
    elapsed = time.monotonic() - started
    assert [r.json() for r in responses] == [i + 1 for i in range(90)]
    assert elapsed < 4


def test_openapi_and_docs(run_job: Callable[..., RunningJob]) -> None:
    job = run_job(JOB)
    document = openapi_document(job)
    assert argument_types(document, "/api/v1/perform") == {"numbers": ["integer"], "delay": "number"}
    assert required_arguments(document, "/api/v1/perform") == {"numbers"}
    assert request_body(document, "/api/v1/perform")[1] == {"numbers": [1, 2, 3]}
    assert document["paths"]["/api/v1/perform"]["post"]["responses"]["200"]["content"]["application/json"][
        "schema"
    ] == {"type": "integer"}
    assert_swagger_page(job)
