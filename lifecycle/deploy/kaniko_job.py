"""The Kubernetes Job that builds a job's image in the cluster with Kaniko, and its Secrets, as
plain dicts (no client needed).

The pod's init container `context` fills /workspace/context with the build context of
`trackside_wrapper.job_image.stage_context`:
- from an upload (`UploadedContext`): it downloads the staged context as a tar from the
  lifecycle, authenticated by a single-use token held in the build's Secret;
- from git (`GitContext`): it clones the repository (credentials from the Secret, through a git
  credential helper, never on a command line), checks out the fetched commit and copies
  `git.directory` into code/; the rest of the context (Dockerfile, support files, the wrapper
  wheel, requirements files: the lifecycle stages them with no code) comes from the
  `...-scaffold` Secret, whose keys are numbered and mapped back to their paths.
Kaniko then builds /workspace/context/Dockerfile and pushes the image (and its cached layers to the
cache repository) with the registry's docker-config Secret mounted at /kaniko/.docker.

Build secrets. The Dockerfile template's pip steps read the build environment from
/run/secrets/build_env (BuildKit's `RUN --mount=type=secret`, which Kaniko parses but does not
perform). The build's Secret is mounted there in Kaniko's container instead: Kaniko runs RUN
steps in its own root filesystem, so the steps see the file, and it leaves mount points (and the
explicit `--ignore-path`) out of every layer. No build argument carries a value.

`--digest-file=/dev/termination-log` puts the pushed image's digest in the pod's termination
message, for the builder to read.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from trackside_wrapper.job_image import env_file

from .kubernetes_objects import (
    JOBS_NAMESPACE,
    LABEL_COMPONENT,
    LABEL_MANAGED_BY,
    LABEL_NAME,
    LABEL_PART_OF,
    LABEL_VERSION,
    MANAGED_BY,
    REGISTRY_SECRET,
    label_value,
    readable_name,
    secret_data,
)

Obj = dict[str, Any]

COMPONENT_BUILD = "build"
LABEL_BUILD = "trackside.io/build-id"
DEFAULT_KANIKO_IMAGE = "gcr.io/kaniko-project/executor:v1.23.2"
DEFAULT_CONTEXT_IMAGE = "alpine/git:v2.47.2"
WORKSPACE = "/workspace"
CONTEXT_DIR = f"{WORKSPACE}/context"
SCAFFOLD_DIR = "/scaffold"
BUILD_SECRETS_DIR = "/run/secrets"  # where pip-install.sh looks for build_env and ca_bundle
TOKEN_HEADER = "X-Trackside-Build-Token"
SECRET_LIMIT = 1024 * 1024  # what Kubernetes lets one Secret hold
_NAME_LIMIT = 63  # a Job's name becomes its pods' label job-name: at most 63 characters


@dataclass(frozen=True)
class KanikoSettings:
    """How the lifecycle builds images on Kubernetes (not per job)."""

    repository: str  # where job images go: registry.example.com/trackside-jobs
    cache_repository: str | None = None  # None: REPOSITORY/cache
    namespace: str = JOBS_NAMESPACE
    kaniko_image: str = DEFAULT_KANIKO_IMAGE
    context_image: str = DEFAULT_CONTEXT_IMAGE  # the init container's: git, wget, tar, sh
    registry_secret: str | None = REGISTRY_SECRET  # docker-config Secret; None: push without one
    insecure_registry: bool = False  # plain HTTP (the local overlay's in-cluster registry)
    ttl_seconds_after_finished: int = 600
    active_deadline_seconds: int = 1800
    cpu_request: str = "500m"
    memory_request: str = "1Gi"
    memory_limit: str = "4Gi"

    @property
    def cache_repo(self) -> str:
        return self.cache_repository or f"{self.repository.rstrip('/')}/cache"


@dataclass(frozen=True)
class GitContext:
    remote: str  # https://...
    commit: str
    directory: str = "."  # git.directory
    left_out: tuple[str, ...] = ()  # paths under `directory` kept out of the image (secret env files)
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    # Dockerfile, support/, wheels/, requirements/, wrapper-requirements.txt: path -> content
    scaffold: Mapping[str, bytes] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class UploadedContext:
    url: str  # where the lifecycle serves the staged context as a tar, once
    token: str = field(repr=False)


@dataclass(frozen=True)
class KanikoBuild:
    build_id: str  # the deployment's id
    job_name: str
    job_version: str
    destination: str  # the image's tag (job_image.image_tag)
    context: GitContext | UploadedContext
    build_env: Mapping[str, str] = field(default_factory=dict, repr=False)
    ca_bundle: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class KanikoObjects:
    job: Obj
    secrets: list[Obj]

    def all(self) -> list[Obj]:
        """In the order to create them: the Secrets before the Job whose pod mounts them."""
        return [*self.secrets, self.job]


def build_object_name(build: KanikoBuild, suffix: str = "") -> str:
    """`build-NAME-VERSION...-hHASH`: a DNS-1035 label unique for the build, job and version."""
    base = readable_name("build", (build.job_name, build.job_version, build.build_id), _NAME_LIMIT - 10)
    return base + suffix


def build_labels(build: KanikoBuild) -> dict[str, str]:
    return {
        LABEL_COMPONENT: COMPONENT_BUILD,
        LABEL_PART_OF: "trackside",
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_NAME: build.job_name,
        LABEL_VERSION: label_value(build.job_version),
        LABEL_BUILD: label_value(build.build_id),
    }


def _metadata(build: KanikoBuild, name: str, settings: KanikoSettings) -> Obj:
    return {"name": name, "namespace": settings.namespace, "labels": build_labels(build)}


def _registry_host(reference: str) -> str:
    return reference.split("/", 1)[0]


def kaniko_args(build: KanikoBuild, settings: KanikoSettings) -> list[str]:
    args = [
        f"--context=dir://{CONTEXT_DIR}",
        f"--dockerfile={CONTEXT_DIR}/Dockerfile",
        f"--destination={build.destination}",
        "--cache=true",
        f"--cache-repo={settings.cache_repo}",
        f"--ignore-path={BUILD_SECRETS_DIR}",
        "--digest-file=/dev/termination-log",
        "--verbosity=info",
    ]
    if settings.insecure_registry:
        hosts = sorted({_registry_host(build.destination), _registry_host(settings.cache_repo)})
        args += ["--insecure", *(f"--insecure-registry={host}" for host in hosts)]
    return args


def _context_script(build: KanikoBuild) -> str:
    """The init container's shell script; its paths come from the environment (`_path_env`)."""
    if isinstance(build.context, UploadedContext):
        return (
            'set -eu\nmkdir -p "$CONTEXT_DIR"\n'
            f'wget -q -O "$TMPDIR/context.tar" --header "{TOKEN_HEADER}: $BUILD_TOKEN" "$CONTEXT_URL"\n'
            'tar -x -f "$TMPDIR/context.tar" -C "$CONTEXT_DIR"\n'
            'rm -f "$TMPDIR/context.tar"\n'
        )
    directory = PurePosixPath(build.context.directory or ".")
    if directory.is_absolute() or ".." in directory.parts:
        raise ValueError(f"git directory {build.context.directory!r} must stay inside the repository")
    removed = ""
    for path in build.context.left_out:
        relative = PurePosixPath(path)
        if relative.is_absolute() or ".." in relative.parts:
            raise ValueError(f"left-out path {path!r} must stay inside the job's directory")
        removed += ' "$CONTEXT_DIR"/code/' + shlex.quote(relative.as_posix())
    tops = " ".join(
        '"$SCAFFOLD_DIR"/' + shlex.quote(top)
        for top in sorted({PurePosixPath(path).parts[0] for path in build.context.scaffold})
    )
    if not tops:
        raise ValueError("a git build needs the staged build context's scaffold (its Dockerfile at least)")
    helper = '!f() { echo "username=$GIT_USERNAME"; echo "password=$GIT_PASSWORD"; }; f'
    return (
        'set -eu\nmkdir -p "$CONTEXT_DIR"/code\n'
        f"git config --global credential.helper {shlex.quote(helper)}\n"
        'git clone --no-checkout --quiet "$GIT_REMOTE" "$TMPDIR/source"\n'
        'git -C "$TMPDIR/source" checkout --quiet --detach "$GIT_COMMIT"\n'
        # -L: a Secret volume's files are links into its `..data` directory, which stays behind
        f'cp -RL {tops} "$CONTEXT_DIR"/\n'
        f'cp -R "$TMPDIR/source"/{shlex.quote(directory.as_posix())}/. "$CONTEXT_DIR"/code/\n'
        f'rm -rf "$CONTEXT_DIR"/code/.git{removed}\n'
        'find "$CONTEXT_DIR"/code \\( -name __pycache__ -o -name .venv \\) -prune -exec rm -rf {} +\n'
        'find "$CONTEXT_DIR"/code \\( -name "*.pyc" -o -name "*.pyo" \\) -exec rm -f {} +\n'
    )


def _path_env() -> list[Obj]:
    return [
        {"name": "CONTEXT_DIR", "value": CONTEXT_DIR},
        {"name": "SCAFFOLD_DIR", "value": SCAFFOLD_DIR},
        {"name": "TMPDIR", "value": "/tmp"},
        {"name": "HOME", "value": "/tmp"},
    ]


def _secret(
    build: KanikoBuild, name: str, settings: KanikoSettings, values: Mapping[str, str | bytes]
) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _metadata(build, name, settings),
        "type": "Opaque",
        "data": secret_data(values),
    }


def _secret_env(name: str, secret: str, key: str) -> Obj:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def kaniko_objects(build: KanikoBuild, settings: KanikoSettings) -> KanikoObjects:
    """The Job and the Secrets it needs; the builder deletes all of them once the build ended."""
    secret_name = build_object_name(build, "-secrets")
    secret_values: dict[str, str | bytes] = {"build_env": env_file(build.build_env)}
    if build.ca_bundle:
        secret_values["ca_bundle"] = build.ca_bundle
    volumes: list[Obj] = [{"name": "workspace", "emptyDir": {}}]
    context_mounts: list[Obj] = [{"name": "workspace", "mountPath": WORKSPACE}]
    scaffold_secrets: list[Obj] = []
    if isinstance(build.context, UploadedContext):
        secret_values["build_token"] = build.context.token
        context_env = [
            {"name": "CONTEXT_URL", "value": build.context.url},
            _secret_env("BUILD_TOKEN", secret_name, "build_token"),
        ]
    else:
        git = build.context
        secret_values["git_username"] = git.username or ""
        secret_values["git_password"] = git.password or ""
        context_env = [
            {"name": "GIT_REMOTE", "value": git.remote},
            {"name": "GIT_COMMIT", "value": git.commit},
            _secret_env("GIT_USERNAME", secret_name, "git_username"),
            _secret_env("GIT_PASSWORD", secret_name, "git_password"),
            {"name": "GIT_TERMINAL_PROMPT", "value": "0"},
        ]
        scaffold_name = build_object_name(build, "-scaffold")
        paths = sorted(git.scaffold)
        for path in paths:
            relative = PurePosixPath(path)
            if relative.is_absolute() or ".." in relative.parts or relative.parts[:1] == ("code",):
                raise ValueError(f"scaffold file {path!r} is not a path of the build context outside code/")
        if sum(len(content) for content in git.scaffold.values()) > SECRET_LIMIT:
            raise ValueError(
                f"the build context without its code is over {SECRET_LIMIT} bytes, more than a Secret "
                "can hold: build from an uploaded context instead"
            )
        # Secret keys cannot hold '/': numbered keys, mapped back to their paths by the volume
        items = [{"key": f"f{index}", "path": path} for index, path in enumerate(paths)]
        scaffold_data = {f"f{index}": git.scaffold[path] for index, path in enumerate(paths)}
        scaffold_secrets.append(_secret(build, scaffold_name, settings, scaffold_data))
        volumes.append({"name": "scaffold", "secret": {"secretName": scaffold_name, "items": items}})
        context_mounts.append({"name": "scaffold", "mountPath": SCAFFOLD_DIR, "readOnly": True})
    secrets = [_secret(build, secret_name, settings, secret_values), *scaffold_secrets]
    build_secret_items = [{"key": "build_env", "path": "build_env"}]
    if build.ca_bundle:
        build_secret_items.append({"key": "ca_bundle", "path": "ca_bundle"})
    volumes.append(
        {"name": "build-secrets", "secret": {"secretName": secret_name, "items": build_secret_items}}
    )
    kaniko_mounts: list[Obj] = [
        {"name": "workspace", "mountPath": WORKSPACE},
        {"name": "build-secrets", "mountPath": BUILD_SECRETS_DIR, "readOnly": True},
    ]
    if settings.registry_secret:
        volumes.append(
            {
                "name": "docker-config",
                "secret": {
                    "secretName": settings.registry_secret,
                    "items": [{"key": ".dockerconfigjson", "path": "config.json"}],
                },
            }
        )
        kaniko_mounts.append({"name": "docker-config", "mountPath": "/kaniko/.docker", "readOnly": True})

    init_container: Obj = {
        "name": "context",
        "image": settings.context_image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["/bin/sh", "-c", _context_script(build)],
        "env": [*_path_env(), *context_env],
        "volumeMounts": context_mounts,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 65532,
            "runAsGroup": 65532,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        },
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
    }
    # Kaniko unpacks base images and runs RUN steps as root in its own filesystem: it needs root
    kaniko: Obj = {
        "name": "kaniko",
        "image": settings.kaniko_image,
        "imagePullPolicy": "IfNotPresent",
        "args": kaniko_args(build, settings),
        "volumeMounts": kaniko_mounts,
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "resources": {
            "requests": {"cpu": settings.cpu_request, "memory": settings.memory_request},
            "limits": {"memory": settings.memory_limit},
        },
    }
    job: Obj = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _metadata(build, build_object_name(build), settings),
        "spec": {
            "backoffLimit": 0,
            "ttlSecondsAfterFinished": settings.ttl_seconds_after_finished,
            "activeDeadlineSeconds": settings.active_deadline_seconds,
            "template": {
                "metadata": {"labels": build_labels(build)},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}, "fsGroup": 65532},
                    "initContainers": [init_container],
                    "containers": [kaniko],
                    "volumes": volumes,
                },
            },
        },
    }
    return KanikoObjects(job=job, secrets=secrets)
