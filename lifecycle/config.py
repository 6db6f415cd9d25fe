"""LifecycleConfig: where the lifecycle keeps its data, which database it uses, its secret key and
where jobs run (the default infrastructure target and the settings of the container one)."""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.fernet import Fernet
from trackside_wrapper.job_image import ca_bundle_from_env

from lifecycle.deploy.kaniko_job import DEFAULT_CONTEXT_IMAGE, DEFAULT_KANIKO_IMAGE
from lifecycle.deploy.kubernetes_objects import JOBS_NAMESPACE, PLATFORM_NAMESPACE, REGISTRY_SECRET

SECRET_KEY_FILE = "secret.key"
DATABASE_FILE = "trackside.db"
DEFAULT_AUTH_CACHE_TTL = 5.0

EMBEDDED = "embedded"
DOCKER = "docker"
KUBERNETES = "kubernetes"
# a manifest's `infrastructure_target` (or TRACKSIDE_INFRASTRUCTURE_TARGET) -> the target it names
TARGET_ALIASES = {
    EMBEDDED: EMBEDDED,
    "local": EMBEDDED,
    DOCKER: DOCKER,
    "podman": DOCKER,
    KUBERNETES: KUBERNETES,
    "k8s": KUBERNETES,
}
DEFAULT_BASE_IMAGE = "python:{python_version}-slim"
DEFAULT_IMAGE_REPOSITORY = "localhost/trackside"
CONTAINER_NETWORK_HOST = "host"
RESTART_POLICIES = ("no", "always", "on-failure", "unless-stopped")

_DNS_LABEL_RE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_QUANTITY_RE = re.compile(r"[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class ConfigError(ValueError):
    """A setting from the environment has a value the lifecycle cannot use."""


@dataclass(frozen=True)
class ContainerConfig:
    """How the `docker` infrastructure builds and runs job images (see docs/containers.md)."""

    engine: str | None = None  # "podman", "docker" or a path; None: podman, else docker, found on PATH
    base_image: str = DEFAULT_BASE_IMAGE  # `{python_version}` is the job's (or the lifecycle's) Python
    image_repository: str = DEFAULT_IMAGE_REPOSITORY
    build_network: str | None = None  # the network of RUN steps (pip); None: the engine's default
    build_ca_bundle: Path | None = None  # CA certificates pip trusts during builds
    push: bool = False  # push every built image to image_repository
    registry_username: str | None = None
    registry_password: str | None = field(default=None, repr=False)
    network: str | None = None  # None: the engine's default, published on 127.0.0.1; "host"; a name
    pub_url: str | None = None  # the gateway as seen from a container (default: derived from PUB_URL)
    restart_policy: str = "on-failure"
    stop_with_lifecycle: bool = True  # stop the containers when the lifecycle stops

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ContainerConfig:
        """TRACKSIDE_CONTAINER_ENGINE, TRACKSIDE_IMAGE_BASE, TRACKSIDE_IMAGE_REPOSITORY,
        TRACKSIDE_IMAGE_PUSH, TRACKSIDE_REGISTRY_USERNAME, TRACKSIDE_REGISTRY_PASSWORD,
        TRACKSIDE_BUILD_NETWORK, TRACKSIDE_BUILD_CA_BUNDLE (default: PIP_CERT, SSL_CERT_FILE or
        REQUESTS_CA_BUNDLE when one names a file), TRACKSIDE_CONTAINER_NETWORK,
        TRACKSIDE_CONTAINER_PUB_URL, TRACKSIDE_CONTAINER_RESTART, TRACKSIDE_CONTAINERS_STOP_WITH_LIFECYCLE."""
        restart = env.get("TRACKSIDE_CONTAINER_RESTART", "").strip() or "on-failure"
        if restart.split(":")[0] not in RESTART_POLICIES:
            raise ConfigError(
                f"TRACKSIDE_CONTAINER_RESTART must be one of {', '.join(RESTART_POLICIES)}, got {restart!r}"
            )
        base_image = env.get("TRACKSIDE_IMAGE_BASE", "").strip() or DEFAULT_BASE_IMAGE
        try:
            base_image.format(python_version="3")
        except (KeyError, IndexError, ValueError):
            raise ConfigError(
                f"TRACKSIDE_IMAGE_BASE may hold only the placeholder {{python_version}}, got {base_image!r}"
            ) from None
        push = _bool(env, "TRACKSIDE_IMAGE_PUSH", default=False)
        username = env.get("TRACKSIDE_REGISTRY_USERNAME") or None
        password = env.get("TRACKSIDE_REGISTRY_PASSWORD") or None
        if bool(username) != bool(password):
            raise ConfigError("TRACKSIDE_REGISTRY_USERNAME and TRACKSIDE_REGISTRY_PASSWORD go together")
        return cls(
            engine=env.get("TRACKSIDE_CONTAINER_ENGINE", "").strip() or None,
            base_image=base_image,
            image_repository=env.get("TRACKSIDE_IMAGE_REPOSITORY", "").strip().rstrip("/")
            or DEFAULT_IMAGE_REPOSITORY,
            build_network=env.get("TRACKSIDE_BUILD_NETWORK", "").strip() or None,
            build_ca_bundle=_ca_bundle(env),
            push=push,
            registry_username=username,
            registry_password=password,
            network=env.get("TRACKSIDE_CONTAINER_NETWORK", "").strip() or None,
            pub_url=env.get("TRACKSIDE_CONTAINER_PUB_URL", "").strip() or None,
            restart_policy=restart,
            stop_with_lifecycle=_bool(env, "TRACKSIDE_CONTAINERS_STOP_WITH_LIFECYCLE", default=True),
        )


@dataclass(frozen=True)
class KubernetesConfig:
    """How the `kubernetes` infrastructure builds (Kaniko Jobs) and runs (Deployments) jobs; see
    docs/kubernetes.md."""

    kubeconfig: str | None = None  # None: the service account's when in a cluster, else ~/.kube/config
    context: str | None = None
    namespace: str = JOBS_NAMESPACE  # where job pods and builds run
    platform_namespace: str = PLATFORM_NAMESPACE  # where the lifecycle and the gateway run
    job_pub_url: str | None = None  # PUB_URL as jobs see it (default: the gateway's Service)
    lifecycle_url: str | None = None  # the lifecycle as build pods see it (default: its Service)
    image_repository: str | None = None  # where job images are pushed; required
    cache_repository: str | None = None  # Kaniko's layer cache (default: IMAGE_REPOSITORY/cache)
    registry_secret: str | None = REGISTRY_SECRET  # docker-config Secret to push and pull; None: none
    insecure_registry: bool = False  # plain HTTP registry (the local overlay's)
    kaniko_image: str = DEFAULT_KANIKO_IMAGE
    context_image: str = DEFAULT_CONTEXT_IMAGE
    kaniko_memory_limit: str = "4Gi"
    build_deadline: int = 1800  # seconds a build may take
    git_context: bool = True  # build pods clone git deploys themselves
    scheduling_timeout: float = 120.0  # a job pod no node takes for this long fails its deploy

    @property
    def pub_url_for_jobs(self) -> str:
        return self.job_pub_url or f"http://pub.{self.platform_namespace}.svc.cluster.local:7205/pub"

    @property
    def lifecycle_url_for_builds(self) -> str:
        return self.lifecycle_url or f"http://lifecycle.{self.platform_namespace}.svc.cluster.local:7200"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> KubernetesConfig:
        """TRACKSIDE_KUBECONFIG, TRACKSIDE_K8S_CONTEXT, TRACKSIDE_K8S_NAMESPACE,
        TRACKSIDE_K8S_PLATFORM_NAMESPACE, TRACKSIDE_K8S_JOB_PUB_URL, TRACKSIDE_K8S_LIFECYCLE_URL,
        TRACKSIDE_IMAGE_REPOSITORY, TRACKSIDE_KANIKO_CACHE_REPOSITORY, TRACKSIDE_K8S_REGISTRY_SECRET
        ("none": no Secret), TRACKSIDE_REGISTRY_INSECURE, TRACKSIDE_KANIKO_IMAGE,
        TRACKSIDE_BUILD_CONTEXT_IMAGE, TRACKSIDE_KANIKO_MEMORY_LIMIT, TRACKSIDE_KANIKO_DEADLINE,
        TRACKSIDE_K8S_GIT_CONTEXT, TRACKSIDE_K8S_SCHEDULING_TIMEOUT."""

        def text(name: str) -> str | None:
            return env.get(name, "").strip() or None

        namespaces = {}
        for name, default in (
            ("TRACKSIDE_K8S_NAMESPACE", JOBS_NAMESPACE),
            ("TRACKSIDE_K8S_PLATFORM_NAMESPACE", PLATFORM_NAMESPACE),
        ):
            value = text(name) or default
            if not _DNS_LABEL_RE.fullmatch(value):
                raise ConfigError(f"{name} must be a namespace name (a DNS label), got {value!r}")
            namespaces[name] = value
        for name in ("TRACKSIDE_K8S_JOB_PUB_URL", "TRACKSIDE_K8S_LIFECYCLE_URL"):
            url = text(name)
            if url and not url.startswith(("http://", "https://")):
                raise ConfigError(f"{name} must be an http:// or https:// URL, got {url!r}")
        memory = text("TRACKSIDE_KANIKO_MEMORY_LIMIT") or "4Gi"
        if not _QUANTITY_RE.fullmatch(memory):
            raise ConfigError(
                f"TRACKSIDE_KANIKO_MEMORY_LIMIT must be a memory quantity like 4Gi, got {memory!r}"
            )
        deadline = _seconds(env, "TRACKSIDE_KANIKO_DEADLINE", default=1800)
        if deadline < 60:
            raise ConfigError(f"TRACKSIDE_KANIKO_DEADLINE must be at least 60 seconds, got {deadline:g}")
        registry_secret = text("TRACKSIDE_K8S_REGISTRY_SECRET") or REGISTRY_SECRET
        return cls(
            kubeconfig=text("TRACKSIDE_KUBECONFIG"),
            context=text("TRACKSIDE_K8S_CONTEXT"),
            namespace=namespaces["TRACKSIDE_K8S_NAMESPACE"],
            platform_namespace=namespaces["TRACKSIDE_K8S_PLATFORM_NAMESPACE"],
            job_pub_url=text("TRACKSIDE_K8S_JOB_PUB_URL"),
            lifecycle_url=text("TRACKSIDE_K8S_LIFECYCLE_URL"),
            image_repository=(text("TRACKSIDE_IMAGE_REPOSITORY") or "").rstrip("/") or None,
            cache_repository=(text("TRACKSIDE_KANIKO_CACHE_REPOSITORY") or "").rstrip("/") or None,
            registry_secret=None if registry_secret.lower() == "none" else registry_secret,
            insecure_registry=_bool(env, "TRACKSIDE_REGISTRY_INSECURE", default=False),
            kaniko_image=text("TRACKSIDE_KANIKO_IMAGE") or DEFAULT_KANIKO_IMAGE,
            context_image=text("TRACKSIDE_BUILD_CONTEXT_IMAGE") or DEFAULT_CONTEXT_IMAGE,
            kaniko_memory_limit=memory,
            build_deadline=int(deadline),
            git_context=_bool(env, "TRACKSIDE_K8S_GIT_CONTEXT", default=True),
            scheduling_timeout=_seconds(env, "TRACKSIDE_K8S_SCHEDULING_TIMEOUT", default=120.0),
        )


def infrastructure_target(name: str) -> str | None:
    """The target a manifest's `infrastructure_target` names (None: no such target)."""
    return TARGET_ALIASES.get(name.strip().lower())


@dataclass(frozen=True)
class LifecycleConfig:
    data_dir: Path
    database_url: str
    secret_key: str = field(repr=False)
    allow_file_remotes: bool = True
    auth_cache_ttl: float = DEFAULT_AUTH_CACHE_TTL
    infrastructure_target: str = EMBEDDED  # where jobs run whose manifest names no target
    containers: ContainerConfig = field(default_factory=ContainerConfig)
    kubernetes: KubernetesConfig = field(default_factory=KubernetesConfig)

    @classmethod
    def from_env(cls, embedded: bool = True, environ: Mapping[str, str] | None = None) -> LifecycleConfig:
        """Read TRACKSIDE_* variables; create the data dir (mode 700) and the key file when needed.

        TRACKSIDE_DATA_DIR (default $XDG_DATA_HOME/trackside or ~/.local/share/trackside),
        TRACKSIDE_DATABASE_URL (default a SQLite file in the data dir), TRACKSIDE_SECRET_KEY
        (default a Fernet key generated once into DATA_DIR/secret.key, mode 600),
        TRACKSIDE_ALLOW_FILE_REMOTES (default: true when embedded), TRACKSIDE_AUTH_CACHE_TTL (seconds),
        TRACKSIDE_INFRASTRUCTURE_TARGET (embedded, also called local; docker, also podman; kubernetes,
        also k8s; default embedded), the container settings of ContainerConfig.from_env and the
        Kubernetes ones of KubernetesConfig.from_env.
        """
        env = os.environ if environ is None else environ
        raw_target = env.get("TRACKSIDE_INFRASTRUCTURE_TARGET", "").strip() or EMBEDDED
        target = infrastructure_target(raw_target)
        if target is None:
            raise ConfigError(
                f"TRACKSIDE_INFRASTRUCTURE_TARGET must be one of {', '.join(TARGET_ALIASES)}, got {raw_target!r}"
            )
        containers = ContainerConfig.from_env(env)
        kubernetes = KubernetesConfig.from_env(env)
        data_dir = Path(env.get("TRACKSIDE_DATA_DIR") or _default_data_dir(env)).expanduser().absolute()
        ensure_private_dir(data_dir)
        database_url = env.get("TRACKSIDE_DATABASE_URL") or f"sqlite:///{data_dir / DATABASE_FILE}"
        secret_key = env.get("TRACKSIDE_SECRET_KEY") or load_or_create_key_file(data_dir / SECRET_KEY_FILE)
        return cls(
            data_dir=data_dir,
            database_url=database_url,
            secret_key=secret_key,
            allow_file_remotes=_bool(env, "TRACKSIDE_ALLOW_FILE_REMOTES", default=embedded),
            auth_cache_ttl=_seconds(env, "TRACKSIDE_AUTH_CACHE_TTL", default=DEFAULT_AUTH_CACHE_TTL),
            infrastructure_target=target,
            containers=containers,
            kubernetes=kubernetes,
        )


def _default_data_dir(env: Mapping[str, str]) -> Path:
    xdg = env.get("XDG_DATA_HOME")
    return Path(xdg) / "trackside" if xdg else Path.home() / ".local" / "share" / "trackside"


def ensure_private_dir(path: Path) -> None:
    """Create `path` readable by its owner only; an existing directory keeps its mode."""
    if path.is_dir():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        return
    path.chmod(0o700)  # mkdir's mode is filtered by the umask


def write_private_file(path: Path, content: str) -> bool:
    """Write `content` to a new file of mode 600; False (and nothing written) when it exists.

    The content is written to a temporary file first and linked into place, so a concurrent reader
    never sees a half-written file.
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(content)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        return True
    finally:
        tmp.unlink()


def load_or_create_key_file(path: Path) -> str:
    """The Fernet key stored in `path`, generated on first use."""
    if not path.exists():
        write_private_file(path, Fernet.generate_key().decode() + "\n")
    key = path.read_text().strip()
    if not key:
        raise ConfigError(f"the secret key file {path} is empty; delete it to generate a new key")
    return key


def _ca_bundle(env: Mapping[str, str]) -> Path | None:
    try:
        return ca_bundle_from_env(env)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {raw!r}") from None
    if value < 0:
        raise ConfigError(f"{name} must not be negative, got {raw!r}")
    return value
