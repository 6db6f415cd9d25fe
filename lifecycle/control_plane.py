"""The lifecycle's parts put together from a config: store, auth, infrastructures (builders and
runners), deployments.

One object owns start-up (migrations, first admin, interrupted deployments, restarting jobs,
removing containers nothing claims) and shut-down (stopping every job it started), for the API
and the embedded launcher alike.
"""

from __future__ import annotations

import logging
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path

from trackside_wrapper.job_image import ENGINES, EngineNotFound, find_engine

from lifecycle.auth.admin import ensure_admin
from lifecycle.auth.call_authorizer import CallAuthorizer
from lifecycle.config import DOCKER, EMBEDDED, TARGET_ALIASES, ConfigError, LifecycleConfig
from lifecycle.deploy.builder import Builder
from lifecycle.deploy.container_engine import EngineCli, EngineError
from lifecycle.deploy.container_runner import ContainerRunner, ContainerRunSettings
from lifecycle.deploy.fingerprint import FINGERPRINT_RE
from lifecycle.deploy.image_builder import ImageBuilder
from lifecycle.deploy.infrastructures import (
    Infrastructure,
    Infrastructures,
    RoutingBuilder,
    RoutingRunner,
    UnknownTarget,
)
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


class ControlPlane:
    def __init__(self, config: LifecycleConfig, pub_url: str, git_env: dict[str, str] | None = None) -> None:
        self.config = config
        self.pub_url = pub_url
        data = config.data_dir
        self.db = Database.from_config(config)
        self.secrets = SecretBox.from_config(config)
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
            ],
            default=config.infrastructure_target,
            aliases=TARGET_ALIASES,
        )
        if self.infrastructures.default == DOCKER and self._docker_unavailable:
            raise ConfigError(f"TRACKSIDE_INFRASTRUCTURE_TARGET=docker: {self._docker_unavailable}")
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
            if self.infrastructures.default == DOCKER:
                self.infrastructures.parts(DOCKER)  # finds the containers an earlier lifecycle left
            elif self._has_container_jobs():
                try:
                    self.infrastructures.parts(DOCKER)
                except UnknownTarget as e:
                    logger.warning("jobs on containers cannot be restarted: %s", e)
            report.lost_jobs = self.deployments.restart_jobs()
            for _, _, runner in self.infrastructures.started():
                if isinstance(runner, ContainerRunner):
                    report.removed_containers += runner.remove_unclaimed()
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

    def _has_container_jobs(self) -> bool:
        if self._docker_unavailable:
            return False
        with self.db.session() as session:
            return any(
                TARGET_ALIASES.get((job.infrastructure_target or EMBEDDED).lower()) == DOCKER
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
        logger.info("the lifecycle stopped, and every job it ran with it")
