"""Prometheus metrics of the lifecycle, read from the store when Prometheus scrapes.

Why from the store rather than counted in the deploy pipeline:
- nothing is lost when the lifecycle restarts, and deployments that another lifecycle process
  ran (several replicas on Kubernetes) or that finished before the restart are counted;
- the pipeline needs no hook, and a deployment that ends in any way (done, failed, interrupted by
  a restart) is seen the same way, from its stored phases.

The counters and the histograms are cumulative over the store's history (deployments are never
deleted), so they only go up and survive restarts without a reset. The phase histograms are fed
incrementally: the first scrape reads every finished deployment once, later scrapes only those
that finished since (with a lookback, so a deployment committed late is not missed, and a set of
seen ids, so none counts twice). Every lifecycle replica reports the same values: aggregate with
`max`, not `sum`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from lifecycle.deploy.pipeline import DONE
from lifecycle.store.database import Database
from lifecycle.store.models import Deployment, DeploymentStatus, Job, JobStatus

logger = logging.getLogger("trackside.lifecycle.metrics")

DURATION_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600)
# a deployment whose finish is committed this much after its finished_at is still counted
LOOKBACK = timedelta(minutes=10)
FINISHED = (DeploymentStatus.DONE, DeploymentStatus.FAILED)


class DurationHistogram:
    """A cumulative histogram per label value, rendered as one Prometheus histogram family."""

    def __init__(self, name: str, documentation: str, label: str, buckets: Sequence[float]) -> None:
        self.name = name
        self.documentation = documentation
        self.label = label
        self.buckets = tuple(sorted(buckets))
        self._counts: dict[str, list[int]] = {}  # per bucket, not cumulative; the last is +Inf
        self._sums: dict[str, float] = {}

    def observe(self, label_value: str, seconds: float) -> None:
        counts = self._counts.setdefault(label_value, [0] * (len(self.buckets) + 1))
        index = next((i for i, bound in enumerate(self.buckets) if seconds <= bound), len(self.buckets))
        counts[index] += 1
        self._sums[label_value] = self._sums.get(label_value, 0.0) + seconds

    def count(self, label_value: str) -> int:
        return sum(self._counts.get(label_value, ()))

    def family(self) -> HistogramMetricFamily:
        family = HistogramMetricFamily(self.name, self.documentation, labels=[self.label])
        for label_value in sorted(self._counts):
            cumulative, buckets = 0, []
            for bound, count in zip(
                (*map(floatToGoString, self.buckets), "+Inf"), self._counts[label_value], strict=True
            ):
                cumulative += count
                buckets.append((bound, float(cumulative)))
            family.add_metric([label_value], buckets, self._sums[label_value])
        return family


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def phase_durations(
    phases: Iterable[dict[str, Any]], finished_at: datetime | None
) -> list[tuple[str, float]]:
    """(phase, seconds) of a finished deployment's stored phases.

    A phase lasts until the next one starts, the last one until the deployment finished; the
    final `done` marker is not a phase. Malformed entries are skipped.
    """
    starts: list[tuple[str, datetime]] = []
    for phase in phases:
        try:
            starts.append((str(phase["name"]), _aware(datetime.fromisoformat(phase["started_at"]))))
        except (KeyError, TypeError, ValueError):
            continue
    if not starts:
        return []
    ends: list[datetime | None] = [start for _, start in starts[1:]]
    ends.append(_aware(finished_at) if finished_at is not None else None)
    return [
        (name, max(0.0, (end - start).total_seconds()))
        for (name, start), end in zip(starts, ends, strict=True)
        if name != DONE and end is not None
    ]


class DeploymentDurations:
    """Phase and total durations of finished deployments, fed from the store at each `sync`."""

    def __init__(self) -> None:
        self.phases = DurationHistogram(
            "lifecycle_deployment_phase_duration_seconds",
            "Time spent in each phase by finished deployments (from their stored phases)",
            "phase",
            DURATION_BUCKETS,
        )
        self.totals = DurationHistogram(
            "lifecycle_deployment_duration_seconds",
            "Time from deploy request to the end of the deployment, by result",
            "result",
            DURATION_BUCKETS,
        )
        self._seen: dict[str, datetime] = {}
        self._watermark: datetime | None = None
        self._lock = threading.Lock()

    def sync(self, session: Session) -> None:
        with self._lock:
            query = select(
                Deployment.id,
                Deployment.status,
                Deployment.phases,
                Deployment.created_at,
                Deployment.finished_at,
            ).where(Deployment.status.in_(FINISHED), Deployment.finished_at.is_not(None))
            if self._watermark is not None:
                query = query.where(Deployment.finished_at > self._watermark - LOOKBACK)
            for deployment_id, status, phases, created_at, finished_at in session.execute(query):
                if deployment_id in self._seen:
                    continue
                self._seen[deployment_id] = finished_at
                self._observe(status, phases or [], created_at, finished_at)
                if self._watermark is None or finished_at > self._watermark:
                    self._watermark = finished_at
            if self._watermark is not None:
                horizon = self._watermark - LOOKBACK
                self._seen = {key: moment for key, moment in self._seen.items() if moment > horizon}

    def _observe(
        self,
        status: DeploymentStatus,
        phases: list[dict[str, Any]],
        created_at: datetime,
        finished_at: datetime,
    ) -> None:
        for phase, seconds in phase_durations(phases, finished_at):
            self.phases.observe(phase, seconds)
        self.totals.observe(status.value, max(0.0, (finished_at - created_at).total_seconds()))

    def families(self) -> list[Metric]:
        with self._lock:
            return [self.phases.family(), self.totals.family()]


def count_by_status(session: Session, column: Any) -> dict[Any, int]:
    """{status: rows} for a status column, in one GROUP BY query."""
    return {status: count for status, count in session.execute(select(column, func.count()).group_by(column))}


class StoreCollector(Collector):
    """The lifecycle's own metrics, read from the store at scrape time (three queries)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.durations = DeploymentDurations()

    def collect(self) -> Iterator[Metric]:
        try:
            with self.db.session() as session:
                deployments = count_by_status(session, Deployment.status)
                jobs = count_by_status(session, Job.status)
                self.durations.sync(session)
        except SQLAlchemyError:
            logger.exception("metrics: the store cannot be read; only process metrics are reported")
            yield GaugeMetricFamily("lifecycle_store_up", "Whether the store could be read", value=0)
            return
        yield GaugeMetricFamily("lifecycle_store_up", "Whether the store could be read", value=1)
        total = CounterMetricFamily(
            "lifecycle_deployments", "Finished deployments, by result (done or failed)", labels=["result"]
        )
        for status in FINISHED:
            total.add_metric([status.value], deployments.get(status, 0))
        yield total
        yield GaugeMetricFamily(
            "lifecycle_deployments_in_progress",
            "Deployments running now",
            value=deployments.get(DeploymentStatus.IN_PROGRESS, 0),
        )
        by_status = GaugeMetricFamily("lifecycle_jobs", "Job versions, by status", labels=["status"])
        for job_status in JobStatus:
            by_status.add_metric([job_status.value], jobs.get(job_status, 0))
        yield by_status
        yield from self.durations.families()


class LifecycleMetrics:
    """A registry of its own: the store's metrics plus the process's (CPU, memory, fds, GC)."""

    def __init__(self, db: Database) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.store = StoreCollector(db)
        self.registry.register(self.store)

    def render(self) -> bytes:
        return generate_latest(self.registry)
