"""The Kubernetes objects of a job version (lifecycle/deploy/kubernetes_objects.py) and of its Kaniko
build (lifecycle/deploy/kaniko_job.py), for every sample job loaded as the lifecycle loads it:
each object validated against the Kubernetes schemas (strict, 1.29 and 1.33), and the properties
a cluster relies on checked on what would be sent to the API server."""

from __future__ import annotations

import base64
import http.server
import io
import json
import os
import re
import subprocess
import tarfile
import threading
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
from trackside_wrapper.job_image import ImageRecipe, base_image_for, image_tag, stage_context

from lifecycle.deploy.builder import BuildResult
from lifecycle.deploy.kaniko_job import (
    BUILD_SECRETS_DIR,
    GitContext,
    KanikoBuild,
    KanikoObjects,
    KanikoSettings,
    UploadedContext,
    kaniko_objects,
)
from lifecycle.deploy.kubernetes_objects import (
    ANNOTATION_VERSION,
    LABEL_COMPONENT,
    LABEL_FAMILY,
    LABEL_GENERATION,
    LABEL_NAME,
    LABEL_VERSION,
    JobSettings,
    JobVersion,
    generation_object_name,
    job_objects,
    label_value,
    version_object_name,
)
from lifecycle.deploy.runner import Resources, RunSpec
from lifecycle.deployments import resources_of
from tests.conftest import REPO
from tests.gitservers import GitHttpsServer, commit_files, head_commit
from trackside.manifest import Manifest, is_valid_version, load_manifest, manifest_to_yaml

from .manifests import (
    JOBS_NAMESPACE,
    KUBERNETES_VERSIONS,
    PLATFORM_NAMESPACE,
    Obj,
    matches,
    pod_labels,
    pod_spec,
    validator,
)
from .network_policy import OUTSIDE, Pod, allowed

SAMPLE_JOBS = sorted(p.parent.name for p in (REPO / "sample-jobs").glob("*/job.yaml"))
# one value per secret-ish input; none of them may appear in a Deployment or a Job
SECRET_RUNTIME = {"API_KEY": "runtime-secret-3f9a", "AUTH_TOKEN": "family-token-77c1"}
SECRET_BUILD = {"PIP_INDEX_URL": "https://user:build-secret-91d2@pypi.example.com/simple"}
GIT_PASSWORD = "git-password-5e0b"
UPLOAD_TOKEN = "upload-token-c4d8"
PUB_URL = "http://pub.trackside.svc.cluster.local:7205/pub"
REPOSITORY = "registry.example.com/trackside-jobs"
TIMESTAMP = 1763791200
DNS_1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?")
SECRET_KEY = re.compile(r"[-._a-zA-Z0-9]+")
GATEWAY = Pod(PLATFORM_NAMESPACE, {"app.kubernetes.io/name": "trackside", LABEL_COMPONENT: "pub"})
LIFECYCLE = Pod(PLATFORM_NAMESPACE, {"app.kubernetes.io/name": "trackside", LABEL_COMPONENT: "lifecycle"})
DASHBOARD = Pod(PLATFORM_NAMESPACE, {"app.kubernetes.io/name": "trackside", LABEL_COMPONENT: "dashboard"})
DNS = Pod("kube-system", {"k8s-app": "kube-dns"})


def load(sample: str, overrides: tuple[str, ...] = ()) -> Manifest:
    return load_manifest(REPO / "sample-jobs" / sample, overrides=list(overrides))


def job_version(manifest: Manifest, timestamp: int = TIMESTAMP, image: str | None = None) -> JobVersion:
    """What the runner would get for `manifest`: as Deployments.runtime_env composes the env."""
    env = {**manifest.runtime_env, **SECRET_RUNTIME, "PUB_URL": PUB_URL}
    return JobVersion(
        name=manifest.name,
        version=manifest.version,
        family=manifest.name,
        deployment_timestamp=timestamp,
        image=image or image_tag(REPOSITORY, manifest.name, manifest.version, "ab" * 32),
        replicas=manifest.replicas,
        manifest_yaml=manifest_to_yaml(manifest),
        resources=resources_of(manifest),
        env=env,
    )


def variants(sample: str) -> list[Manifest]:
    """The sample as it is, and with several replicas and every resource set."""
    scaled = (
        "replicas=3",
        "resources.cpu_min=250m",
        "resources.cpu_max=2",
        "resources.memory_min=256Mi",
        "resources.memory_max=1Gi",
    )
    return [load(sample), load(sample, scaled)]


def staged_scaffold(manifest: Manifest, root: Path) -> tuple[dict[str, bytes], str]:
    """The build context without code, as the builder stages it for a git build, and the image tag."""
    extra = manifest.python3
    recipe = ImageRecipe(
        job_name=manifest.name,
        job_version=manifest.version,
        base_image=base_image_for(
            "python:{python_version}-slim", (extra.python_version if extra else None) or "3.11"
        ),
        system_dependencies=tuple(manifest.system_dependencies),
        requirements_path=extra.requirements_path if extra else None,
        git_commit="0" * 40,
    )
    staged = stage_context(recipe, REPO / "sample-jobs" / manifest.name, root / manifest.name, only=[])
    files = {
        p.relative_to(staged.directory).as_posix(): p.read_bytes()
        for p in sorted(staged.directory.rglob("*"))
        if p.is_file()
    }
    return files, image_tag(REPOSITORY, manifest.name, manifest.version, staged.fingerprint)


def builds(manifest: Manifest, root: Path) -> list[tuple[KanikoObjects, KanikoBuild]]:
    scaffold, tag = staged_scaffold(manifest, root)
    common: dict[str, Any] = {
        "build_id": "3b1f2c9e-6a51-4c4e-9f7e-0d5cbd3f8a10",
        "job_name": manifest.name,
        "job_version": manifest.version,
        "destination": tag,
        "build_env": {**manifest.build_env, **SECRET_BUILD},
    }
    git = KanikoBuild(
        **common,
        context=GitContext(
            remote="https://git.example.com/team/jobs.git",
            commit="0" * 40,
            directory=f"sample-jobs/{manifest.name}",
            username="builder",
            password=GIT_PASSWORD,
            scaffold=scaffold,
        ),
    )
    uploaded = KanikoBuild(
        **common,
        context=UploadedContext(
            url="http://lifecycle.trackside.svc.cluster.local:7200/lifecycle/api/v1/build-context/abc",
            token=UPLOAD_TOKEN,
        ),
        ca_bundle="-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    )
    settings = KanikoSettings(repository=REPOSITORY)
    return [(kaniko_objects(git, settings), git), (kaniko_objects(uploaded, settings), uploaded)]


def every_object(tmp_path: Path) -> list[Obj]:
    objects: list[Obj] = []
    for sample in SAMPLE_JOBS:
        for manifest in variants(sample):
            objects += job_objects(job_version(manifest)).all()
        for built, _ in builds(load(sample), tmp_path):
            objects += built.all()
    return objects


def describe(obj: Obj) -> str:
    return f"{obj['kind']} {obj['metadata'].get('namespace')}/{obj['metadata']['name']}"


def strings_in(obj: Any) -> list[str]:
    if isinstance(obj, dict):
        return [s for k, v in obj.items() for s in [str(k), *strings_in(v)]]
    if isinstance(obj, list):
        return [s for v in obj for s in strings_in(v)]
    return [str(obj)]


def decoded(secret: Obj) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


# ---- schemas ------------------------------------------------------------------------------------


def test_sample_jobs_are_found() -> None:
    assert {"adder", "env-secret", "model"} <= set(SAMPLE_JOBS)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_object_of_every_sample_job_is_valid_for_kubernetes(tmp_path: Path, version: str) -> None:
    kubernetes_validate = validator()
    problems = []
    objects = every_object(tmp_path)
    assert {o["kind"] for o in objects} == {
        "Deployment",
        "Service",
        "Secret",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "Job",
    }
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            where = "/".join(str(p) for p in error.path)
            problems.append(f"{describe(obj)} at {where or '(top)'}: {error.message}")
    assert problems == []


def test_an_unknown_field_is_refused_by_the_validation_used_here() -> None:
    kubernetes_validate = validator()
    service = job_objects(job_version(load("adder"))).service
    service["spec"]["clusterIPs_typo"] = ["10.0.0.1"]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(service, KUBERNETES_VERSIONS[0], strict=True)


def test_names_labels_and_secret_keys_are_what_kubernetes_accepts(tmp_path: Path) -> None:
    for obj in every_object(tmp_path):
        name = obj["metadata"]["name"]
        assert DNS_1035.fullmatch(name) and len(name) <= 63, describe(obj)
        assert obj["metadata"]["namespace"] == JOBS_NAMESPACE
        labels = {**obj["metadata"]["labels"]}
        if obj["kind"] in ("Deployment", "Job"):
            labels.update(pod_labels(obj))
        for key, value in labels.items():
            assert LABEL_VALUE.fullmatch(value) and len(value) <= 63, f"{describe(obj)}: {key}={value}"
        for key in obj.get("data", {}):
            assert SECRET_KEY.fullmatch(key), f"{describe(obj)}: key {key!r}"


# ---- the job version's objects ------------------------------------------------------------------


@pytest.mark.parametrize("sample", SAMPLE_JOBS)
def test_runtime_values_reach_the_secret_and_never_the_deployment(sample: str) -> None:
    for manifest in variants(sample):
        job = job_version(manifest)
        objects = job_objects(job)
        deployment, secret = objects.deployment, objects.secret
        # the Secret holds the whole runtime environment, the Deployment none of its values
        assert decoded(secret) == {**manifest.runtime_env, **SECRET_RUNTIME, "PUB_URL": PUB_URL}
        text = json.dumps(deployment)
        for value in SECRET_RUNTIME.values():
            assert value not in text
        # runtime_env is no secret and the manifest (JOB_MANIFEST_YAML) shows it; it is not set twice
        without_manifest = text.replace(json.dumps(manifest_to_yaml(manifest)), "")
        for value in (*manifest.runtime_env.values(), PUB_URL):
            assert value not in without_manifest
        env = {e["name"]: e for e in pod_spec(deployment)["containers"][0]["env"]}
        for name in decoded(secret):
            assert env[name] == {
                "name": name,
                "valueFrom": {"secretKeyRef": {"name": secret["metadata"]["name"], "key": name}},
            }
        plain = {name: e["value"] for name, e in env.items() if "value" in e}
        assert plain == {
            "JOB_NAME": manifest.name,
            "JOB_VERSION": manifest.version,
            "JOB_DEPLOYMENT_TIMESTAMP": str(TIMESTAMP),
            "JOB_MANIFEST_YAML": manifest_to_yaml(manifest),
        }


def test_the_env_secret_sample_gets_its_runtime_env_by_name() -> None:
    manifest = load("env-secret")
    assert manifest.runtime_env == {"GREETING": "hello", "FEATURE_FLAGS": "fast,verbose"}
    env = pod_spec(job_objects(job_version(manifest)).deployment)["containers"][0]["env"]
    refs = {e["name"] for e in env if "valueFrom" in e}
    assert {"GREETING", "FEATURE_FLAGS", "API_KEY", "AUTH_TOKEN", "PUB_URL"} == refs


@pytest.mark.parametrize("sample", SAMPLE_JOBS)
def test_labels_and_selectors_pick_the_versions_pods(sample: str) -> None:
    for manifest in variants(sample):
        objects = job_objects(job_version(manifest))
        deployment = objects.deployment
        labels = pod_labels(deployment)
        assert labels[LABEL_COMPONENT] == "job"  # the platform's `jobs` NetworkPolicy selects these
        assert labels[LABEL_NAME] == manifest.name
        assert labels[LABEL_VERSION] == manifest.version
        assert labels[LABEL_FAMILY] == manifest.name
        assert labels[LABEL_GENERATION] == str(TIMESTAMP)
        assert (
            deployment["spec"]["template"]["metadata"]["annotations"][ANNOTATION_VERSION] == manifest.version
        )
        assert matches(deployment["spec"]["selector"], labels)
        assert matches({"matchLabels": objects.service["spec"]["selector"]}, labels)
        assert matches(objects.network_policy["spec"]["podSelector"], labels)
        if objects.pod_disruption_budget is not None:
            assert matches(objects.pod_disruption_budget["spec"]["selector"], labels)
        other = job_objects(job_version(load("adder", ("name=other",)))).deployment
        assert not matches({"matchLabels": objects.service["spec"]["selector"]}, pod_labels(other))
        assert objects.service["spec"]["type"] == "ClusterIP"
        assert objects.service["spec"]["ports"] == [
            {"name": "http", "port": 7000, "targetPort": "http", "protocol": "TCP"}
        ]


def test_a_redeploy_is_a_new_deployment_beside_the_old_behind_the_same_service() -> None:
    manifest = load("adder")
    first, second = job_objects(job_version(manifest)), job_objects(job_version(manifest, TIMESTAMP + 1))
    assert first.service == second.service and first.network_policy == second.network_policy
    assert first.deployment["metadata"]["name"] != second.deployment["metadata"]["name"]
    assert first.secret["metadata"]["name"] != second.secret["metadata"]["name"]
    assert not matches(first.deployment["spec"]["selector"], pod_labels(second.deployment))
    assert matches({"matchLabels": first.service["spec"]["selector"]}, pod_labels(second.deployment))


@pytest.mark.parametrize("sample", SAMPLE_JOBS)
def test_pods_are_probed_locked_down_and_spread(sample: str) -> None:
    for manifest in variants(sample):
        spec = pod_spec(job_objects(job_version(manifest)).deployment)
        (container,) = spec["containers"]
        assert container["ports"] == [{"name": "http", "containerPort": 7000, "protocol": "TCP"}]
        assert container["livenessProbe"]["httpGet"] == {"path": "/live", "port": "http", "scheme": "HTTP"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http", "scheme": "HTTP"}
        security = container["securityContext"]
        assert security["runAsNonRoot"] is True and security["runAsUser"] == 10001
        assert security["readOnlyRootFilesystem"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"] == {"drop": ["ALL"]}
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
        assert {v["name"]: v for v in spec["volumes"]}["tmp"]["emptyDir"]
        assert spec["imagePullSecrets"] == [{"name": "trackside-registry"}]
        assert spec["automountServiceAccountToken"] is False
        assert spec["terminationGracePeriodSeconds"] == 30
        (term,) = spec["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
        assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
        assert matches(
            term["podAffinityTerm"]["labelSelector"],
            pod_labels(job_objects(job_version(manifest)).deployment),
        )


def test_settings_change_namespace_pull_secret_and_grace() -> None:
    settings = JobSettings(
        namespace="jobs-elsewhere",
        image_pull_secret=None,
        termination_grace_seconds=90,
        read_only_root_filesystem=False,
    )
    objects = job_objects(job_version(load("adder")), settings)
    assert {o["metadata"]["namespace"] for o in objects.all()} == {"jobs-elsewhere"}
    spec = pod_spec(objects.deployment)
    assert "imagePullSecrets" not in spec
    assert spec["terminationGracePeriodSeconds"] == 90
    assert spec["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is False


def test_resources_map_minimums_to_requests_and_maximums_to_limits() -> None:
    _, scaled = variants("adder")
    resources = pod_spec(job_objects(job_version(scaled)).deployment)["containers"][0]["resources"]
    assert resources == {
        "requests": {"cpu": "250m", "memory": str(256 * 2**20)},
        "limits": {"cpu": "2000m", "memory": str(2**30)},
    }
    assert pod_spec(job_objects(job_version(load("adder"))).deployment)["containers"][0]["resources"] == {}
    only_max = Resources(memory_max=10**9, cpu_max=0.0001)
    job = JobVersion("adder", "1.0.0", "adder", TIMESTAMP, "img", 1, "", only_max)
    assert pod_spec(job_objects(job).deployment)["containers"][0]["resources"] == {
        "limits": {"cpu": "1m", "memory": "1000000000"}
    }


def test_a_pod_disruption_budget_only_with_several_replicas() -> None:
    single, scaled = variants("adder")
    assert job_objects(job_version(single)).pod_disruption_budget is None
    assert [o["kind"] for o in job_objects(job_version(single)).all()].count("PodDisruptionBudget") == 0
    pdb = job_objects(job_version(scaled)).pod_disruption_budget
    assert pdb is not None and pdb["spec"]["maxUnavailable"] == 1
    assert job_objects(job_version(scaled)).deployment["spec"]["replicas"] == 3


def test_only_the_gateway_and_the_lifecycle_reach_job_pods_and_jobs_reach_only_the_gateway_and_dns() -> None:
    objects = job_objects(job_version(load("adder")))
    policies = [objects.network_policy]
    pod = Pod(JOBS_NAMESPACE, pod_labels(objects.deployment))
    other_job = Pod(JOBS_NAMESPACE, pod_labels(job_objects(job_version(load("chain"))).deployment))
    assert allowed(policies, GATEWAY, pod, 7000)
    assert allowed(policies, LIFECYCLE, pod, 7000)
    assert not allowed(policies, GATEWAY, pod, 7001)
    for stranger in (DASHBOARD, OUTSIDE, other_job, Pod("default", {LABEL_COMPONENT: "pub"})):
        assert not allowed(policies, stranger, pod, 7000)
    assert allowed(policies, pod, GATEWAY, 7205)
    assert allowed(policies, pod, DNS, 53, "UDP") and allowed(policies, pod, DNS, 53, "TCP")
    for target, port in ((LIFECYCLE, 7200), (OUTSIDE, 443), (other_job, 7000), (GATEWAY, 7200)):
        assert not allowed(policies, pod, target, port)


# ---- names --------------------------------------------------------------------------------------

EDGE_VERSIONS = (
    "0.0.1",
    "1.2.3",
    "10.20.30-rc.1",
    "1.0.0-RC1",
    "1.0.0-rc1",
    "1.0.0+build.5",
    "1.0.0-alpha+001",
    "1.0.0-a-",
    "1.0.0--",
    "999999999.999999999.999999999",
    "1.0.0-" + "x" * 200 + "+" + "y.z" * 30,
)
EDGE_NAMES = ("a", "0", "9lives", "x" * 63, "a-b-c-d", "adder")


def test_edge_case_versions_are_legal_semver() -> None:
    assert all(is_valid_version(v) for v in EDGE_VERSIONS)


@pytest.mark.parametrize("name", EDGE_NAMES)
def test_object_names_are_dns_labels_and_unique_for_every_legal_name_and_version(name: str) -> None:
    names = {}
    for version in EDGE_VERSIONS:
        version_name = version_object_name(name, version)
        generation_name = generation_object_name(name, version, 2**63)
        for text in (version_name, generation_name):
            assert DNS_1035.fullmatch(text) and len(text) <= 63, text
        assert generation_name.startswith(version_name + "-")
        assert version_object_name(name, version) == version_name  # deterministic
        names[version] = version_name
        assert LABEL_VALUE.fullmatch(label_value(version)) and len(label_value(version)) <= 63
    assert len(set(names.values())) == len(EDGE_VERSIONS)  # 1.0.0-RC1 and 1.0.0-rc1 stay apart
    assert len({label_value(v) for v in EDGE_VERSIONS}) == len(EDGE_VERSIONS)


def test_plain_versions_give_readable_names() -> None:
    assert version_object_name("adder", "0.0.1") == "job-adder-v0-0-1"
    assert generation_object_name("adder", "0.0.1", TIMESTAMP) == f"job-adder-v0-0-1-{TIMESTAMP}"
    assert version_object_name("0", "1.0.0") == "job-0-v1-0-0"
    assert version_object_name("x" * 63, "1.0.0").startswith("job-" + "x" * 20)
    assert label_value("1.0.0+build.5") == "1.0.0_build.5"


def test_names_stay_apart_where_a_readable_form_would_collide() -> None:
    assert version_object_name("a-b", "1.0.0-c") != version_object_name("a", "1.0.0-b-c")
    assert version_object_name("a", "1.0.0-b.c") != version_object_name("a", "1.0.0-b-c")
    assert version_object_name("a-v1", "0.0.5") != version_object_name("a", "1.0.5")
    assert generation_object_name("a", "1.0.0", 51) != generation_object_name("a", "1.0.0-5", 1)
    generations = {
        generation_object_name(name, version, timestamp)
        for name in ("a", "a-v1", "a-v1-0-0")
        for version in ("1.0.0", "0.0.1", "1.0.0-5", "1.0.0+5")
        for timestamp in (1, 5, 51)
    }
    assert len(generations) == 3 * 4 * 3


def test_long_names_and_odd_versions_render_valid_objects() -> None:
    kubernetes_validate = validator()
    for name in EDGE_NAMES:
        for version in EDGE_VERSIONS:
            manifest = load(
                "adder", (f"name={json.dumps(name)}", f"version={json.dumps(version)}", "replicas=2")
            )
            for obj in job_objects(job_version(manifest, 2**40)).all():
                kubernetes_validate.validate(obj, "1.33.0", strict=True)
                assert obj["metadata"]["annotations"][ANNOTATION_VERSION] == version


def test_bad_input_is_refused_with_the_reason() -> None:
    job = job_version(load("adder"))
    with pytest.raises(ValueError, match="JOB_NAME is set by the runner"):
        job_objects(JobVersion(**{**job.__dict__, "env": {"JOB_NAME": "x"}}))
    with pytest.raises(ValueError, match="replicas must be at least 1"):
        job_objects(JobVersion(**{**job.__dict__, "replicas": 0}))
    with pytest.raises(ValueError, match="cannot be part of a name"):
        generation_object_name("adder", "1.0.0", 10**25)


# ---- the Kaniko build ---------------------------------------------------------------------------


def kaniko_container(objects: KanikoObjects) -> Obj:
    (container,) = pod_spec(objects.job)["containers"]
    return container


@pytest.mark.parametrize("sample", SAMPLE_JOBS)
def test_build_secrets_never_reach_the_job_spec(sample: str, tmp_path: Path) -> None:
    manifest = load(sample)
    for objects, build in builds(manifest, tmp_path):
        text = json.dumps(objects.job)
        for value in (*SECRET_BUILD.values(), "build-secret-91d2", GIT_PASSWORD, UPLOAD_TOKEN):
            assert value not in text
        args = kaniko_container(objects)["args"]
        assert not [a for a in args if a.startswith("--build-arg")]
        # the build environment is a file in the Secret, mounted where the Dockerfile's pip steps read it
        (secret, *_) = objects.secrets
        assert "PIP_INDEX_URL=" in decoded(secret)["build_env"]
        mounts = {m["mountPath"]: m for m in kaniko_container(objects)["volumeMounts"]}
        assert mounts[BUILD_SECRETS_DIR]["readOnly"] is True
        assert f"--ignore-path={BUILD_SECRETS_DIR}" in args
        volumes = {v["name"]: v for v in pod_spec(objects.job)["volumes"]}
        assert (
            volumes[mounts[BUILD_SECRETS_DIR]["name"]]["secret"]["secretName"] == secret["metadata"]["name"]
        )
        if isinstance(build.context, UploadedContext):
            assert decoded(secret)["build_token"] == UPLOAD_TOKEN
            assert "ca_bundle" in decoded(secret)
        else:
            assert decoded(secret)["git_password"] == GIT_PASSWORD


@pytest.mark.parametrize("sample", SAMPLE_JOBS)
def test_kaniko_pushes_a_deterministic_tag_with_a_layer_cache(sample: str, tmp_path: Path) -> None:
    manifest = load(sample)
    (git, _), (uploaded, _) = builds(manifest, tmp_path / "first")
    (again, _), _ = builds(manifest, tmp_path / "second")
    args = kaniko_container(git)["args"]
    destination = [a.removeprefix("--destination=") for a in args if a.startswith("--destination=")]
    assert len(destination) == 1 and destination[0].startswith(f"{REPOSITORY}/{manifest.name}:")
    assert kaniko_container(again)["args"] == args  # same job, version and dependencies: same tag
    assert kaniko_container(uploaded)["args"] == args
    assert "--cache=true" in args and f"--cache-repo={REPOSITORY}/cache" in args
    assert "--context=dir:///workspace/context" in args
    job = git.job
    assert job["spec"]["backoffLimit"] == 0
    assert job["spec"]["ttlSecondsAfterFinished"] > 0 and job["spec"]["activeDeadlineSeconds"] > 0
    assert pod_spec(job)["restartPolicy"] == "Never"
    assert pod_labels(job)[LABEL_COMPONENT] == "build"  # the platform lets builds fetch an upload
    assert kaniko_container(git)["image"].startswith("gcr.io/kaniko-project/executor:v")


def test_the_registry_credential_is_mounted_as_kanikos_docker_config(tmp_path: Path) -> None:
    (objects, _), _ = builds(load("adder"), tmp_path)
    volumes = {v["name"]: v for v in pod_spec(objects.job)["volumes"]}
    assert volumes["docker-config"]["secret"] == {
        "secretName": "trackside-registry",
        "items": [{"key": ".dockerconfigjson", "path": "config.json"}],
    }
    mounts = {m["name"]: m["mountPath"] for m in kaniko_container(objects)["volumeMounts"]}
    assert mounts["docker-config"] == "/kaniko/.docker"


def test_an_insecure_in_cluster_registry_needs_no_credential() -> None:
    settings = KanikoSettings(
        repository="registry.trackside.svc.cluster.local:5000/jobs",
        registry_secret=None,
        insecure_registry=True,
        kaniko_image="registry.example.com/mirror/kaniko-executor:v1.23.2",
    )
    build = KanikoBuild(
        "b1",
        "adder",
        "0.0.1",
        "registry.trackside.svc.cluster.local:5000/jobs/adder:0.0.1-abc",
        UploadedContext("http://lifecycle:7200/x", "t"),
    )
    objects = kaniko_objects(build, settings)
    validator().validate(objects.job, "1.29.0", strict=True)
    args = kaniko_container(objects)["args"]
    assert "--insecure" in args
    assert "--insecure-registry=registry.trackside.svc.cluster.local:5000" in args
    assert "docker-config" not in {v["name"] for v in pod_spec(objects.job)["volumes"]}
    assert kaniko_container(objects)["image"] == settings.kaniko_image


def test_the_git_context_is_cloned_with_credentials_from_the_secret(tmp_path: Path) -> None:
    (objects, build), _ = builds(load("model"), tmp_path)
    assert isinstance(build.context, GitContext)
    (init,) = pod_spec(objects.job)["initContainers"]
    env = {e["name"]: e for e in init["env"]}
    secret_name = objects.secrets[0]["metadata"]["name"]
    assert env["GIT_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": secret_name, "key": "git_password"}
    assert env["GIT_REMOTE"]["value"] == build.context.remote and env["GIT_COMMIT"]["value"] == "0" * 40
    script = init["command"][-1]
    assert "sample-jobs/model" in script and "credential.helper" in script
    assert init["securityContext"]["runAsNonRoot"] is True
    # the staged scaffold (Dockerfile, wheel, requirements) comes back at its paths from the Secret
    scaffold = objects.secrets[1]
    volume = {v["name"]: v for v in pod_spec(objects.job)["volumes"]}["scaffold"]["secret"]
    assert volume["secretName"] == scaffold["metadata"]["name"]
    paths = {item["path"]: base64.b64decode(scaffold["data"][item["key"]]) for item in volume["items"]}
    assert paths.keys() == build.context.scaffold.keys()
    assert "Dockerfile" in paths and "requirements/requirements.txt" in paths
    assert any(p.startswith("wheels/") and p.endswith(".whl") for p in paths)
    assert paths["Dockerfile"] == build.context.scaffold["Dockerfile"]
    assert "--mount=type=secret,id=build_env" in paths["Dockerfile"].decode()


def test_the_uploaded_context_is_fetched_with_the_single_use_token_from_the_secret(tmp_path: Path) -> None:
    _, (objects, build) = builds(load("adder"), tmp_path)
    assert isinstance(build.context, UploadedContext)
    (init,) = pod_spec(objects.job)["initContainers"]
    env = {e["name"]: e for e in init["env"]}
    assert env["CONTEXT_URL"]["value"] == build.context.url
    assert env["BUILD_TOKEN"]["valueFrom"]["secretKeyRef"]["key"] == "build_token"
    assert len(objects.secrets) == 1


def test_bad_build_input_is_refused(tmp_path: Path) -> None:
    (_, git), _ = builds(load("adder"), tmp_path)
    assert isinstance(git.context, GitContext)
    settings = KanikoSettings(repository=REPOSITORY)
    escaping = GitContext("https://x/y.git", "0" * 40, directory="../elsewhere")
    with pytest.raises(ValueError, match="must stay inside the repository"):
        kaniko_objects(KanikoBuild(**{**git.__dict__, "context": escaping}), settings)
    code = GitContext("https://x/y.git", "0" * 40, scaffold={"code/entrypoint.py": b""})
    with pytest.raises(ValueError, match="outside code/"):
        kaniko_objects(KanikoBuild(**{**git.__dict__, "context": code}), settings)


def test_a_git_build_leaves_the_secret_env_files_out_of_the_code(tmp_path: Path) -> None:
    manifest = load("env-secret")
    assert manifest.secret_runtime_env_file == ".env"
    (_, git), _ = builds(manifest, tmp_path)
    assert isinstance(git.context, GitContext)
    context = GitContext(**{**git.context.__dict__, "left_out": (".env", "secrets/build.env")})
    objects = kaniko_objects(KanikoBuild(**{**git.__dict__, "context": context}), KanikoSettings(REPOSITORY))
    script = pod_spec(objects.job)["initContainers"][0]["command"][-1]
    assert (
        'rm -rf "$CONTEXT_DIR"/code/.git "$CONTEXT_DIR"/code/.env "$CONTEXT_DIR"/code/secrets/build.env'
        in script
    )
    with pytest.raises(ValueError, match="must stay inside the job's directory"):
        kaniko_objects(
            KanikoBuild(
                **{**git.__dict__, "context": GitContext("https://x/y.git", "0" * 40, left_out=("/etc",))}
            ),
            KanikoSettings(REPOSITORY),
        )


def test_a_run_spec_becomes_a_job_version_without_the_reserved_values_in_its_secret(tmp_path: Path) -> None:
    manifest = load("env-secret")
    build = BuildResult(
        "img-abc",
        Path("/opt/trackside/venv/bin/python"),
        tmp_path,
        False,
        "kubernetes",
        "r/env-secret:0.0.1-abc",
    )
    spec = RunSpec(
        job_name=manifest.name,
        job_version=manifest.version,
        deployment_timestamp=TIMESTAMP,
        replicas=2,
        build=build,
        env={**manifest.runtime_env, **SECRET_RUNTIME, "PUB_URL": PUB_URL, "JOB_NAME": "stale"},
        manifest_yaml=manifest_to_yaml(manifest),
        resources=Resources(cpu_min=0.5),
    )
    job = JobVersion.from_run_spec(spec)
    assert (job.family, job.image, job.replicas) == ("env-secret", "r/env-secret:0.0.1-abc", 2)
    objects = job_objects(job)
    assert "JOB_NAME" not in decoded(objects.secret)
    env = {e["name"]: e for e in pod_spec(objects.deployment)["containers"][0]["env"]}
    assert env["JOB_NAME"] == {"name": "JOB_NAME", "value": "env-secret"}
    assert SECRET_RUNTIME["API_KEY"] not in repr(job)
    with pytest.raises(ValueError, match="made no image"):
        JobVersion.from_run_spec(
            RunSpec(**{**spec.__dict__, "build": BuildResult("e", Path("p"), tmp_path, False)})
        )


def test_a_git_build_without_a_scaffold_or_with_one_too_big_for_a_secret_is_refused(tmp_path: Path) -> None:
    _, git = builds(load("model"), tmp_path)[0]
    assert isinstance(git.context, GitContext)
    cases: tuple[tuple[dict[str, bytes], str], ...] = (
        ({}, "needs the staged build context"),
        ({"Dockerfile": b"x" * (2**20 + 1)}, "uploaded context"),
    )
    for scaffold, problem in cases:
        context = GitContext(**{**git.context.__dict__, "scaffold": scaffold})
        with pytest.raises(ValueError, match=problem):
            kaniko_objects(KanikoBuild(**{**git.__dict__, "context": context}), KanikoSettings(REPOSITORY))


# ---- the init container's script, run for real --------------------------------------------------


def mount_secret_volume(target: Path, volume: Obj, secrets: list[Obj]) -> None:
    """A Secret volume as the kubelet lays it out: files in a timestamped directory behind the
    `..data` link, and a link for each top-level entry."""
    (secret,) = [s for s in secrets if s["metadata"]["name"] == volume["secret"]["secretName"]]
    data = target / "..2026_11_22_06_00_00.000000001"
    for item in volume["secret"]["items"]:
        path = data / item["path"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(secret["data"][item["key"]]))
    (target / "..data").symlink_to(data.name)
    for top in sorted({PurePosixPath(item["path"]).parts[0] for item in volume["secret"]["items"]}):
        (target / top).symlink_to(f"..data/{top}")


def run_init_container(
    objects: KanikoObjects, root: Path, extra_env: dict[str, str]
) -> tuple[int, str, Path]:
    """The init container's command on this machine, with its env resolved from the rendered
    Secrets and its paths moved under `root`; (exit status, output, the context directory)."""
    spec = pod_spec(objects.job)
    (init,) = spec["initContainers"]
    secrets = {s["metadata"]["name"]: decoded(s) for s in objects.secrets if "build_env" in s["data"]}
    env: dict[str, str] = {}
    for var in init["env"]:
        if "value" in var:
            env[var["name"]] = var["value"]
        else:
            ref = var["valueFrom"]["secretKeyRef"]
            env[var["name"]] = secrets[ref["name"]][ref["key"]]
    paths = {
        "CONTEXT_DIR": root / "workspace/context",
        "SCAFFOLD_DIR": root / "scaffold",
        "TMPDIR": root / "tmp",
    }
    for name, path in paths.items():
        assert env[name] != str(path)  # the script takes every path from its environment
        env[name] = str(path)
    env["HOME"] = str(root / "tmp")
    (root / "tmp").mkdir(parents=True)
    volumes = {v["name"]: v for v in spec["volumes"]}
    if "scaffold" in volumes:
        paths["SCAFFOLD_DIR"].mkdir()
        mount_secret_volume(paths["SCAFFOLD_DIR"], volumes["scaffold"], objects.secrets)
    done = subprocess.run(
        init["command"],
        env={"PATH": os.environ["PATH"], **env, **extra_env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.returncode, done.stdout + done.stderr, paths["CONTEXT_DIR"]


def tree(directory: Path) -> dict[str, bytes]:
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in directory.rglob("*") if p.is_file()}


def test_the_git_init_script_clones_the_commit_with_the_credentials_and_assembles_the_context(
    tmp_path: Path,
) -> None:
    manifest = load("model")
    job_files = {
        f"sample-jobs/model/{p.relative_to(REPO / 'sample-jobs/model').as_posix()}": p.read_bytes()
        for p in (REPO / "sample-jobs/model").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    leftovers: dict[str, str | bytes] = {
        "sample-jobs/model/.env": "API_KEY=committed-by-mistake",
        "sample-jobs/model/pkg/__pycache__/m.cpython-311.pyc": b"\0",
        "sample-jobs/model/stale.pyc": b"\0",
        "elsewhere/other.py": "print('not this job')",
    }
    with GitHttpsServer(tmp_path / "repos", "builder", GIT_PASSWORD, tls_dir=tmp_path / "tls") as server:
        repo = server.make_repo("jobs", {**job_files, **leftovers})
        commit = head_commit(repo)
        commit_files(repo, {"sample-jobs/model/entrypoint.py": "raise SystemExit('a later commit')"})
        scaffold, tag = staged_scaffold(manifest, tmp_path / "staged")
        context = GitContext(
            remote=server.url_for("jobs"),
            commit=commit,
            directory="sample-jobs/model",
            username="builder",
            password=GIT_PASSWORD,
            scaffold=scaffold,
            left_out=(".env",),
        )
        build = KanikoBuild("b1", manifest.name, manifest.version, tag, context, build_env=SECRET_BUILD)
        objects = kaniko_objects(build, KanikoSettings(REPOSITORY))
        status, output, context_dir = run_init_container(objects, tmp_path / "pod", server.git_env)
        assert status == 0, output
        assert GIT_PASSWORD not in output
        built = tree(context_dir)
        expected_code = {
            f"code/{path.removeprefix('sample-jobs/model/')}": content for path, content in job_files.items()
        }
        assert built == {**scaffold, **expected_code}  # nothing else: no .env, .pyc, .git or ..data
        assert b"a later commit" not in built["code/entrypoint.py"]

        wrong = GitContext(**{**context.__dict__, "password": "not-the-password"})
        objects = kaniko_objects(
            KanikoBuild(**{**build.__dict__, "context": wrong}), KanikoSettings(REPOSITORY)
        )
        status, output, _ = run_init_container(objects, tmp_path / "pod-denied", server.git_env)
        assert status != 0 and "not-the-password" not in output


class _ContextServer(http.server.ThreadingHTTPServer):
    archive: bytes
    token: str
    headers_seen: list[str | None]


class _ContextHandler(http.server.BaseHTTPRequestHandler):
    server: _ContextServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        given = self.headers.get("X-Trackside-Build-Token")
        self.server.headers_seen.append(given)
        body = self.server.archive if given == self.server.token else b'{"error": "forbidden"}'
        self.send_response(200 if given == self.server.token else 403)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_the_upload_init_script_fetches_the_context_with_its_token(tmp_path: Path) -> None:
    staged = tmp_path / "staged"
    (staged / "code").mkdir(parents=True)
    (staged / "Dockerfile").write_text("FROM scratch\n")
    (staged / "code/entrypoint.py").write_text("class Job:\n    def perform(self): return 1\n")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        archive.add(staged, arcname=".")
    server = _ContextServer(("127.0.0.1", 0), _ContextHandler)
    server.archive, server.token, server.headers_seen = buffer.getvalue(), UPLOAD_TOKEN, []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/lifecycle/api/v1/build-context/b1"
        for token, root in ((UPLOAD_TOKEN, tmp_path / "pod"), ("stale-token", tmp_path / "pod-denied")):
            build = KanikoBuild("b1", "adder", "0.0.1", "r/adder:0.0.1-abc", UploadedContext(url, token))
            status, output, context_dir = run_init_container(
                kaniko_objects(build, KanikoSettings(REPOSITORY)), root, {}
            )
            if token == UPLOAD_TOKEN:
                assert status == 0, output
                assert tree(context_dir) == tree(staged)
                assert not list((root / "tmp").glob("*.tar"))
            else:
                assert status != 0
                assert tree(context_dir) == {}
        assert server.headers_seen == [UPLOAD_TOKEN, "stale-token"]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
