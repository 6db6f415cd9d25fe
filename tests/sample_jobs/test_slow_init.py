import time
from collections.abc import Callable

from tests.conftest import SAMPLE_JOBS, RunningJob
from tests.sample_jobs.api_docs import assert_swagger_page, openapi_document, request_body

JOB = SAMPLE_JOBS / "slow-init"


def test_live_at_once_ready_after_init(run_job: Callable[..., RunningJob]) -> None:
    started = time.monotonic()
    job = run_job(JOB, env={"JOB_DEPLOYMENT_TIMESTAMP": "1700000000"}, wait="live")

    live = job.client.get("/live")
    assert live.status_code == 200
    assert live.json()["live"] is True
    assert live.json()["status"] == "initialising"
    assert live.json()["deployment_timestamp"] == 1700000000

    ready = job.client.get("/ready")
    assert ready.status_code == 503
    assert ready.json()["ready"] is False

    health = job.client.get("/health")
    assert health.status_code == 200
    assert health.json()["ready"] is False

    assert_swagger_page(job)

    early = job.client.post("/api/v1/perform", json={})
    assert early.status_code == 503
    assert early.json()["type"] == "NotReady"

    job.wait_ready(timeout=20)
    assert time.monotonic() - started >= 2.9
    assert job.client.get("/live").json()["status"] == "ready"
    assert job.client.get("/health").json()["status"] == "pass"

    response = job.client.post("/api/v1/perform", json={})
    assert response.status_code == 200
    assert 2.9 <= response.json()["init_seconds"] < 10
    job.wait_for_log("job slow-init 0.0.1 ready: initialised in")
    assert request_body(openapi_document(job), "/api/v1/perform")[1] == {}
