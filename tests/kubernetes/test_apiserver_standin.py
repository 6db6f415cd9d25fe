"""The Kubernetes API server stand-in answers the official `kubernetes` client the way a cluster would."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes import config, watch
from kubernetes.watch.watch import iter_resp_lines

from .apiserver_standin import ApiServerStandIn

NS = "trackside-jobs"

# The client's methods are typed for its models; these tests pass dict bodies (as the runner does), so the API
# objects they call are typed Any.


@pytest.fixture
def api() -> Iterator[ApiServerStandIn]:
    with ApiServerStandIn() as standin:
        yield standin


@pytest.fixture
def kube(api: ApiServerStandIn, tmp_path: Path) -> Iterator[k8s.ApiClient]:
    api_client = config.new_client_from_config(config_file=str(api.kubeconfig(tmp_path / "kubeconfig")))
    yield api_client
    api_client.close()


def status_of(exc: k8s.ApiException) -> dict[str, Any]:
    body = json.loads(exc.body or "null")
    assert body["kind"] == "Status" and body["status"] == "Failure" and body["code"] == exc.status
    return dict(body)


def secret(name: str, **extra: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, **extra}


def deployment(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "main", "image": "job:1"}]},
            },
        },
    }


def pod(name: str, labels: dict[str, str], containers: tuple[str, ...] = ("main",)) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "labels": labels},
        "spec": {"containers": [{"name": c, "image": "job:1"} for c in containers]},
    }


def test_create_get_and_errors_as_kubernetes_words_them(api: ApiServerStandIn, kube: k8s.ApiClient) -> None:
    core: Any = k8s.CoreV1Api(kube)
    created = core.create_namespaced_secret(NS, secret("creds", stringData={"token": "s3cret"}))
    assert created.metadata.namespace == NS and created.metadata.uid and created.metadata.resource_version
    assert created.data == {"token": "czNjcmV0"} and created.type == "Opaque"
    assert core.read_namespaced_secret("creds", NS).metadata.uid == created.metadata.uid

    with pytest.raises(k8s.ApiException) as exists:
        core.create_namespaced_secret(NS, secret("creds"))
    assert exists.value.status == 409 and exists.value.reason == "Conflict"
    body = status_of(exists.value)
    assert body["reason"] == "AlreadyExists" and body["message"] == 'secrets "creds" already exists'
    assert body["details"] == {"name": "creds", "kind": "secrets"}

    with pytest.raises(k8s.ApiException) as missing:
        core.read_namespaced_secret("nope", NS)
    assert missing.value.status == 404
    assert status_of(missing.value)["message"] == 'secrets "nope" not found'

    apps: Any = k8s.AppsV1Api(kube)
    apps.create_namespaced_deployment(NS, deployment("web", {"team": "a"}))
    with pytest.raises(k8s.ApiException) as dup:
        apps.create_namespaced_deployment(NS, deployment("web", {"team": "a"}))
    assert status_of(dup.value)["message"] == 'deployments.apps "web" already exists'

    for bad in (
        secret("", data={}),
        {**secret("x"), "kind": "ConfigMap"},
        {**secret("x"), "metadata": {"name": "x", "namespace": "elsewhere"}},
        secret("Not_A_Name"),
        {**secret("x"), "metadata": {"name": "x", "labels": {"k": "bad value"}}},
    ):
        with pytest.raises(k8s.ApiException) as rejected:
            core.create_namespaced_secret(NS, bad)
        assert rejected.value.status == 422 and status_of(rejected.value)["reason"] == "Invalid"
    with pytest.raises(k8s.ApiException) as not_base64:
        core.create_namespaced_secret(NS, secret("raw", data={"k": "not base64!"}))
    assert not_base64.value.status == 400
    assert api.get("secrets", NS, "x") is None


def test_list_with_label_and_field_selectors(api: ApiServerStandIn, kube: k8s.ApiClient) -> None:
    apps: Any = k8s.AppsV1Api(kube)
    apps.create_namespaced_deployment(NS, deployment("a", {"tier": "job", "env": "prod"}))
    apps.create_namespaced_deployment(NS, deployment("b", {"tier": "job", "env": "dev"}))
    apps.create_namespaced_deployment(NS, deployment("c", {"tier": "web"}))
    last = apps.create_namespaced_deployment("other", deployment("d", {"tier": "job"}))

    def names(**kwargs: Any) -> list[str]:
        listed = apps.list_namespaced_deployment(NS, **kwargs)
        assert listed.kind == "DeploymentList" and listed.api_version == "apps/v1"
        return [d.metadata.name for d in listed.items]

    assert names() == ["a", "b", "c"]
    assert names(label_selector="tier=job") == ["a", "b"]
    assert names(label_selector="tier==job,env!=dev") == ["a"]
    assert names(label_selector="env!=dev") == ["a", "c"]
    assert names(label_selector="env in (dev, prod)") == ["a", "b"]
    assert names(label_selector="env notin (prod),tier") == ["b", "c"]
    assert names(label_selector="!env") == ["c"]
    assert names(field_selector="metadata.name=b") == ["b"]
    assert [d["metadata"]["name"] for d in api.objects("deployments", NS, "tier=job,env")] == ["a", "b"]

    raw = k8s.CoreV1Api(kube).api_client.param_serialize(
        "GET",
        "/apis/apps/v1/namespaces/{namespace}/deployments",
        path_params={"namespace": NS},
        auth_settings=["BearerToken"],
    )
    response = kube.call_api(*raw)
    listed = json.loads(response.read())
    assert listed["metadata"]["resourceVersion"] == last.metadata.resource_version
    assert all(i["kind"] == "Deployment" and i["apiVersion"] == "apps/v1" for i in listed["items"])


def test_replace_patch_and_conflicts(api: ApiServerStandIn, kube: k8s.ApiClient) -> None:
    apps: Any = k8s.AppsV1Api(kube)
    created = apps.create_namespaced_deployment(NS, deployment("web", {"v": "1"}))

    replaced = apps.replace_namespaced_deployment(
        "web",
        NS,
        {
            **deployment("web", {"v": "2"}),
            "metadata": {
                "name": "web",
                "labels": {"v": "2"},
                "resourceVersion": created.metadata.resource_version,
            },
        },
    )
    assert replaced.metadata.uid == created.metadata.uid
    assert int(replaced.metadata.resource_version) > int(created.metadata.resource_version)
    assert replaced.metadata.generation == 1 and replaced.metadata.labels == {"v": "2"}

    with pytest.raises(k8s.ApiException) as conflict:
        apps.replace_namespaced_deployment(
            "web",
            NS,
            {
                **deployment("web", {}),
                "metadata": {"name": "web", "resourceVersion": created.metadata.resource_version},
            },
        )
    assert conflict.value.status == 409 and status_of(conflict.value)["reason"] == "Conflict"

    patched = apps.patch_namespaced_deployment(
        "web", NS, {"metadata": {"labels": {"v": None, "w": "3"}}, "spec": {"replicas": 2}}
    )
    assert patched.metadata.labels == {"w": "3"} and patched.spec.replicas == 2
    assert patched.metadata.generation == 2
    assert (
        api.requests_for("PATCH", "deployments", "web")[0].content_type
        == "application/strategic-merge-patch+json"
    )

    merge = kube.param_serialize(
        "PATCH",
        "/apis/apps/v1/namespaces/{namespace}/deployments/{name}",
        path_params={"namespace": NS, "name": "web"},
        header_params={"Content-Type": "application/merge-patch+json", "Accept": "application/json"},
        body={"spec": {"template": {"spec": {"containers": [{"name": "other", "image": "x:2"}]}}}},
        auth_settings=["BearerToken"],
    )
    assert json.loads(kube.call_api(*merge).read())["spec"]["template"]["spec"]["containers"] == [
        {"name": "other", "image": "x:2"}
    ]
    json_patch = kube.param_serialize(
        "PATCH",
        "/apis/apps/v1/namespaces/{namespace}/deployments/{name}",
        path_params={"namespace": NS, "name": "web"},
        header_params={"Content-Type": "application/json-patch+json"},
        body=[{"op": "replace", "path": "/spec/replicas", "value": 3}],
        auth_settings=["BearerToken"],
    )
    assert kube.call_api(*json_patch).status == 415

    with pytest.raises(k8s.ApiException) as absent:
        apps.patch_namespaced_deployment("gone", NS, {"spec": {"replicas": 1}})
    assert absent.value.status == 404


def test_delete_collects_pods_of_deployments_and_records_the_policy(
    api: ApiServerStandIn, kube: k8s.ApiClient
) -> None:
    def start_pods(standin: ApiServerStandIn, obj: dict[str, Any]) -> None:
        labels = obj["spec"]["template"]["metadata"]["labels"]
        standin.put_object("pods", pod(f"{obj['metadata']['name']}-1", labels))

    api.on_create("deployments", start_pods)
    api.on_create("jobs", start_pods)
    api.put_object("pods", pod("unrelated", {"app": "other"}))
    apps: Any = k8s.AppsV1Api(kube)
    batch: Any = k8s.BatchV1Api(kube)
    core: Any = k8s.CoreV1Api(kube)

    apps.create_namespaced_deployment(NS, deployment("web", {}))
    assert [p.metadata.name for p in core.list_namespaced_pod(NS).items] == ["unrelated", "web-1"]
    result = apps.delete_namespaced_deployment("web", NS, propagation_policy="Foreground")
    assert result["status"] == "Success"
    assert [p.metadata.name for p in core.list_namespaced_pod(NS).items] == ["unrelated"]
    assert api.requests_for("DELETE", "deployments", "web")[0].propagation_policy == "Foreground"
    with pytest.raises(k8s.ApiException) as again:
        apps.delete_namespaced_deployment("web", NS)
    assert again.value.status == 404

    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "build"},
        "spec": {"template": {"metadata": {"labels": {"app": "build"}}, "spec": {"containers": []}}},
    }
    batch.create_namespaced_job(NS, job)
    batch.delete_namespaced_job("build", NS)  # a Job's default is to orphan its pods, as in Kubernetes
    assert api.get("pods", NS, "build-1") is not None
    deleted = core.delete_namespaced_pod("build-1", NS)  # pods, like services, answer with the object
    assert deleted.metadata.name == "build-1" and deleted.metadata.labels == {"app": "build"}
    batch.create_namespaced_job(NS, job)
    batch.delete_namespaced_job("build", NS, body={"propagationPolicy": "Background"})
    assert api.get("pods", NS, "build-1") is None
    assert api.requests_for("DELETE", "jobs", "build")[-1].propagation_policy == "Background"


def test_authentication_and_injected_failures(
    api: ApiServerStandIn, kube: k8s.ApiClient, tmp_path: Path
) -> None:
    core: Any = k8s.CoreV1Api(kube)
    api.fail(
        "POST", "secrets", 403, "Forbidden", 'secrets is forbidden: User "runner" cannot create', times=1
    )
    with pytest.raises(k8s.ApiException) as forbidden:
        core.create_namespaced_secret(NS, secret("s"))
    assert forbidden.value.status == 403 and status_of(forbidden.value)["reason"] == "Forbidden"
    assert core.create_namespaced_secret(NS, secret("s")).metadata.name == "s"

    api.fail("GET", "secrets", 500, "InternalError", "etcd is down", name="s")
    with pytest.raises(k8s.ApiException) as broken:
        core.read_namespaced_secret("s", NS)
    assert broken.value.status == 500
    assert core.list_namespaced_secret(NS).items[0].metadata.name == "s"

    config_path = api.kubeconfig(tmp_path / "wrong")
    config_path.write_text(config_path.read_text().replace(api.token, "wrong-token"))
    with (
        config.new_client_from_config(config_file=str(config_path)) as wrong,
        pytest.raises(k8s.ApiException) as unauthorized,
    ):
        k8s.CoreV1Api(wrong).list_namespaced_secret(NS)
    assert unauthorized.value.status == 401 and status_of(unauthorized.value)["reason"] == "Unauthorized"
    assert api.requests[-1].verb == "GET" and api.requests[-1].plural == "secrets"


def test_watch_streams_changes_as_they_happen(api: ApiServerStandIn, kube: k8s.ApiClient) -> None:
    core: Any = k8s.CoreV1Api(kube)
    api.put_object("pods", pod("early", {"app": "x"}))
    start_rv = core.list_namespaced_pod(NS).metadata.resource_version
    api.put_object("pods", pod("p", {"app": "x"}))
    api.put_object("pods", pod("ignored", {"app": "y"}))

    seen: list[tuple[str, str, str | None]] = []
    w = watch.Watch()
    for event in w.stream(
        core.list_namespaced_pod, NS, label_selector="app=x", resource_version=start_rv, timeout_seconds=5
    ):
        obj = event["object"]
        seen.append((event["type"], obj.metadata.name, obj.status.phase if obj.status else None))
        if len(seen) == 1:
            # a change after the watch started arrives while it is open
            threading.Timer(0.1, api.update_status, ("pods", NS, "p", {"phase": "Running"})).start()
        elif len(seen) == 2:
            api.delete_object("pods", NS, "p")
        elif len(seen) == 3:
            w.stop()
    assert seen == [("ADDED", "p", None), ("MODIFIED", "p", "Running"), ("DELETED", "p", "Running")]

    from_now = [
        (e["type"], e["object"].metadata.name)
        for e in watch.Watch().stream(core.list_namespaced_pod, NS, timeout_seconds=1)
    ]
    assert from_now == [("ADDED", "early"), ("ADDED", "ignored")]

    api.compacted_before = int(start_rv) + 1
    with pytest.raises(k8s.ApiException) as expired:
        list(watch.Watch().stream(core.list_namespaced_pod, NS, resource_version=start_rv, timeout_seconds=5))
    assert expired.value.status == 410 and "Expired: too old resource version" in expired.value.reason
    assert [r.verb for r in api.requests_for("WATCH", "pods")] == ["WATCH"] * 3


def test_followed_logs_get_new_lines_and_end_with_the_pod(api: ApiServerStandIn, kube: k8s.ApiClient) -> None:
    core: Any = k8s.CoreV1Api(kube)
    api.put_object("pods", pod("kaniko", {}, containers=("build",)))
    api.append_log(NS, "kaniko", "build", "one", "two\nthree")
    assert core.read_namespaced_pod_log("kaniko", NS) == "one\ntwo\nthree\n"
    assert core.read_namespaced_pod_log("kaniko", NS, tail_lines=1) == "three\n"
    stamped = core.read_namespaced_pod_log("kaniko", NS, tail_lines=1, timestamps=True)
    assert stamped.endswith("Z three\n") and stamped[:4].isdigit()

    response = core.read_namespaced_pod_log("kaniko", NS, follow=True, tail_lines=1, _preload_content=False)
    received: list[str] = []

    def read() -> None:
        for line in iter_resp_lines(response):
            received.append(line)
            if line == "four":
                api.delete_object("pods", NS, "kaniko")

    reader = threading.Thread(target=read)
    reader.start()
    time.sleep(0.2)
    api.append_log(NS, "kaniko", "build", "four")
    reader.join(timeout=5)
    assert not reader.is_alive()
    assert received == ["three", "four"]

    api.put_object("pods", pod("multi", {}, containers=("a", "b")))
    with pytest.raises(k8s.ApiException) as unnamed:
        core.read_namespaced_pod_log("multi", NS)
    assert unnamed.value.status == 400
    assert (
        status_of(unnamed.value)["message"]
        == "a container name must be specified for pod multi, choose one of: [a b]"
    )
    with pytest.raises(k8s.ApiException) as no_previous:
        core.read_namespaced_pod_log("multi", NS, container="a", previous=True)
    assert (
        status_of(no_previous.value)["message"]
        == 'previous terminated container "a" in pod "multi" not found'
    )
    api.append_log(NS, "multi", "a", "crashed", previous=True)
    assert core.read_namespaced_pod_log("multi", NS, container="a", previous=True) == "crashed\n"

    api.append_log(NS, "multi", "b", "done")
    api.end_log(NS, "multi", "b")
    assert core.read_namespaced_pod_log("multi", NS, container="b", follow=True) == "done\n"
    with pytest.raises(k8s.ApiException) as gone:
        core.read_namespaced_pod_log("kaniko", NS)
    assert gone.value.status == 404


def test_close_ends_open_streams_promptly(tmp_path: Path) -> None:
    api = ApiServerStandIn()
    api_client = config.new_client_from_config(config_file=str(api.kubeconfig(tmp_path / "kubeconfig")))
    core: Any = k8s.CoreV1Api(api_client)
    api.put_object("pods", pod("p", {}))
    events: list[str] = []
    lines: list[str] = []

    def watch_pods() -> None:
        events.extend(
            e["type"] for e in watch.Watch().stream(core.list_namespaced_pod, NS, timeout_seconds=30)
        )

    def follow_log() -> None:
        lines.extend(watch.Watch().stream(core.read_namespaced_pod_log, "p", NS))

    threads = [threading.Thread(target=watch_pods), threading.Thread(target=follow_log)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    started = time.monotonic()
    api.close()
    for t in threads:
        t.join(timeout=5)
    assert not any(t.is_alive() for t in threads)
    assert time.monotonic() - started < 3
    assert events == ["ADDED"] and lines == []
    api_client.close()


def test_watch_with_a_selector_sees_objects_enter_and_leave_it(
    api: ApiServerStandIn, kube: k8s.ApiClient
) -> None:
    core: Any = k8s.CoreV1Api(kube)
    start_rv = core.list_namespaced_pod(NS).metadata.resource_version
    api.put_object("pods", pod("q", {"app": "y"}))
    api.put_object("pods", pod("q", {"app": "x"}))
    api.put_object("pods", pod("q", {"app": "y"}))
    w = watch.Watch()
    seen = []
    for event in w.stream(core.list_namespaced_pod, NS, label_selector="app=x", resource_version=start_rv):
        seen.append((event["type"], event["object"].metadata.labels))
        if len(seen) == 2:
            w.stop()
    assert seen == [("ADDED", {"app": "x"}), ("DELETED", {"app": "x"})]


def test_a_failing_callback_is_a_500_and_fails_the_test_at_close(tmp_path: Path) -> None:
    def broken(standin: ApiServerStandIn, obj: dict[str, Any]) -> None:
        raise ValueError("controller bug")

    api = ApiServerStandIn()
    api.on_create("secrets", broken)
    with config.new_client_from_config(
        config_file=str(api.kubeconfig(tmp_path / "kubeconfig"))
    ) as api_client:
        core: Any = k8s.CoreV1Api(api_client)
        with pytest.raises(k8s.ApiException) as failed:
            core.create_namespaced_secret(NS, secret("s"))
    assert failed.value.status == 500
    with pytest.raises(RuntimeError) as at_close:
        api.close()
    assert isinstance(at_close.value.__cause__, ValueError)
