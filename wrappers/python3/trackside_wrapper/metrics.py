"""Prometheus metrics of the job: built-in request metrics plus the job's own `metrics()`."""

from __future__ import annotations

import contextlib
import logging
import math
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

disable_created_metrics()  # *_created series double the scrape and nobody reads them

_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class JobMetricsCollector(Collector):
    """Calls the job's `metrics()` at scrape time and exposes each entry as a gauge."""

    def __init__(self, source: Callable[[], Any]) -> None:
        self.source = source
        self._warned: set[str] = set()

    def _warn_once(self, key: str, message: str, *args: Any) -> None:
        if key not in self._warned:
            self._warned.add(key)
            logger.warning(message, *args)

    def collect(self) -> Iterator[Metric]:
        try:
            entries = self.source() or []
        except Exception:
            logger.exception("the job's metrics() raised; its metrics are left out of this scrape")
            return
        families: dict[str, GaugeMetricFamily] = {}
        label_names: dict[str, tuple[str, ...]] = {}
        for entry in entries:
            if not isinstance(entry, dict):
                self._warn_once(f"type:{type(entry)}", "metrics(): entries must be dicts, got %r", entry)
                continue
            name, value = entry.get("name"), entry.get("value")
            if value is None:
                continue
            if not isinstance(name, str) or not _NAME.match(name):
                self._warn_once(f"name:{name}", "metrics(): invalid metric name %r skipped", name)
                continue
            try:
                number = float(value)
            except (TypeError, ValueError):
                self._warn_once(f"value:{name}", "metrics(): value of %s is not a number: %r", name, value)
                continue
            labels = {str(k): str(v) for k, v in (entry.get("labels") or {}).items()}
            if any(not _LABEL.match(k) for k in labels):
                self._warn_once(f"labels:{name}", "metrics(): invalid label name in %s skipped", name)
                continue
            keys = tuple(sorted(labels))
            family = families.get(name)
            if family is None:
                family = GaugeMetricFamily(name, str(entry.get("description") or name), labels=keys)
                families[name] = family
                label_names[name] = keys
            elif label_names[name] != keys:
                self._warn_once(f"labelset:{name}", "metrics(): %s used with different label names", name)
                continue
            family.add_metric([labels[k] for k in keys], number if not math.isnan(number) else math.nan)
        yield from families.values()


class JobMetrics:
    def __init__(self, in_flight: Callable[[], float], queued: Callable[[], float]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        # process_* (RSS, CPU, fds) is part of the scrape too
        from prometheus_client import GC_COLLECTOR, PLATFORM_COLLECTOR, PROCESS_COLLECTOR

        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            with contextlib.suppress(ValueError):
                self.registry.register(collector)
        self.requests = Counter(
            "job_requests",
            "Job calls handled, by endpoint and status class (2XX, 4XX, 5XX)",
            ["endpoint", "status"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "job_request_duration_seconds",
            "Time from request to response of job calls, by endpoint",
            ["endpoint"],
            registry=self.registry,
            buckets=BUCKETS,
        )
        self.rejected = Counter(
            "job_rejected_requests",
            "Calls refused with 429 because the concurrency queue was full",
            registry=self.registry,
        )
        gauge = Gauge("job_requests_in_flight", "Job calls being processed now", registry=self.registry)
        gauge.set_function(in_flight)
        gauge = Gauge(
            "job_requests_queued", "Job calls waiting for a concurrency slot", registry=self.registry
        )
        gauge.set_function(queued)
        self.last_call_timestamp = 0.0
        gauge = Gauge(
            "job_last_call_timestamp_seconds",
            "Unix time of the last job call (0: none yet)",
            registry=self.registry,
        )
        gauge.set_function(lambda: self.last_call_timestamp)
        self.init_duration = Gauge(
            "job_init_duration_seconds",
            "Time taken to import the entrypoint and run its __init__",
            registry=self.registry,
        )
        self._request_children: dict[tuple[str, int], Any] = {}
        self._duration_children: dict[str, Any] = {}

    def attach_job_metrics(self, source: Callable[[], Any]) -> None:
        self.registry.register(JobMetricsCollector(source))

    def observe_call(self, endpoint: str, status: int, seconds: float) -> None:
        status_class = status // 100
        key = (endpoint, status_class)
        child = self._request_children.get(key)
        if child is None:
            child = self.requests.labels(endpoint, f"{status_class}XX")
            self._request_children[key] = child
        child.inc()
        hist = self._duration_children.get(endpoint)
        if hist is None:
            hist = self.duration.labels(endpoint)
            self._duration_children[endpoint] = hist
        hist.observe(seconds)
        self.last_call_timestamp = time.time()

    def render(self) -> bytes:
        return generate_latest(self.registry)
