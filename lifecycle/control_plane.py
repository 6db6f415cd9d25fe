"""The lifecycle's parts put together from a config: store, auth, infrastructures (builders and
runners), deployments.

One object owns start-up (migrations, first admin, interrupted deployments, restarting jobs,
removing containers nothing claims) and shut-down (stopping every job it started), for the API
and the embedded launcher alike.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path

from trackside_wrapper.job_image import ENGINES, EngineNotFound, find_engine

from lifecycle.auth.admin import ensure_admin
from lifecycle.auth.call_authorizer import CallAuthorizer
from lifecycle.config import (
    DOCKER,
    EMBEDDED,
    KUBERNETES,
    TARGET_ALIASES,
    ConfigError,
    KubernetesConfig,
    LifecycleConfig,
)
from lifecycle.deploy.builder import Builder
from lifecycle.deploy.container_engine import EngineCli, EngineError
from lifecycle.deploy.container_runner import ContainerRunner, ContainerRunSettings
from lifecycle.deploy.context_handout import ContextHandout
from lifecycle.deploy.fingerprint import FINGERPRINT_RE
from lifecycle.deploy.image_builder import ImageBuilder
from lifecycle.deploy.infrastructures import (
    Infrastructure,
    Infrastructures,
    RoutingBuilder,
    RoutingRunner,
    UnknownTarget,
)
from lifecycle.deploy.kaniko_builder import KanikoBuilder, KanikoBuilderSettings
from lifecycle.deploy.kaniko_job import KanikoSettings
from lifecycle.deploy.kubernetes_api import KubernetesApi, KubernetesError, missing_configuration
from lifecycle.deploy.kubernetes_objects import JobSettings
from lifecycle.deploy.kubernetes_runner import KubernetesRunner, KubernetesRunSettings
from lifecycle.deploy.local_runner import LocalRunner
from lifecycle.deploy.pipeline import Pipeline, PipelineSettings
from lifecycle.deploy.runner import Runner
from lifecycle.deploy.venv_builder import VenvBuilder
from lifecycle.deployments import DeploymentService
from lifecycle.job_monitor import JobMonitor
from lifecycle.secrets import SecretBox
from lifecycle.store import jobs as job_store
from lifecycle.store.database import Database

logger = logging.getLogger("trackside.lifecycle")

WRAPPER_SOURCE = Path(__file__).resolve().parent.parent / "wrappers" / "python3"


@dataclass
class StartupReport:
    admin_token: str | None = None
    interrupted_deployments: int = 0
    lost_jobs: list[str] = field(default_factory=list)
    removed_containers: int = 0
    removed_deployments: int = 0  # Kubernetes job generations no job claimed
    removed_builds: int = 0  # Kaniko build Jobs and Secrets an interrupted lifecycle left


def kubernetes_unavailable(settings: KubernetesConfig) -> str | None:
    """Why the kubernetes target cannot be used here (None: it can)."""
    if settings.image_repository is None:
        return "TRACKSIDE_IMAGE_REPOSITORY is not set: the registry repository job images are pushed to"
    return missing_configuration(settings.kubeconfig)


class ControlPlane:
    def __init__(self, config: LifecycleConfig, pub_url: str, git_env: dict[str, str] | None = None) -> None:
        self.config = config
        self.pub_url = pub_url
        data = config.data_dir
        self.db = Database.from_config(config)
        self.secrets = SecretBox.from_config(config)
        self.context_handout = ContextHandout()
        self.authorizer = CallAuthorizer.from_config(self.db, config)
        self.infrastructures = Infrastructures(
            [
                Infrastructure(
                    EMBEDDED,
                    "local processes",
                    self._embedded,
                    lambda env: bool(FINGERPRINT_RE.fullmatch(env)),
                ),
                self._containers_target(),
                self._kubernetes_target(),
            ],
            default=config.infrastructure_target,
            aliases=TARGET_ALIASES,
        )
        if self.infrastructures.default == DOCKER and self._docker_unavailable:
            raise ConfigError(f"TRACKSIDE_INFRASTRUCTURE_TARGET=docker: {self._docker_unavailable}")
        if self.infrastructures.default == KUBERNETES and self._kubernetes_unavailable:
            raise ConfigError(f"TRACKSIDE_INFRASTRUCTURE_TARGET=kubernetes: {self._kubernetes_unavailable}")
        self.infrastructures.parts(EMBEDDED)  # its runner stops job processes a dead lifecycle left
        self.builder = RoutingBuilder(self.infrastructures)
        self.runner = RoutingRunner(self.infrastructures)
        self.pipeline = Pipeline(
            self.builder,
            self.runner,
            PipelineSettings(
                workspace_root=data / "workspaces",
                allow_file_remotes=config.allow_file_remotes,
                git_env=dict(git_env or {}),
            ),
        )
        self.deployments = DeploymentService(
            self.db, self.pipeline, self.runner, self.secrets, pub_url, targets=self.infrastructures
        )
        self.monitor = JobMonitor(self.db, self.runner, self.deployments)
        self._started = False
        self._stopped = False
        self._lock = threading.Lock()

    # ---- infrastructures ----------------------------------------------------------------------

    def _embedded(self) -> tuple[Builder, Runner]:
        data = self.config.data_dir
        return VenvBuilder(data / "environments", data / "code", WRAPPER_SOURCE), LocalRunner(data / "logs")

    def _containers_target(self) -> Infrastructure:
        settings = self.config.containers
        wanted = [settings.engine] if settings.engine else list(ENGINES)
        found = next((path for path in map(shutil.which, wanted) if path), None)
        self._docker_unavailable: str | None = None
        if found is None:
            self._docker_unavailable = (
                f"the container engine {settings.engine!r} is not installed (not found on PATH)"
                if settings.engine
                else "no container engine found: install podman or docker"
            )

        def create() -> tuple[Builder, Runner]:
            try:
                engine = find_engine(found)
            except EngineNotFound as e:
                raise UnknownTarget(str(e)) from None
            cli = EngineCli(engine)
            root = self.config.data_dir / "containers"
            credentials = (
                (settings.registry_username, settings.registry_password)
                if settings.registry_username and settings.registry_password
                else None
            )
            builder = ImageBuilder(
                cli,
                root / "builds",
                base_image=settings.base_image,
                repository=settings.image_repository,
                build_network=settings.build_network,
                ca_bundle=settings.build_ca_bundle,
                push=settings.push,
                registry_credentials=credentials,
            )
            try:
                runner = ContainerRunner(
                    cli,
                    root,
                    ContainerRunSettings(
                        network=settings.network,
                        pub_url=settings.pub_url,
                        restart_policy=settings.restart_policy,
                        stop_with_lifecycle=settings.stop_with_lifecycle,
                    ),
                    on_image_unused=builder.prune_image,
                )
            except EngineError as e:
                raise UnknownTarget(f"the container engine {engine.path} does not work: {e}") from None
            return builder, runner

        description = f"containers ({Path(found).name})" if found else "containers"
        return Infrastructure(DOCKER, description, create, ImageBuilder.owns, self._docker_unavailable)

    def _kubernetes_target(self) -> Infrastructure:
        settings = self.config.kubernetes
        self._kubernetes_unavailable = kubernetes_unavailable(settings)

        def create() -> tuple[Builder, Runner]:
            try:
                api = KubernetesApi.connect(settings.kubeconfig, settings.context)
            except KubernetesError as e:
                raise UnknownTarget(str(e)) from None
            assert settings.image_repository is not None  # else the target is unavailable
            jobs = JobSettings(
                namespace=settings.namespace,
                platform_namespace=settings.platform_namespace,
                image_pull_secret=settings.registry_secret,
            )
            kaniko = KanikoSettings(
                repository=settings.image_repository,
                cache_repository=settings.cache_repository,
                namespace=settings.namespace,
                kaniko_image=settings.kaniko_image,
                context_image=settings.context_image,
                registry_secret=settings.registry_secret,
                insecure_registry=settings.insecure_registry,
                active_deadline_seconds=settings.build_deadline,
                memory_limit=settings.kaniko_memory_limit,
            )
            builder = KanikoBuilder(
                api,
                KanikoBuilderSettings(
                    kaniko=kaniko,
                    base_image=self.config.containers.base_image,
                    lifecycle_url=settings.lifecycle_url_for_builds,
                    build_env_key=hashlib.sha256(b"build-env\0" + self.config.secret_key.encode()).digest(),
                    git_context=settings.git_context,
                    ca_bundle=self.config.containers.build_ca_bundle,
                    scheduling_timeout=settings.scheduling_timeout,
                ),
                self.context_handout,
                self.config.data_dir / "kubernetes" / "tmp",
            )
            runner = KubernetesRunner(
                api,
                KubernetesRunSettings(
                    jobs=jobs,
                    job_pub_url=settings.pub_url_for_jobs,
                    scheduling_timeout=settings.scheduling_timeout,
                ),
            )
            return builder, runner

        description = f"Kubernetes (namespace {settings.namespace})"
        return Infrastructure(
            KUBERNETES, description, create, KanikoBuilder.owns, self._kubernetes_unavailable
        )

    def infrastructure_targets(self) -> dict[str, str]:
        """The targets jobs can run on here, name -> description (for /info)."""
        return self.infrastructures.describe()

    def start(self) -> StartupReport:
        with self._lock:
            report = StartupReport()
            if self._started:
                return report
            report.admin_token = ensure_admin(self.db, self.config.data_dir)
            report.interrupted_deployments = self.deployments.interrupt_unfinished()
            for target, unavailable in (
                (DOCKER, self._docker_unavailable),
                (KUBERNETES, self._kubernetes_unavailable),
            ):
                if self.infrastructures.default == target:
                    self.infrastructures.parts(target)  # finds the jobs an earlier lifecycle left
                elif not unavailable and self._has_jobs_on(target):
                    try:
                        self.infrastructures.parts(target)
                    except UnknownTarget as e:
                        logger.warning("jobs on %s cannot be restarted: %s", target, e)
            for _, builder, _ in self.infrastructures.started():
                if isinstance(builder, KanikoBuilder):
                    report.removed_builds += builder.remove_leftovers()
            report.lost_jobs = self.deployments.restart_jobs()
            for _, _, runner in self.infrastructures.started():
                if isinstance(runner, ContainerRunner):
                    report.removed_containers += runner.remove_unclaimed()
                if isinstance(runner, KubernetesRunner):
                    report.removed_deployments += runner.remove_unclaimed()
            self.monitor.start()
            self._started = True
            if report.interrupted_deployments:
                logger.warning(
                    "%d deployment(s) were interrupted by the last stop and marked failed",
                    report.interrupted_deployments,
                )
            for job in report.lost_jobs:
                logger.warning("job %s cannot be restarted: its files are gone", job)
            return report

    def _has_jobs_on(self, target: str) -> bool:
        with self.db.session() as session:
            return any(
                TARGET_ALIASES.get((job.infrastructure_target or EMBEDDED).lower()) == target
                for job in job_store.list_job_summaries(session)
            )

    def stop(self) -> None:
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            self.monitor.stop()
            self.deployments.shutdown()
            self.runner.shutdown()
            self.db.dispose()
            self._started = False
        if self.infrastructures.is_started(KUBERNETES):
            logger.info(
                "the lifecycle stopped; its jobs on Kubernetes keep running, the others stopped with it"
            )
        else:
            logger.info("the lifecycle stopped, and every job it ran with it")
