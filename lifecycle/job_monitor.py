"""Keeps each job's status in step with what its runner sees: running, error (with why) or lost."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from lifecycle.deploy.runner import Runner
from lifecycle.store import jobs as job_store
from lifecycle.store.database import Database
from lifecycle.store.models import JobStatus

if TYPE_CHECKING:
    from lifecycle.deployments import DeploymentService

logger = logging.getLogger("trackside.lifecycle.monitor")

# consecutive failed starts after which a job is reported as `error` rather than restarting
ERROR_AFTER_FAILURES = 3


class JobMonitor:
    def __init__(
        self, db: Database, runner: Runner, deployments: DeploymentService, interval: float = 1.0
    ) -> None:
        self.db = db
        self.runner = runner
        self.deployments = deployments
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="job-monitor", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.check_once()
            except Exception:
                logger.exception("checking job statuses failed")

    def check_once(self) -> None:
        # summaries (no manifests): this runs every second next to `GET /job`
        with self.db.session() as session:
            jobs = job_store.list_job_summaries(session)
        changes: list[tuple[str, str, JobStatus, str | None]] = []
        for job in jobs:
            if job.status == JobStatus.STOPPED or self.deployments.is_deploying(job.name, job.version):
                continue  # a version being deployed belongs to its deployment until it is done
            status, error = self._observed(job.name, job.version)
            if status is not None and (status, error) != (job.status, job.error):
                changes.append((job.name, job.version, status, error))
        if not changes:
            return
        with self.db.session() as session:
            for name, version, status, error in changes:
                if job_store.get_job(session, name, version) is None:
                    continue  # deleted meanwhile
                logger.info("job %s %s -> %s%s", name, version, status.value, f" ({error})" if error else "")
                job_store.set_job_status(session, name, version, status, error)

    def _observed(self, name: str, version: str) -> tuple[JobStatus | None, str | None]:
        if self.runner.serving(name, version):
            return JobStatus.RUNNING, None
        replicas = self.runner.replicas(name, version)
        if not replicas:
            return JobStatus.LOST, "no process is running for this version"
        failing = [r for r in replicas if r.failures >= ERROR_AFTER_FAILURES and r.last_error]
        if failing:
            return JobStatus.ERROR, failing[0].last_error
        return None, None  # (re)starting: keep what is known
