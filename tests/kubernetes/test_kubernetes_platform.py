"""`trackside up` with the kubernetes target, end to end against the stand-in API server: the
cluster (`FakeCluster`) runs the Kaniko Job by fetching the uploaded context from the lifecycle with
its build token, and runs the job's pods as real job processes, so the deploy, the gateway call,
the logs, a lifecycle restart (adoption) and the delete are the platform's real code paths."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.kubernetes.apiserver_standin import ApiServerStandIn
from tests.kubernetes.fake_cluster import NAMESPACE, FakeCluster
from tests.kubernetes.manifests import KUBERNETES_VERSIONS, validator
from tests.lifecycle.platform import TracksideUp, free_port
from trackside.build_context import pack_directory

ADDER = Path(__file__).resolve().parents[2] / "sample-jobs" / "adder"
REPOSITORY = "registry.test/trackside-jobs"


@pytest.fixture
def cluster(standin: ApiServerStandIn, tmp_path: Path) -> Iterator[FakeCluster]:
    fake = FakeCluster(standin, tmp_path / "cluster", run_jobs=True, kaniko=True)
    yield fake
    fake.close()


def start_up(standin: ApiServerStandIn, tmp_path: Path, log: str) -> TracksideUp:
    port = free_port()
    env = {
        "TRACKSIDE_INFRASTRUCTURE_TARGET": "kubernetes",
        "TRACKSIDE_KUBECONFIG": str(standin.kubeconfig(tmp_path / "kubeconfig")),
        "TRACKSIDE_IMAGE_REPOSITORY": REPOSITORY,
        "TRACKSIDE_K8S_LIFECYCLE_URL": f"http://127.0.0.1:{port}",
        "TRACKSIDE_K8S_JOB_PUB_URL": f"http://127.0.0.1:{port}/pub",
    }
    return TracksideUp(tmp_path / "data", tmp_path / log, env=env, port=port)


def job_status(up: TracksideUp) -> dict[str, Any]:
    body: dict[str, Any] = up.client.get("/api/v1/job/adder/0.0.1").json()
    return body


def call(up: TracksideUp) -> httpx.Response:
    return httpx.post(
        f"{up.url}/pub/job/adder/0.0.1/api/v1/perform",
        json={"numbers": [40, 2], "offset": 0.5},
        headers={"X-Racetrack-Auth": up.token},
        timeout=30,
    )


def wait_for(check: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, f"not true within {timeout} s"
        time.sleep(0.1)
    return value


def test_deploy_call_restart_and_delete_on_kubernetes(
    standin: ApiServerStandIn, cluster: FakeCluster, tmp_path: Path
) -> None:
    up = start_up(standin, tmp_path, "up-1.log")
    try:
        manifest = yaml.safe_load((ADDER / "job.yaml").read_text())
        r = up.client.post(
            "/api/v1/deploy", json={"manifest": manifest, "build_context": pack_directory(ADDER)}
        )
        assert r.status_code == 202, r.text
        result = up.wait(r.json()["id"])
        assert result["status"] == "done", (result, up.output())
        assert cluster.fetched_contexts, "the build pod never fetched the uploaded context"

        build_log = up.client.get("/api/v1/job/adder/0.0.1/build-logs").text
        assert f"building image {REPOSITORY}/adder:0.0.1-" in build_log
        assert "INFO Retrieving image manifest python:" in build_log
        assert "the build's Job and Secrets are deleted" in build_log
        assert standin.objects("jobs", NAMESPACE) == []

        answer = call(up)
        assert answer.status_code == 200, answer.text
        assert answer.json() == 42.5
        wait_for(lambda: job_status(up)["status"] == "running")
        logs = up.client.get("/api/v1/job/adder/0.0.1/logs", params={"tail": 200}).text
        assert "POST /api/v1/perform" in logs and "[job-adder-v0-0-1-" in logs

        # every object the runner and the builder created is valid for both Kubernetes versions
        kubernetes_validate = validator()
        created = [r.body for r in standin.requests if r.method == "POST" and r.body]
        assert {o["kind"] for o in created} == {"Secret", "Job", "NetworkPolicy", "Service", "Deployment"}
        for obj in created:
            for version in KUBERNETES_VERSIONS:
                kubernetes_validate.validate(obj, version, strict=True)

        [deployment] = standin.objects("deployments", NAMESPACE)
        pods_before = [p["metadata"]["name"] for p in cluster.pods()]
    finally:
        up.stop()

    # the lifecycle is gone, and says the job is not
    assert "its jobs on Kubernetes keep running" in up.output()
    assert [p["metadata"]["name"] for p in cluster.pods()] == pods_before
    before = len(standin.requests)
    # the cluster refuses the first call of the restart: the lifecycle starts anyway, says so,
    # and reports the job running as soon as it sees its pods
    standin.fail("POST", "deployments", 503, "ServiceUnavailable", "the API server is overloaded", times=1)
    up = start_up(standin, tmp_path, "up-2.log")
    try:
        assert "job adder 0.0.1 cannot be restarted" in up.output()
        assert "the API server is overloaded" in up.output()
        wait_for(lambda: job_status(up)["status"] == "running")
        answer = call(up)
        assert answer.status_code == 200 and answer.json() == 42.5
        after = standin.requests[before:]
        assert not [r for r in after if r.method == "POST" and r.plural == "jobs"]  # no build
        # the running generation was adopted (its create answered 409), not made again
        assert [d["metadata"]["uid"] for d in standin.objects("deployments", NAMESPACE)] == [
            deployment["metadata"]["uid"]
        ]

        r = up.client.delete("/api/v1/job/adder/0.0.1")
        assert r.status_code == 200, r.text
        for plural in ("deployments", "services", "secrets", "networkpolicies", "pods"):
            assert standin.objects(plural, NAMESPACE) == [], plural
        wait_for(lambda: not cluster.processes)
    finally:
        up.stop()


def test_a_job_that_fails_to_load_fails_its_deploy_with_file_and_line_and_leaves_nothing(
    standin: ApiServerStandIn, cluster: FakeCluster, tmp_path: Path
) -> None:
    job = tmp_path / "broken"
    job.mkdir()
    (job / "entrypoint.py").write_text(
        "class Broken:\n    def perform(self) -> int:\n        return 1\n\n\nundefined_name\n"
    )
    manifest = {
        "name": "broken",
        "owner_email": "sample@example.com",
        "jobtype": "python3:latest",
        "git": {"remote": "https://git.example.com/team/broken.git"},
        "jobtype_extra": {"entrypoint_path": "entrypoint.py"},
    }
    up = start_up(standin, tmp_path, "up.log")
    try:
        r = up.client.post(
            "/api/v1/deploy", json={"manifest": manifest, "build_context": pack_directory(job)}
        )
        assert r.status_code == 202, r.text
        result = up.wait(r.json()["id"])
        assert result["status"] == "failed", result
        assert "the job failed to start: the job failed to load:" in result["error"]
        assert "NameError" in result["error"] and "entrypoint.py:6" in result["error"]
        for plural in ("deployments", "secrets", "services", "networkpolicies", "pods", "jobs"):
            assert standin.objects(plural, NAMESPACE) == [], plural
    finally:
        up.stop()


def test_an_image_the_nodes_cannot_pull_fails_the_deploy_with_the_reason(
    standin: ApiServerStandIn, cluster: FakeCluster, tmp_path: Path
) -> None:
    cluster.pull_fails = True
    up = start_up(standin, tmp_path, "up.log")
    try:
        manifest = yaml.safe_load((ADDER / "job.yaml").read_text())
        r = up.client.post(
            "/api/v1/deploy", json={"manifest": manifest, "build_context": pack_directory(ADDER)}
        )
        result = up.wait(r.json()["id"])
        assert result["status"] == "failed", result
        assert result["phase"] == "initialising the entrypoint"
        assert result["error"].startswith(
            f'the job failed to start: ImagePullBackOff: Back-off pulling image "{REPOSITORY}/adder:0.0.1-'
        )
        for plural in ("deployments", "secrets", "services", "networkpolicies", "pods", "jobs"):
            assert standin.objects(plural, NAMESPACE) == [], plural
    finally:
        up.stop()
