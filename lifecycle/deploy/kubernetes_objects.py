"""The Kubernetes objects of one job version, as plain dicts ready for the API (no client needed).

Per version (stable across redeploys):
    Service `job-NAME-vX-Y-Z` (ClusterIP, port 7000 of every ready pod of the version) and a
    NetworkPolicy of the same name (the gateway and the lifecycle may reach the pods on 7000; the
    pods may reach the gateway on 7205 and the cluster DNS, nothing else).
Per generation (one per deployment timestamp, so a redeploy starts beside the serving one and the
runner retires the older one afterwards, as `runner.Runner` describes):
    Deployment, Secret (the job's runtime environment) and, when replicas > 1, a
    PodDisruptionBudget, all named `job-NAME-vX-Y-Z-TIMESTAMP`.

The runtime environment's values (runtime_env, runtime secrets, PUB_URL, AUTH_TOKEN) live only
in the Secret; the Deployment names them with `secretKeyRef`. Only the reserved variables that
are no secret (JOB_NAME, JOB_VERSION, JOB_DEPLOYMENT_TIMESTAMP, JOB_MANIFEST_YAML) are plain values.

Names are DNS-1035 labels (what a Service needs, stricter than DNS-1123) for every legal job name
(a DNS label of up to 63 characters) and SemVer version: `job-NAME-vX-Y-Z` when the version is a
plain X.Y.Z and it fits, otherwise a readable prefix and `-h` + a hash of the exact name and
version, so two versions never share a name (`1.0.0-RC1` and `1.0.0-rc1` are different versions).
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from trackside_wrapper.job_image import CONTAINER_PORT, JOB_USER_ID

from .runner import Resources, RunSpec

Obj = dict[str, Any]

JOBS_NAMESPACE = "trackside-jobs"
PLATFORM_NAMESPACE = "trackside"
REGISTRY_SECRET = "trackside-registry"
GATEWAY_PORT = 7205

LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_PART_OF = "app.kubernetes.io/part-of"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_NAME = "trackside.io/job-name"
LABEL_VERSION = "trackside.io/job-version"  # label-safe form of the version (see label_value)
LABEL_FAMILY = "trackside.io/job-family"
LABEL_GENERATION = "trackside.io/deployment-timestamp"
ANNOTATION_VERSION = "trackside.io/job-version"  # the exact version
COMPONENT_JOB = "job"
MANAGED_BY = "trackside-lifecycle"

NAME_LIMIT = 63
_VERSION_NAME_LIMIT = 42  # leaves room for "-" and a timestamp of up to 20 digits
_HASH_LENGTH = 10
_PLAIN_VERSION_RE = re.compile(r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)")
_LABEL_VALUE_RE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?")
_NOT_NAME_RE = re.compile(r"[^a-z0-9]+")
NOT_SECRET_ENV = ("JOB_NAME", "JOB_VERSION", "JOB_DEPLOYMENT_TIMESTAMP", "JOB_MANIFEST_YAML")


def short_hash(*parts: str) -> str:
    digest = hashlib.sha256("\0".join(parts).encode()).hexdigest()
    return digest[:_HASH_LENGTH]


def readable_name(prefix: str, parts: tuple[str, ...], limit: int) -> str:
    """`prefix-part-part` lowered to [a-z0-9-], cut to leave room for `-h` + hash, + the hash of
    the exact parts: a DNS-1035 label of at most `limit` characters, unique for the parts."""
    readable = _NOT_NAME_RE.sub("-", "-".join((prefix, *parts)).lower())
    suffix = "-h" + short_hash(prefix, *parts)
    return readable[: limit - len(suffix)].rstrip("-") + suffix


def version_object_name(name: str, version: str) -> str:
    """The Service's and NetworkPolicy's name; the prefix of the generation's objects' names."""
    plain = _PLAIN_VERSION_RE.fullmatch(version)
    if plain:
        candidate = f"job-{name}-v{plain[1]}-{plain[2]}-{plain[3]}"
        if len(candidate) <= _VERSION_NAME_LIMIT:
            return candidate
    return readable_name("job", (name, version), _VERSION_NAME_LIMIT)


def generation_object_name(name: str, version: str, deployment_timestamp: int) -> str:
    """The Deployment's, its Secret's and its PodDisruptionBudget's name."""
    if deployment_timestamp < 0 or len(str(deployment_timestamp)) > NAME_LIMIT - _VERSION_NAME_LIMIT - 1:
        raise ValueError(f"deployment timestamp {deployment_timestamp} cannot be part of a name")
    return f"{version_object_name(name, version)}-{deployment_timestamp}"


def label_value(text: str) -> str:
    """`text` as a label value: itself when it is one; else with `+` as `_` when that makes one
    and `text` has no `_` (true of every SemVer version, so the value stays unique); else cut and
    ended by `_h` + a hash of `text`."""
    if len(text) <= NAME_LIMIT and _LABEL_VALUE_RE.fullmatch(text):
        return text
    safe = re.sub(r"[^-A-Za-z0-9_.]", "_", text)
    only_plus_replaced = "_" not in text and safe == text.replace("+", "_")
    if only_plus_replaced and len(safe) <= NAME_LIMIT and _LABEL_VALUE_RE.fullmatch(safe):
        return safe
    suffix = "_h" + short_hash(text)
    return safe[: NAME_LIMIT - len(suffix)].strip("-_.") + suffix


def cpu_quantity(cores: float) -> str:
    return f"{max(1, round(cores * 1000))}m"


def resource_requirements(resources: Resources) -> Obj:
    """requests = the manifest's minimums, limits = its maximums (absent ones left out)."""
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    if resources.cpu_min is not None:
        requests["cpu"] = cpu_quantity(resources.cpu_min)
    if resources.memory_min is not None:
        requests["memory"] = str(resources.memory_min)
    if resources.cpu_max is not None:
        limits["cpu"] = cpu_quantity(resources.cpu_max)
    if resources.memory_max is not None:
        limits["memory"] = str(resources.memory_max)
    result: Obj = {}
    if requests:
        result["requests"] = requests
    if limits:
        result["limits"] = limits
    return result


def secret_data(values: Mapping[str, str | bytes]) -> dict[str, str]:
    return {
        key: base64.b64encode(value.encode() if isinstance(value, str) else value).decode()
        for key, value in sorted(values.items())
    }


@dataclass(frozen=True)
class JobSettings:
    """How the lifecycle runs jobs on Kubernetes (not per job)."""

    namespace: str = JOBS_NAMESPACE
    platform_namespace: str = PLATFORM_NAMESPACE  # where the gateway and the lifecycle run
    image_pull_secret: str | None = REGISTRY_SECRET  # None: the nodes pull without credentials
    termination_grace_seconds: int = 30
    read_only_root_filesystem: bool = True  # a writable emptyDir is mounted at /tmp either way
    tmp_size_limit: str = "256Mi"


@dataclass(frozen=True)
class JobVersion:
    """One generation of a job version, as the runner is asked to run it."""

    name: str
    version: str
    family: str
    deployment_timestamp: int
    image: str
    replicas: int
    manifest_yaml: str
    resources: Resources = field(default_factory=Resources)
    # runtime_env + runtime secrets + PUB_URL + AUTH_TOKEN: their values go only into the Secret
    env: Mapping[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def from_run_spec(cls, spec: RunSpec, family: str | None = None) -> JobVersion:
        if spec.build.image is None:
            raise ValueError(f"{spec.job_name} {spec.job_version}: the build made no image to run")
        return cls(
            name=spec.job_name,
            version=spec.job_version,
            family=family or spec.job_name,
            deployment_timestamp=spec.deployment_timestamp,
            image=spec.build.image,
            replicas=spec.replicas,
            manifest_yaml=spec.manifest_yaml,
            resources=spec.resources,
            env={k: v for k, v in spec.env.items() if k not in NOT_SECRET_ENV},
        )


@dataclass(frozen=True)
class JobObjects:
    deployment: Obj
    service: Obj
    secret: Obj
    network_policy: Obj
    pod_disruption_budget: Obj | None

    def all(self) -> list[Obj]:
        """Every object, in the order to create them (the Secret before the pods that read it)."""
        objects = [self.secret, self.network_policy, self.service, self.deployment]
        if self.pod_disruption_budget is not None:
            objects.append(self.pod_disruption_budget)
        return objects


def version_labels(job: JobVersion) -> dict[str, str]:
    """What selects every pod of the version (all generations): the Service's selector."""
    return {
        LABEL_COMPONENT: COMPONENT_JOB,
        LABEL_NAME: job.name,
        LABEL_VERSION: label_value(job.version),
    }


def generation_labels(job: JobVersion) -> dict[str, str]:
    """What selects the pods of one generation: the Deployment's and the PDB's selector."""
    return {**version_labels(job), LABEL_GENERATION: str(job.deployment_timestamp)}


def object_labels(job: JobVersion) -> dict[str, str]:
    return {
        **generation_labels(job),
        LABEL_FAMILY: label_value(job.family),
        LABEL_PART_OF: "trackside",
        LABEL_MANAGED_BY: MANAGED_BY,
    }


def _metadata(job: JobVersion, name: str, settings: JobSettings, labels: Mapping[str, str]) -> Obj:
    return {
        "name": name,
        "namespace": settings.namespace,
        "labels": dict(labels),
        "annotations": {ANNOTATION_VERSION: job.version},
    }


def job_objects(job: JobVersion, settings: JobSettings = JobSettings()) -> JobObjects:
    """Every object of one generation of a job version (see the module's docstring)."""
    if job.replicas < 1:
        raise ValueError(f"{job.name} {job.version}: replicas must be at least 1, not {job.replicas}")
    for env_name in job.env:
        if env_name in NOT_SECRET_ENV:
            raise ValueError(f"{env_name} is set by the runner, not by the job's environment")
    return JobObjects(
        deployment=deployment(job, settings),
        service=service(job, settings),
        secret=runtime_secret(job, settings),
        network_policy=network_policy(job, settings),
        pod_disruption_budget=pod_disruption_budget(job, settings) if job.replicas > 1 else None,
    )


def runtime_secret(job: JobVersion, settings: JobSettings) -> Obj:
    name = generation_object_name(job.name, job.version, job.deployment_timestamp)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _metadata(job, name, settings, object_labels(job)),
        "type": "Opaque",
        "data": secret_data(job.env),
    }


def _container_env(job: JobVersion, secret_name: str) -> list[Obj]:
    plain = {
        "JOB_NAME": job.name,
        "JOB_VERSION": job.version,
        "JOB_DEPLOYMENT_TIMESTAMP": str(job.deployment_timestamp),
        "JOB_MANIFEST_YAML": job.manifest_yaml,
    }
    env: list[Obj] = [{"name": k, "value": v} for k, v in plain.items()]
    env += [
        {"name": k, "valueFrom": {"secretKeyRef": {"name": secret_name, "key": k}}} for k in sorted(job.env)
    ]
    return env


def _probe(path: str, period: int, failures: int) -> Obj:
    return {
        "httpGet": {"path": path, "port": "http", "scheme": "HTTP"},
        "initialDelaySeconds": 2,
        "periodSeconds": period,
        "timeoutSeconds": 5,
        "failureThreshold": failures,
        "successThreshold": 1,
    }


def deployment(job: JobVersion, settings: JobSettings) -> Obj:
    name = generation_object_name(job.name, job.version, job.deployment_timestamp)
    labels = object_labels(job)
    container: Obj = {
        "name": "job",
        "image": job.image,
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": "http", "containerPort": CONTAINER_PORT, "protocol": "TCP"}],
        "env": _container_env(job, name),
        "resources": resource_requirements(job.resources),
        # /live answers while the entrypoint initialises in the background; 500 when it failed
        "livenessProbe": _probe("/live", 10, 3),
        "readinessProbe": _probe("/ready", 5, 1),
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": JOB_USER_ID,
            "runAsGroup": JOB_USER_ID,
            "allowPrivilegeEscalation": False,
            "privileged": False,
            "readOnlyRootFilesystem": settings.read_only_root_filesystem,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    pod_spec: Obj = {
        "automountServiceAccountToken": False,  # a job has no business with the Kubernetes API
        "enableServiceLinks": False,  # no *_SERVICE_HOST variables of other jobs' Services
        "terminationGracePeriodSeconds": settings.termination_grace_seconds,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": JOB_USER_ID,
            "runAsGroup": JOB_USER_ID,
            "fsGroup": JOB_USER_ID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "affinity": {
            "podAntiAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 100,
                        "podAffinityTerm": {
                            "topologyKey": "kubernetes.io/hostname",
                            "labelSelector": {"matchLabels": version_labels(job)},
                        },
                    }
                ]
            }
        },
        "containers": [container],
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": settings.tmp_size_limit}}],
    }
    if settings.image_pull_secret:
        pod_spec["imagePullSecrets"] = [{"name": settings.image_pull_secret}]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(job, name, settings, labels),
        "spec": {
            "replicas": job.replicas,
            "revisionHistoryLimit": 1,
            "selector": {"matchLabels": generation_labels(job)},
            "template": {
                "metadata": {"labels": labels, "annotations": {ANNOTATION_VERSION: job.version}},
                "spec": pod_spec,
            },
        },
    }


def service(job: JobVersion, settings: JobSettings) -> Obj:
    labels = {k: v for k, v in object_labels(job).items() if k != LABEL_GENERATION}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(job, version_object_name(job.name, job.version), settings, labels),
        "spec": {
            "type": "ClusterIP",
            "selector": version_labels(job),
            "ports": [{"name": "http", "port": CONTAINER_PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def _platform_peer(settings: JobSettings, component: str) -> Obj:
    return {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": settings.platform_namespace}},
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "trackside", LABEL_COMPONENT: component}},
    }


def network_policy(job: JobVersion, settings: JobSettings) -> Obj:
    """Ingress from the gateway (callers) and the lifecycle (it checks a new replica and runs its
    input examples before it serves), as the platform's own `jobs` policy; egress to the gateway
    (chain calls) and DNS only."""
    labels = {k: v for k, v in object_labels(job).items() if k != LABEL_GENERATION}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _metadata(job, version_object_name(job.name, job.version), settings, labels),
        "spec": {
            "podSelector": {"matchLabels": version_labels(job)},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [
                {
                    "ports": [{"port": CONTAINER_PORT, "protocol": "TCP"}],
                    "from": [_platform_peer(settings, "pub"), _platform_peer(settings, "lifecycle")],
                }
            ],
            "egress": [
                {
                    "ports": [{"port": GATEWAY_PORT, "protocol": "TCP"}],
                    "to": [_platform_peer(settings, "pub")],
                },
                {
                    "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}],
                    "to": [
                        {
                            "namespaceSelector": {
                                "matchLabels": {"kubernetes.io/metadata.name": "kube-system"}
                            },
                            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                        }
                    ],
                },
            ],
        },
    }


def pod_disruption_budget(job: JobVersion, settings: JobSettings) -> Obj:
    name = generation_object_name(job.name, job.version, job.deployment_timestamp)
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(job, name, settings, object_labels(job)),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": generation_labels(job)}},
    }
