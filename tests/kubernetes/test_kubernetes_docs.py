"""docs/kubernetes.md against what it documents: every setting the overlays give the platform, every
setting of the kubernetes target with its default, the registry configuration it tells operators
to write, the reasons a job pod fails with, every probe, and every file it names."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import re
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from lifecycle.config import KubernetesConfig
from lifecycle.deploy.kubernetes_pod_status import pod_view
from tests.conftest import REPO

from .manifests import OVERLAYS, KustomizeTree, Obj, Rendered, pod_spec

GUIDE = REPO / "docs" / "kubernetes.md"
COMPONENTS = ("lifecycle", "pub", "dashboard")


@pytest.fixture(scope="module")
def tree(module_tmp: Path) -> KustomizeTree:
    return KustomizeTree(module_tmp)


def test_every_setting_given_to_the_platform_is_documented(tree: KustomizeTree) -> None:
    guide = GUIDE.read_text()
    for overlay in OVERLAYS:
        rendered = tree.rendered[overlay]
        for component in COMPONENTS:
            deployment = rendered.find("Deployment", component)
            (container,) = pod_spec(deployment)["containers"]
            for variable in rendered.container_env(deployment, container):
                assert f"`{variable}`" in guide, f"{variable} ({overlay}, {component})"


def test_every_probe_and_metrics_path_is_documented(tree: KustomizeTree) -> None:
    guide = GUIDE.read_text()
    rendered = tree.rendered["production"]
    for component in COMPONENTS:
        deployment = rendered.find("Deployment", component)
        (container,) = pod_spec(deployment)["containers"]
        for probe in ("livenessProbe", "readinessProbe"):
            assert f"`{container[probe]['httpGet']['path']}`" in guide
        metrics = deployment["spec"]["template"]["metadata"].get("annotations", {}).get("prometheus.io/path")
        if metrics:
            assert f"`{metrics}`" in guide


def test_every_file_the_guide_names_exists() -> None:
    named = set(re.findall(r"(?<![\w/.-])((?:kustomize|docs|sample-jobs)/[\w./-]*\w)", GUIDE.read_text()))
    assert "kustomize/new-secrets.sh" in named
    for path in sorted(named):
        if path.endswith("secrets/trackside.env"):
            continue  # the operator makes it
        assert (REPO / path).exists(), path


# ---- the kubernetes target -------------------------------------------------------------------------

# values tried on each setting to find the field it sets (the first one the setting accepts)
PROBE_VALUES = ("x-test-value", "http://x.test", "77", "false", "true")


def section(title: str) -> str:
    text = GUIDE.read_text()
    start = text.index(f"\n{title}\n")
    end = text.find("\n## ", start + len(title) + 2)
    return text[start : end if end >= 0 else len(text)]


def lifecycle_config(rendered: Rendered) -> dict[str, str]:
    (container,) = pod_spec(rendered.find("Deployment", "lifecycle"))["containers"]
    return dict(rendered.find("ConfigMap", container["envFrom"][0]["configMapRef"]["name"])["data"])


def settings_read() -> set[str]:
    """Every variable KubernetesConfig.from_env reads."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(KubernetesConfig.from_env)))
    return {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and re.fullmatch(r"TRACKSIDE_[A-Z0-9_]+", node.value)
    }


def field_set_by(variable: str) -> str:
    default = KubernetesConfig.from_env({})
    for value in PROBE_VALUES:
        try:
            changed = KubernetesConfig.from_env({variable: value})
        except ValueError:
            continue
        fields = [
            f.name
            for f in dataclasses.fields(changed)
            if getattr(changed, f.name) != getattr(default, f.name)
        ]
        if fields:
            (field,) = fields
            return field
    raise AssertionError(f"{variable}: no value of {PROBE_VALUES} changes a setting")


def as_written(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def test_every_setting_of_the_kubernetes_target_is_documented_with_its_default() -> None:
    table = section("### Settings of the kubernetes target")
    rows = {m[1]: m[2] for m in re.finditer(r"^\| `(TRACKSIDE_[A-Z0-9_]+)` \|(.*)$", table, re.MULTILINE)}
    read = settings_read()
    assert {
        "TRACKSIDE_IMAGE_REPOSITORY",
        "TRACKSIDE_K8S_REGISTRY_SECRET",
        "TRACKSIDE_KANIKO_DEADLINE",
    } <= read
    assert set(rows) == read
    defaults = KubernetesConfig()
    for variable in sorted(read):
        default = getattr(defaults, field_set_by(variable))
        if default is not None:
            default_column = rows[variable].split("|")[0]
            assert f"`{as_written(default)}`" in default_column, f"{variable}: default {default!r}"


def test_the_guides_settings_snippets_are_settings_the_lifecycle_accepts() -> None:
    read = settings_read()
    snippets = 0
    for block in re.findall(r"```yaml\n(.*?)```", GUIDE.read_text(), re.DOTALL):
        env = dict(
            line.strip()[2:].split("=", 1)
            for line in block.splitlines()
            if re.fullmatch(r"\s*- TRACKSIDE_[A-Z0-9_]+=.*", line)
        )
        if env.keys() & read:
            snippets += 1
            KubernetesConfig.from_env(env)  # raises on a value it refuses
            assert env.keys() <= read | {"TRACKSIDE_PUB_URL"}, sorted(env.keys() - read)
    assert snippets >= 3, "Docker Hub, a private registry, the local registry"


def test_the_local_node_is_told_to_pull_the_registrys_names_from_its_node_port(tree: KustomizeTree) -> None:
    local = tree.rendered["local"]
    node_port = local.find("Service", "registry")["spec"]["ports"][0]["nodePort"]
    job_images = lifecycle_config(local)["TRACKSIDE_IMAGE_REPOSITORY"].split("/")[0]
    (container,) = pod_spec(local.find("Deployment", "lifecycle"))["containers"]
    platform_image = container["image"].split("/")[0]
    assert job_images != platform_image, "pushed by pods (cluster DNS) / by you (the NodePort)"
    names = {job_images, platform_image}
    guide = section("## Install on a one-node cluster (local overlay)")
    # k3s, k3d: registries.yaml
    (registries,) = [
        yaml.safe_load(block)
        for block in re.findall(r"```yaml\n(.*?)```", guide, re.DOTALL)
        if "mirrors:" in block
    ]
    assert registries["mirrors"] == {name: {"endpoint": [f"http://localhost:{node_port}"]} for name in names}
    # kind, minikube: a hosts.toml per name
    loop = re.search(r"for name in ([^;]+); do", guide)
    assert loop and set(loop[1].split()) == names
    assert f'[host."http://localhost:{node_port}"]' in guide


def test_the_production_registry_secret_is_made_as_the_lifecycle_expects(tree: KustomizeTree) -> None:
    settings = KubernetesConfig.from_env(lifecycle_config(tree.rendered["production"]))
    assert settings.registry_secret
    command = f"kubectl -n {settings.namespace} create secret docker-registry {settings.registry_secret}"
    assert command in section("## Install in production (production overlay)")
    assert command in section("## Registries for job images")


def test_every_reason_a_job_pod_fails_with_is_explained() -> None:
    guide = section("## When a deploy fails")

    def failing(state: Obj, last: Obj | None = None, conditions: list[Obj] | None = None) -> str:
        status = {
            "phase": "Pending",
            "containerStatuses": [
                {"name": "job", "image": "r/j:1", "state": state, "lastState": last or {}, "restartCount": 1}
            ],
            "conditions": conditions or [],
        }
        view = pod_view({"metadata": {"name": "p"}, "status": status}, time.time(), 120.0)
        assert view.error, status
        return view.error

    pull = failing({"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}})
    crash = failing(
        {"waiting": {"reason": "CrashLoopBackOff"}}, {"terminated": {"reason": "Error", "exitCode": 3}}
    )
    oom = failing({"running": {}}, {"terminated": {"reason": "OOMKilled", "exitCode": 137}})
    unschedulable = failing(
        {"waiting": {"reason": "ContainerCreating"}},
        conditions=[
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/3 nodes"}
        ],
    )
    assert f"`{pull.split(':')[0]}`" in guide
    assert crash.replace("code 3", "code N") in guide
    assert f"`{oom}`" in guide
    assert unschedulable.startswith("FailedScheduling: ") and "`FailedScheduling: " in guide
    for reason in ("Forbidden", "DeadlineExceeded", "OOMKilled in the kaniko container"):
        assert reason in guide
