"""The local overlay's Deployments, run as real processes: each container's command (through the real
`trackside` CLI) with exactly the environment Kubernetes would give it (its ConfigMap and the Secret
made by new-secrets.sh), against a real PostgreSQL. Only what a cluster changes is changed: the
address and port to listen on, the services' addresses (loopback instead of cluster DNS), the data
directory, the database server, and the Kubernetes API (a kubeconfig for the API server stand-in
instead of the pod's service account). Then every probe and metrics path the manifests name must
answer, the gateway and the lifecycle must accept each other's shared credential, and the lifecycle
must run its jobs on Kubernetes (target `kubernetes`, watching the jobs namespace)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url

from tests.conftest import free_port
from tests.db import PostgresServer

from .apiserver_standin import ApiServerStandIn
from .manifests import JOBS_NAMESPACE, KustomizeTree, Obj, Rendered, named, pod_spec, read_env_file

COMPONENTS = ("lifecycle", "pub", "dashboard")
TRACKSIDE = Path(sys.executable).parent / "trackside"


@dataclass
class Component:
    name: str
    deployment: Obj
    container: Obj
    env: dict[str, str]
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def argv(container: Obj, port: int) -> list[str]:
    """The container's command, listening on loopback at `port` instead of 0.0.0.0 in the pod."""
    command = list(container["command"])
    assert command[0] == "trackside"
    command[0] = str(TRACKSIDE)
    command[command.index("--host") + 1] = "127.0.0.1"
    command[command.index("--port") + 1] = str(port)
    return command


def pod_env(rendered: Rendered, name: str, overrides: dict[str, str]) -> tuple[Obj, Obj, dict[str, str]]:
    """(Deployment, container, the container's environment with `overrides`)."""
    deployment = rendered.find("Deployment", name)
    (container,) = pod_spec(deployment)["containers"]
    env = rendered.container_env(deployment, container)
    env.update(overrides)
    return deployment, container, env


def process_env(env: dict[str, str], tmp: Path) -> dict[str, str]:
    """The image's environment (Dockerfile ENV) plus the pod's; nothing from this test's shell."""
    return {"PATH": os.environ["PATH"], "HOME": str(tmp), "PYTHONUNBUFFERED": "1", **env}


def start(
    rendered: Rendered, name: str, overrides: dict[str, str], tmp: Path, port: int | None = None
) -> Component:
    deployment, container, env = pod_env(rendered, name, overrides)
    port = port or free_port()
    log = tmp / f"{name}.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            argv(container, port), stdout=out, stderr=subprocess.STDOUT, env=process_env(env, tmp)
        )
    component = Component(name, deployment, container, env, process, port, log)
    startup = container["startupProbe"]["httpGet"]["path"]
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(component.url + startup, timeout=5).status_code == 200:
                return component
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            component.stop()
            raise AssertionError(f"{name} never passed its startup probe {startup}:\n{component.output()}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def tree(module_tmp: Path) -> KustomizeTree:
    return KustomizeTree(module_tmp)


@pytest.fixture(scope="module")
def api() -> Iterator[ApiServerStandIn]:
    """The cluster's API server, as the lifecycle's service account would reach it."""
    with ApiServerStandIn() as server:
        yield server


def database_url(rendered: Rendered, postgres_server: PostgresServer) -> str:
    """The rendered URL (scheme, form) pointed at a new database on this machine's server instead of
    the in-cluster one."""
    deployment = rendered.find("Deployment", "lifecycle")
    rendered_url = make_url(
        rendered.container_env(deployment, pod_spec(deployment)["containers"][0])["TRACKSIDE_DATABASE_URL"]
    )
    server = postgres_server.create_database()
    return rendered_url.set(
        host=server.host,
        port=server.port,
        username=server.username,
        password=server.password,
        database=server.database,
    ).render_as_string(hide_password=False)


@pytest.fixture(scope="module")
def platform(
    tree: KustomizeTree, module_tmp: Path, postgres_server: PostgresServer, api: ApiServerStandIn
) -> Iterator[dict[str, Component]]:
    local = tree.rendered["local"]
    pub_port = free_port()
    started: dict[str, Component] = {}
    try:
        started["lifecycle"] = start(
            local,
            "lifecycle",
            {
                "TRACKSIDE_DATABASE_URL": database_url(local, postgres_server),
                "TRACKSIDE_DATA_DIR": str(module_tmp / "data"),
                "TRACKSIDE_PUB_URL": f"http://127.0.0.1:{pub_port}/pub",
                # in a pod: the service account (KUBERNETES_SERVICE_HOST); here: the stand-in
                "TRACKSIDE_KUBECONFIG": str(api.kubeconfig(module_tmp / "kubeconfig")),
            },
            module_tmp,
        )
        lifecycle_url = started["lifecycle"].url
        started["pub"] = start(local, "pub", {"TRACKSIDE_LIFECYCLE_URL": lifecycle_url}, module_tmp, pub_port)
        started["dashboard"] = start(
            local, "dashboard", {"TRACKSIDE_LIFECYCLE_URL": lifecycle_url}, module_tmp
        )
        yield started
    finally:
        for component in reversed(started.values()):
            component.stop()


@pytest.mark.parametrize("name", COMPONENTS)
def test_every_probe_answers(platform: dict[str, Component], name: str) -> None:
    component = platform[name]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        path = component.container[probe]["httpGet"]["path"]
        answer = httpx.get(component.url + path, timeout=10)
        assert answer.status_code == 200, f"{name} {probe} {path}: {answer.status_code} {answer.text[:200]}"


@pytest.mark.parametrize("name", COMPONENTS)
def test_metrics_are_where_the_pods_announce_them(platform: dict[str, Component], name: str) -> None:
    component = platform[name]
    annotations = component.deployment["spec"]["template"]["metadata"].get("annotations", {})
    if name == "dashboard":
        assert "prometheus.io/scrape" not in annotations
        return
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(component.container["ports"][0]["containerPort"])
    answer = httpx.get(component.url + annotations["prometheus.io/path"], timeout=10)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    assert "# TYPE " in answer.text


def test_the_gateway_and_the_lifecycle_accept_the_shared_credential(platform: dict[str, Component]) -> None:
    # an unknown job is a 404 only when the lifecycle answered the gateway's (authenticated) question
    answer = httpx.post(
        platform["pub"].url + "/pub/job/nothing-here/1.0.0/api/v1/perform", json={}, timeout=30
    )
    assert answer.status_code == 404, answer.text
    assert "nothing-here" in answer.json()["error"]


def test_the_dashboard_signs_in_through_the_lifecycle(
    platform: dict[str, Component], module_tmp: Path
) -> None:
    admin_token = (module_tmp / "data" / "admin-token").read_text().strip()
    with httpx.Client(base_url=platform["dashboard"].url, timeout=30) as browser:
        form = browser.get("/dashboard/sign-in")
        assert form.status_code == 200
        found = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert found, form.text[:500]
        csrf = found[1]
        signed_in = browser.post("/dashboard/sign-in", data={"csrf_token": csrf, "token": admin_token})
        assert signed_in.status_code in (302, 303), signed_in.text[:300]
        jobs = browser.get(signed_in.headers["location"])
        assert jobs.status_code == 200
        assert "admin" in jobs.text


def test_no_secret_reaches_a_log(platform: dict[str, Component], tree: KustomizeTree) -> None:
    secrets = [v for v in read_env_file(tree.secrets_file("local")).values() if v]
    assert secrets
    for component in platform.values():
        output = component.output()
        assert output, named(component.deployment)
        for secret in secrets:
            assert secret not in output, f"a secret value in the {component.name} log"


def test_the_lifecycle_runs_jobs_on_kubernetes(platform: dict[str, Component], api: ApiServerStandIn) -> None:
    lifecycle = platform["lifecycle"]
    assert lifecycle.env["TRACKSIDE_INFRASTRUCTURE_TARGET"] == "kubernetes"
    info = httpx.get(lifecycle.url + "/lifecycle/api/v1/info", timeout=10)
    assert info.status_code == 200, info.text
    targets = info.json()["infrastructure_targets"]
    assert JOBS_NAMESPACE in targets.get("kubernetes", ""), targets
    # its informers: a list, then a watch, of the Deployments and the pods of the jobs namespace
    wanted = {(verb, plural) for verb in ("GET", "WATCH") for plural in ("deployments", "pods")}
    deadline = time.monotonic() + 30
    while True:
        seen = {
            (r.verb, r.plural)
            for r in api.requests
            if r.namespace == JOBS_NAMESPACE and r.name is None and r.verb in ("GET", "WATCH")
        }
        if wanted <= seen or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert wanted <= seen, f"{sorted(wanted - seen)} never came:\n{lifecycle.output()}"
    touched = {r.namespace for r in api.requests if r.plural is not None}
    assert touched == {JOBS_NAMESPACE}, "the lifecycle's Role covers the jobs namespace only"
    assert [r for r in api.requests if r.verb in ("POST", "PUT", "PATCH", "DELETE")] == [], (
        "nothing to create or delete in an empty namespace"
    )


def test_the_kubernetes_target_without_an_image_repository_is_refused(
    tree: KustomizeTree, module_tmp: Path, postgres_server: PostgresServer, api: ApiServerStandIn
) -> None:
    local = tree.rendered["local"]
    deployment, container, env = pod_env(
        local,
        "lifecycle",
        {
            "TRACKSIDE_DATABASE_URL": database_url(local, postgres_server),
            "TRACKSIDE_DATA_DIR": str(module_tmp / "refused"),
            "TRACKSIDE_PUB_URL": "http://127.0.0.1:9/pub",
            "TRACKSIDE_KUBECONFIG": str(api.kubeconfig(module_tmp / "refused-kubeconfig")),
        },
    )
    del env["TRACKSIDE_IMAGE_REPOSITORY"]
    done = subprocess.run(
        argv(container, free_port()),
        capture_output=True,
        text=True,
        env=process_env(env, module_tmp),
        timeout=60,
    )
    assert done.returncode == 2, (named(deployment), done.stdout, done.stderr)
    assert "TRACKSIDE_INFRASTRUCTURE_TARGET=kubernetes" in done.stderr
    assert "TRACKSIDE_IMAGE_REPOSITORY is not set" in done.stderr
