"""The Kubernetes runner against a stand-in API server: the requests it makes, and the replica
states, errors and logs it reports from what the (played) cluster says."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lifecycle.deploy.builder import BuildResult
from lifecycle.deploy.kubernetes_api import KubernetesApi
from lifecycle.deploy.kubernetes_objects import JobSettings
from lifecycle.deploy.kubernetes_runner import KubernetesRunner, KubernetesRunSettings
from lifecycle.deploy.runner import RunnerError, RunSpec
from tests.kubernetes.apiserver_standin import ApiServerStandIn
from tests.kubernetes.fake_cluster import NAMESPACE, FakeCluster

JOB_PUB_URL = "http://pub.trackside.svc.cluster.local:7205/pub"
IMAGE = "registry.test/trackside-jobs/adder:0.0.1-abc@sha256:" + "1" * 64


def eventually(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout} s: {check}")
        time.sleep(0.05)


def run_spec(timestamp: int = 1732000000000, replicas: int = 1, version: str = "0.0.1") -> RunSpec:
    build = BuildResult(
        environment_id="kaniko:" + "a" * 64,
        python=Path("/opt/trackside/venv/bin/python"),
        code_dir=Path(IMAGE),
        cached=False,
        infrastructure="kubernetes",
        image=IMAGE,
    )
    return RunSpec(
        job_name="adder",
        job_version=version,
        deployment_timestamp=timestamp,
        replicas=replicas,
        build=build,
        env={"PUB_URL": "http://127.0.0.1:7200/pub", "AUTH_TOKEN": "family-token-secret", "GREETING": "hi"},
        manifest_yaml="name: adder\n",
    )


@pytest.fixture
def cluster(standin: ApiServerStandIn, tmp_path: Path) -> Iterator[FakeCluster]:
    fake = FakeCluster(standin, tmp_path)
    yield fake
    fake.close()


def make_runner(standin: ApiServerStandIn, tmp_path: Path, **settings: Any) -> KubernetesRunner:
    api = KubernetesApi.connect(str(standin.kubeconfig(tmp_path / "kubeconfig")))
    runner = KubernetesRunner(
        api,
        KubernetesRunSettings(jobs=JobSettings(), job_pub_url=JOB_PUB_URL, watch_timeout=2, **settings),
    )
    assert runner.wait_synced(10)
    return runner


@pytest.fixture
def runner(standin: ApiServerStandIn, cluster: FakeCluster, tmp_path: Path) -> Iterator[KubernetesRunner]:
    made = make_runner(standin, tmp_path)
    yield made
    made.shutdown()


def only_pod(cluster: FakeCluster) -> str:
    pods = eventually(cluster.pods)
    assert len(pods) == 1
    return str(pods[0]["metadata"]["name"])


def test_start_creates_the_version_objects_in_order_with_secrets_only_in_the_secret(
    runner: KubernetesRunner, standin: ApiServerStandIn
) -> None:
    runner.start(run_spec())
    creates = [(r.plural, (r.body or {})["metadata"]["name"]) for r in standin.requests if r.method == "POST"]
    name = "job-adder-v0-0-1"
    assert creates == [
        ("secrets", f"{name}-1732000000000"),
        ("networkpolicies", name),
        ("services", name),
        ("deployments", f"{name}-1732000000000"),
    ]
    secret = standin.get("secrets", NAMESPACE, f"{name}-1732000000000")
    assert secret is not None
    values = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    # jobs call other jobs through the gateway's Service, not the address users are given
    assert values == {"AUTH_TOKEN": "family-token-secret", "GREETING": "hi", "PUB_URL": JOB_PUB_URL}
    deployment = standin.get("deployments", NAMESPACE, f"{name}-1732000000000")
    assert deployment is not None
    body = str(deployment)
    assert "family-token-secret" not in body and "GREETING" in body
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == IMAGE
    assert runner.versions() == [("adder", "0.0.1")]
    assert runner.generations("adder", "0.0.1") == [1732000000000]


def test_replicas_follow_the_pods_and_the_gateway_gets_ready_pod_addresses(
    runner: KubernetesRunner, cluster: FakeCluster
) -> None:
    runner.start(run_spec(replicas=2))
    pods = eventually(lambda: len(cluster.pods()) == 2 and cluster.pods())
    replicas = eventually(lambda: runner.replicas("adder", "0.0.1"))
    assert len(replicas) == 2 and not any(r.ready for r in replicas)
    assert runner.serving("adder", "0.0.1") == []
    cluster.running(pods[0]["metadata"]["name"], "10.1.0.7")
    cluster.running(pods[1]["metadata"]["name"], "10.1.0.8", ready=False)
    serving = eventually(lambda: runner.serving("adder", "0.0.1"))
    assert [r.address for r in serving] == ["http://10.1.0.7:7000"]
    cluster.running(pods[1]["metadata"]["name"], "10.1.0.8")
    eventually(lambda: len(runner.serving("adder", "0.0.1")) == 2)
    assert all(r.ready and r.deployment_timestamp == 1732000000000 for r in runner.replicas("adder", "0.0.1"))


def test_crash_loop_reports_the_reason_and_the_last_lines_of_the_crashed_container(
    runner: KubernetesRunner, cluster: FakeCluster, standin: ApiServerStandIn
) -> None:
    runner.start(run_spec())
    pod = only_pod(cluster)
    cluster.crash_loop(
        pod,
        restarts=3,
        exit_code=1,
        log=(
            "Traceback (most recent call last):",
            '  File "adder.py", line 3',
            "NameError: name 'x' is not defined",
        ),
    )
    replica = eventually(lambda: [r for r in runner.replicas("adder", "0.0.1") if r.last_error])[0]
    assert replica.restarts == 3 and replica.failures >= 3 and not replica.ready
    assert replica.last_error.startswith("CrashLoopBackOff: Error: the job's process exited with code 1")
    assert "NameError: name 'x' is not defined" in replica.last_error
    logs = [r for r in standin.requests if r.verb == "LOG"]
    assert logs and logs[0].query.get("previous") == "true" and logs[0].query.get("container") == "job"


def test_oom_killed_is_named(runner: KubernetesRunner, cluster: FakeCluster) -> None:
    runner.start(run_spec())
    pod = only_pod(cluster)
    cluster.crash_loop(pod, restarts=1, exit_code=137, reason="OOMKilled")
    replica = eventually(lambda: [r for r in runner.replicas("adder", "0.0.1") if r.last_error])[0]
    assert "OOMKilled: the job used more memory than its limit (resources.memory_max)" in replica.last_error


def test_image_pull_back_off_is_stuck_at_once(runner: KubernetesRunner, cluster: FakeCluster) -> None:
    runner.start(run_spec())
    pod = only_pod(cluster)
    cluster.waiting(pod, "ImagePullBackOff", f'Back-off pulling image "{IMAGE}"')
    replica = eventually(lambda: [r for r in runner.replicas("adder", "0.0.1") if r.last_error])[0]
    assert replica.last_error == f'ImagePullBackOff: Back-off pulling image "{IMAGE}"'
    assert replica.failures == 3  # the pipeline and the monitor stop waiting


def test_failed_scheduling_waits_for_its_timeout(
    standin: ApiServerStandIn, cluster: FakeCluster, tmp_path: Path
) -> None:
    runner = make_runner(standin, tmp_path, scheduling_timeout=60.0)
    try:
        runner.start(run_spec())
        pod = only_pod(cluster)
        message = "0/3 nodes are available: 3 Insufficient memory."
        cluster.unschedulable(pod, message, seconds_ago=5)
        replica = eventually(lambda: [r for r in runner.replicas("adder", "0.0.1") if r.last_error])[0]
        assert replica.last_error == f"FailedScheduling: {message}" and replica.failures == 0
        cluster.unschedulable(pod, message, seconds_ago=120)
        eventually(lambda: runner.replicas("adder", "0.0.1")[0].failures == 3)
    finally:
        runner.shutdown()


def test_a_deployment_that_cannot_make_pods_says_why(
    runner: KubernetesRunner, standin: ApiServerStandIn, cluster: FakeCluster
) -> None:
    runner.start(run_spec())
    for pod in cluster.pods():
        standin.delete_object("pods", NAMESPACE, pod["metadata"]["name"])
    message = (
        'pods "job-adder-v0-0-1-1732000000000-x" is forbidden: exceeded quota: jobs, requested: memory=2Gi'
    )
    standin.update_status(
        "deployments",
        NAMESPACE,
        "job-adder-v0-0-1-1732000000000",
        {
            "conditions": [
                {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate", "message": message}
            ]
        },
    )
    replica = eventually(lambda: [r for r in runner.replicas("adder", "0.0.1") if r.last_error])[0]
    assert (
        replica.last_error == f"FailedCreate: {message}" and replica.failures == 3 and replica.address == ""
    )


def test_forbidden_create_names_the_object_and_the_role(
    runner: KubernetesRunner, standin: ApiServerStandIn
) -> None:
    message = (
        'deployments.apps is forbidden: User "system:serviceaccount:trackside:lifecycle" cannot create '
        'resource "deployments" in API group "apps" in the namespace "trackside-jobs"'
    )
    standin.fail("POST", "deployments", 403, "Forbidden", message)
    with pytest.raises(RunnerError) as failure:
        runner.start(run_spec())
    text = str(failure.value)
    assert "cannot create the Deployment job-adder-v0-0-1-1732000000000 in namespace trackside-jobs" in text
    assert message in text and "Forbidden (403)" in text and "lifecycle-rbac.yaml" in text


def test_a_lifecycle_restart_adopts_what_runs(
    standin: ApiServerStandIn, cluster: FakeCluster, tmp_path: Path
) -> None:
    first = make_runner(standin, tmp_path)
    first.start(run_spec())
    pod = only_pod(cluster)
    cluster.running(pod, "10.1.0.7")
    first.shutdown()  # the lifecycle stops: the job keeps running
    assert standin.get("deployments", NAMESPACE, "job-adder-v0-0-1-1732000000000") is not None

    second = make_runner(standin, tmp_path)
    try:
        before = len(standin.requests)
        second.start(run_spec())  # what restart_jobs does for each job in the store
        made = standin.requests[before:]
        # the generation's objects exist: nothing new, the Service and NetworkPolicy brought up to date
        assert [r.verb for r in made if r.plural == "deployments" and r.verb != "WATCH"] == ["POST", "GET"]
        assert {r.plural for r in made if r.method == "PATCH"} == {"services", "networkpolicies"}
        assert [p["metadata"]["name"] for p in cluster.pods()] == [pod]
        assert [r.address for r in eventually(lambda: second.serving("adder", "0.0.1"))] == [
            "http://10.1.0.7:7000"
        ]
        assert second.remove_unclaimed() == 0
    finally:
        second.shutdown()


def test_remove_unclaimed_deletes_generations_no_job_claims(
    standin: ApiServerStandIn, cluster: FakeCluster, tmp_path: Path
) -> None:
    first = make_runner(standin, tmp_path)
    first.start(run_spec(timestamp=1))
    first.start(run_spec(timestamp=2, version="0.0.2"))
    first.shutdown()
    second = make_runner(standin, tmp_path)
    try:
        second.start(run_spec(timestamp=2, version="0.0.2"))
        assert second.remove_unclaimed() == 1
        assert [d["metadata"]["name"] for d in standin.objects("deployments", NAMESPACE)] == [
            "job-adder-v0-0-2-2"
        ]
        assert standin.get("services", NAMESPACE, "job-adder-v0-0-1") is None
        assert standin.get("secrets", NAMESPACE, "job-adder-v0-0-1-1") is None
    finally:
        second.shutdown()


def test_a_redeploy_retires_the_older_generation_and_stop_removes_everything(
    runner: KubernetesRunner, standin: ApiServerStandIn, cluster: FakeCluster
) -> None:
    runner.start(run_spec(timestamp=1, replicas=2))
    runner.start(run_spec(timestamp=2, replicas=2))
    assert standin.get("poddisruptionbudgets", NAMESPACE, "job-adder-v0-0-1-2") is not None
    eventually(lambda: len(cluster.pods()) == 4)
    runner.retire_others("adder", "0.0.1", keep=2)
    assert runner.generations("adder", "0.0.1") == [2]
    names = sorted(
        o["metadata"]["name"]
        for plural in ("deployments", "secrets", "poddisruptionbudgets")
        for o in standin.objects(plural, NAMESPACE)
    )
    assert names == ["job-adder-v0-0-1-2"] * 3
    assert len(cluster.pods()) == 2  # the old generation's pods went with its Deployment
    deletes = [r for r in standin.requests if r.method == "DELETE" and r.plural == "deployments"]
    assert (deletes[0].body or {})["propagationPolicy"] == "Background"

    runner.stop("adder", "0.0.1")
    for plural in ("deployments", "secrets", "services", "networkpolicies", "poddisruptionbudgets", "pods"):
        assert standin.objects(plural, NAMESPACE) == [], plural
    assert runner.versions() == []
    assert runner.replicas("adder", "0.0.1") == []


def test_stop_finds_leftovers_the_informer_never_saw(
    runner: KubernetesRunner, standin: ApiServerStandIn
) -> None:
    standin.fail("POST", "deployments", 500, "InternalError", "etcdserver: request timed out", times=1)
    with pytest.raises(RunnerError):
        runner.start(run_spec(timestamp=5))
    assert standin.get("secrets", NAMESPACE, "job-adder-v0-0-1-5") is not None
    runner.stop("adder", "0.0.1")
    assert standin.objects("secrets", NAMESPACE) == [] and standin.objects("services", NAMESPACE) == []
    # the Deployment that was never made answered 404 to its delete: nothing to do, no error
    assert [r.name for r in standin.requests if r.verb == "DELETE" and r.plural == "deployments"] == [
        "job-adder-v0-0-1-5"
    ]


def test_logs_merge_the_pods_in_time_order_and_follow_sees_new_pods_until_stop(
    runner: KubernetesRunner, standin: ApiServerStandIn, cluster: FakeCluster
) -> None:
    runner.start(run_spec(replicas=2))
    pods = sorted(
        p["metadata"]["name"] for p in eventually(lambda: len(cluster.pods()) == 2 and cluster.pods())
    )
    for index, pod in enumerate(pods):
        cluster.running(pod, f"10.1.0.{index + 1}")
    standin.append_log(NAMESPACE, pods[0], "job", "first")
    time.sleep(0.01)
    standin.append_log(NAMESPACE, pods[1], "job", "second")
    time.sleep(0.01)
    standin.append_log(NAMESPACE, pods[0], "job", "third")
    assert runner.logs("adder", "0.0.1", tail=10) == [
        f"[{pods[0]}] first",
        f"[{pods[1]}] second",
        f"[{pods[0]}] third",
    ]
    assert runner.logs("adder", "0.0.1", tail=1) == [f"[{pods[0]}] third"]

    followed: list[str] = []
    done = threading.Event()

    def follow() -> None:
        for line in runner.follow("adder", "0.0.1"):
            followed.append(line)
        done.set()

    threading.Thread(target=follow, daemon=True).start()
    time.sleep(1.0)  # the followers are attached
    standin.append_log(NAMESPACE, pods[1], "job", "live line")
    eventually(lambda: f"[{pods[1]}] live line" in followed)
    assert f"[{pods[0]}] first" not in followed  # only new lines
    extra = cluster.add_pod(standin.get("deployments", NAMESPACE, "job-adder-v0-0-1-1732000000000") or {})
    cluster.running(extra["metadata"]["name"], "10.1.0.3")
    time.sleep(1.0)
    standin.append_log(NAMESPACE, extra["metadata"]["name"], "job", "from a new pod")
    eventually(lambda: f"[{extra['metadata']['name']}] from a new pod" in followed)
    runner.stop("adder", "0.0.1")
    assert done.wait(10), "follow did not end when the version was stopped"


def test_an_unreachable_api_server_is_a_clear_error(standin: ApiServerStandIn, tmp_path: Path) -> None:
    kubeconfig = standin.kubeconfig(tmp_path / "kubeconfig")
    standin.close()
    api = KubernetesApi.connect(str(kubeconfig))
    runner = KubernetesRunner(
        api, KubernetesRunSettings(jobs=JobSettings(), job_pub_url=JOB_PUB_URL, watch_timeout=2)
    )
    try:
        with pytest.raises(RunnerError) as failure:
            runner.start(run_spec())
        assert f"the Kubernetes API at {standin.url} cannot be reached" in str(failure.value)
        # unknown is not "nothing runs": the version is reported waiting, with why
        [replica] = eventually(
            lambda: [
                r for r in runner.replicas("adder", "0.0.1") if "cannot be reached" in (r.last_error or "")
            ]
        )
        assert not replica.ready and replica.failures == 0
    finally:
        runner.shutdown()


def test_the_informer_lists_again_after_410_expired(
    runner: KubernetesRunner, standin: ApiServerStandIn, cluster: FakeCluster
) -> None:
    runner.start(run_spec())
    pod = only_pod(cluster)
    standin.compacted_before = 10**9  # every watch from now on is too old
    cluster.running(pod, "10.1.0.7")
    eventually(lambda: runner.serving("adder", "0.0.1"), timeout=15)
    assert any(r.verb == "WATCH" for r in standin.requests)


def test_a_version_is_not_lost_while_the_cluster_cannot_be_read(
    standin: ApiServerStandIn, tmp_path: Path
) -> None:
    for method in ("GET", "POST"):
        standin.fail(method, "deployments", 503, "ServiceUnavailable", "etcd is not ready")
    api = KubernetesApi.connect(str(standin.kubeconfig(tmp_path / "kubeconfig")))
    runner = KubernetesRunner(
        api, KubernetesRunSettings(jobs=JobSettings(), job_pub_url=JOB_PUB_URL, watch_timeout=2)
    )
    try:
        with pytest.raises(RunnerError):
            runner.start(run_spec())  # what a restarting lifecycle does for each stored job
        [replica] = eventually(
            lambda: [
                r for r in runner.replicas("adder", "0.0.1") if "etcd is not ready" in (r.last_error or "")
            ]
        )
        assert not replica.ready and replica.failures == 0  # the monitor keeps the job's status
        assert runner.replicas("other", "1.0.0") == []  # nothing claims it
    finally:
        runner.shutdown()
