"""The lifecycle's parts put together from a config: store, auth, builder, runner, deployments.

One object owns start-up (migrations, first admin, interrupted deployments, restarting jobs)
and shut-down (stopping every job it started), for the API and the embedded launcher alike.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

from lifecycle.auth.admin import ensure_admin
from lifecycle.auth.call_authorizer import CallAuthorizer
from lifecycle.config import LifecycleConfig
from lifecycle.deploy.local_runner import LocalRunner
from lifecycle.deploy.pipeline import Pipeline, PipelineSettings
from lifecycle.deploy.venv_builder import VenvBuilder
from lifecycle.deployments import DeploymentService
from lifecycle.job_monitor import JobMonitor
from lifecycle.secrets import SecretBox
from lifecycle.store.database import Database

logger = logging.getLogger("trackside.lifecycle")

WRAPPER_SOURCE = Path(__file__).resolve().parent.parent / "wrappers" / "python3"


@dataclass
class StartupReport:
    admin_token: str | None = None
    interrupted_deployments: int = 0
    lost_jobs: list[str] = field(default_factory=list)


class ControlPlane:
    def __init__(self, config: LifecycleConfig, pub_url: str, git_env: dict[str, str] | None = None) -> None:
        self.config = config
        self.pub_url = pub_url
        data = config.data_dir
        self.db = Database.from_config(config)
        self.secrets = SecretBox.from_config(config)
        self.authorizer = CallAuthorizer.from_config(self.db, config)
        self.builder = VenvBuilder(data / "environments", data / "code", WRAPPER_SOURCE)
        self.runner = LocalRunner(data / "logs")
        self.pipeline = Pipeline(
            self.builder,
            self.runner,
            PipelineSettings(
                workspace_root=data / "workspaces",
                allow_file_remotes=config.allow_file_remotes,
                git_env=dict(git_env or {}),
            ),
        )
        self.deployments = DeploymentService(self.db, self.pipeline, self.runner, self.secrets, pub_url)
        self.monitor = JobMonitor(self.db, self.runner, self.deployments)
        self._started = False
        self._stopped = False
        self._lock = threading.Lock()

    def start(self) -> StartupReport:
        with self._lock:
            report = StartupReport()
            if self._started:
                return report
            report.admin_token = ensure_admin(self.db, self.config.data_dir)
            report.interrupted_deployments = self.deployments.interrupt_unfinished()
            report.lost_jobs = self.deployments.restart_jobs()
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
