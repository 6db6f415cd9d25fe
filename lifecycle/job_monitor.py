"""Keeps each job's status in step with what its runner sees: running, error (with why) or lost."""

from __future__ import annotations

import logging
import threading
import time
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
    """Every `interval` it looks at what the runner runs (cheap: no query unless something
    changed); every `full_interval` it also reads every job from the store, to find versions that
    should run and do not (`lost`)."""

    def __init__(
        self,
        db: Database,
        runner: Runner,
        deployments: DeploymentService,
        interval: float = 1.0,
        full_interval: float = 30.0,
    ) -> None:
        self.db = db
        self.runner = runner
        self.deployments = deployments
        self.interval = interval
        self.full_interval = full_interval
        self._known: dict[tuple[str, str], tuple[JobStatus, str | None]] = {}
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
        next_full = 0.0
        while not self._stop.wait(self.interval):
            try:
                if time.monotonic() >= next_full:
                    self.check_all()
                    next_full = time.monotonic() + self.full_interval
                else:
                    self.check_running()
            except Exception:
                logger.exception("checking job statuses failed")

    def check_all(self) -> None:
        """Every job in the store against what the runner sees."""
        with self.db.session() as session:
            jobs = job_store.list_job_summaries(session)
        self._known = {(j.name, j.version): (j.status, j.error) for j in jobs}
        self._settle([(j.name, j.version) for j in jobs if j.status != JobStatus.STOPPED])

    def check_running(self) -> None:
        """Only the versions the runner runs: nothing is read from the store."""
        self._settle(self.runner.versions())

    def _settle(self, keys: list[tuple[str, str]]) -> None:
        changes: list[tuple[str, str, JobStatus, str | None]] = []
        for name, version in keys:
            if self.deployments.is_deploying(name, version):
                continue  # a version being deployed belongs to its deployment until it is done
            status, error = self._observed(name, version)
            if status is not None and self._known.get((name, version)) != (status, error):
                changes.append((name, version, status, error))
        if not changes:
            return
        with self.db.session() as session:
            for name, version, status, error in changes:
                job = job_store.get_job(session, name, version)
                if job is None or job.status == JobStatus.STOPPED:
                    continue  # deleted or stopped meanwhile
                if (job.status, job.error) != (status, error):
                    logger.info(
                        "job %s %s -> %s%s", name, version, status.value, f" ({error})" if error else ""
                    )
                    job.status, job.error = status, error
                self._known[(name, version)] = (status, error)

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
