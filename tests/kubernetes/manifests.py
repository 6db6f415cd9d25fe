"""The platform's kustomize tree rendered by the real `kubectl kustomize`, and ways to read it.

`KustomizeTree` copies `kustomize/` into a temporary directory (never the operator's own
`secrets/trackside.env`), makes each overlay's secrets with `kustomize/new-secrets.sh` as the docs
say, and renders base and overlays into `Rendered` sets of objects.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest
import yaml

from tests.conftest import IN_CI, REPO

KUSTOMIZE = REPO / "kustomize"
OVERLAYS = ("local", "production")
TREES = ("base", *OVERLAYS)
PLATFORM_NAMESPACE = "trackside"
JOBS_NAMESPACE = "trackside-jobs"
# the database a production operator would give new-secrets.sh
PRODUCTION_DATABASE_URL = "postgresql://trackside:pw-from-the-operator@db.example.com:5432/trackside"
WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob")

Obj = dict[str, Any]


def unavailable(reason: str) -> NoReturn:
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: a missing real component fails the suite)")
    pytest.skip(reason)


def kubectl() -> str:
    path = shutil.which("kubectl") or ("/usr/bin/kubectl" if Path("/usr/bin/kubectl").exists() else None)
    if path is None:
        unavailable("kubectl is not installed (it renders the kustomize tree: `kubectl kustomize`)")
    return path


def tree_dir(root: Path, name: str) -> Path:
    return root / "base" if name == "base" else root / "overlays" / name


def copy_tree(target: Path) -> Path:
    """kustomize/ as committed: without any secrets/trackside.env an operator made in the checkout."""
    shutil.copytree(KUSTOMIZE, target, ignore=shutil.ignore_patterns("trackside.env"))
    return target


def new_secrets(
    overlay_dir: Path, env: Mapping[str, str] | None = None, script: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """`new-secrets.sh OVERLAY_DIR` (by default the copy of the script beside the overlays)."""
    return subprocess.run(
        [str(script or overlay_dir.parent.parent / "new-secrets.sh"), str(overlay_dir)],
        capture_output=True,
        text=True,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **(env or {})},
        timeout=30,
    )


def kustomize(directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [kubectl(), "kustomize", str(directory)], capture_output=True, text=True, timeout=60
    )


def render(directory: Path) -> list[Obj]:
    done = kustomize(directory)
    assert done.returncode == 0, f"kubectl kustomize {directory} failed:\n{done.stderr}"
    return [obj for obj in yaml.safe_load_all(done.stdout) if obj]


def read_env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key] = value
    return values


@dataclass
class Rendered:
    name: str
    objects: list[Obj]

    def of_kind(self, kind: str) -> list[Obj]:
        return [o for o in self.objects if o["kind"] == kind]

    def find(self, kind: str, name: str, namespace: str | None = PLATFORM_NAMESPACE) -> Obj:
        found = [o for o in self.of_kind(kind) if named(o) == name and namespace_of(o) == namespace]
        assert len(found) == 1, f"{self.name}: expected one {kind} {namespace}/{name}, found {len(found)}"
        return found[0]

    def has(self, kind: str, name: str, namespace: str = PLATFORM_NAMESPACE) -> bool:
        return any(named(o) == name and namespace_of(o) == namespace for o in self.of_kind(kind))

    def workloads(self) -> list[Obj]:
        return [o for o in self.objects if o["kind"] in WORKLOADS]

    def containers(self) -> Iterator[tuple[Obj, Obj]]:
        """(workload, container) for every container and init container."""
        for workload in self.workloads():
            spec = pod_spec(workload)
            for container in [*spec.get("initContainers", []), *spec["containers"]]:
                yield workload, container

    def generated(self, kind: str, base_name: str) -> Obj:
        """A ConfigMap or Secret made by a generator: its name carries a hash suffix."""
        found = [o for o in self.of_kind(kind) if named(o).rsplit("-", 1)[0] == base_name]
        assert len(found) == 1, (
            f"{self.name}: expected one generated {kind} {base_name}-*, found {len(found)}"
        )
        return found[0]

    def secret_data(self, secret_name: str) -> dict[str, str]:
        secret = self.find("Secret", secret_name)
        return {k: base64.b64decode(v).decode() for k, v in secret.get("data", {}).items()}

    def container_env(self, workload: Obj, container: Obj) -> dict[str, str]:
        """The environment Kubernetes gives the container: envFrom ConfigMaps and Secrets, then env
        (values, secretKeyRef, configMapKeyRef), resolved against the rendered objects."""
        namespace = namespace_of(workload)
        env: dict[str, str] = {}
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                env.update(self.find("ConfigMap", source["configMapRef"]["name"], namespace).get("data", {}))
            else:
                env.update(self.secret_data(source["secretRef"]["name"]))
        for var in container.get("env", []):
            if "value" in var:
                env[var["name"]] = var["value"]
                continue
            ref = var["valueFrom"]
            if "secretKeyRef" in ref:
                key = ref["secretKeyRef"]
                env[var["name"]] = self.secret_data(key["name"])[key["key"]]
            elif "configMapKeyRef" in ref:
                key = ref["configMapKeyRef"]
                env[var["name"]] = self.find("ConfigMap", key["name"], namespace)["data"][key["key"]]
            else:
                raise AssertionError(f"{named(workload)}: env {var['name']} comes from {sorted(ref)}")
        return env


def named(obj: Obj) -> str:
    return str(obj["metadata"]["name"])


def namespace_of(obj: Obj) -> str | None:
    return obj["metadata"].get("namespace")


def pod_spec(workload: Obj) -> Obj:
    spec = workload["spec"]
    if workload["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return dict(spec["template"]["spec"])


def pod_labels(workload: Obj) -> dict[str, str]:
    spec = workload["spec"]
    if workload["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return dict(spec["template"]["metadata"].get("labels", {}))


def matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """A Kubernetes label selector (matchLabels and matchExpressions); an empty one matches all."""
    if selector is None:
        return True
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and key in labels and labels[key] in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


class KustomizeTree:
    """A copy of kustomize/ with secrets made by new-secrets.sh, rendered once per tree."""

    def __init__(self, root: Path) -> None:
        self.root = copy_tree(root / "kustomize")
        for overlay in OVERLAYS:
            env = {"TRACKSIDE_DATABASE_URL": PRODUCTION_DATABASE_URL} if overlay == "production" else {}
            made = new_secrets(tree_dir(self.root, overlay), env)
            assert made.returncode == 0, f"new-secrets.sh {overlay} failed:\n{made.stderr}"
        self.rendered = {name: Rendered(name, render(tree_dir(self.root, name))) for name in TREES}

    def secrets_file(self, overlay: str) -> Path:
        return tree_dir(self.root, overlay) / "secrets" / "trackside.env"


KUBERNETES_VERSIONS = ("1.29.0", "1.33.0")  # what every object is validated for


def validator() -> Any:
    try:
        import kubernetes_validate
    except ImportError:
        if IN_CI:
            pytest.fail(
                "kubernetes-validate is not installed (CI=true: a missing real component fails the suite)"
            )
        pytest.skip("kubernetes-validate is not installed (dev dependency)")
    return kubernetes_validate
