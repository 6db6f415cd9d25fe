"""docs/kubernetes.md against what it documents: every setting the overlays give the platform, every
probe, and every file it names."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import REPO

from .manifests import OVERLAYS, KustomizeTree, pod_spec

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
