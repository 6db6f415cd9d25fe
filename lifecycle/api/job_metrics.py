"""A job version's metrics in brief, read from its replicas' own `/metrics` (the wrapper's
Prometheus counters, since each replica started).

`GET /job/{name}/{version}/metrics-summary` (read_job; `latest`/`1.x` resolve) answers::

    {"name", "version", "replicas": 2, "replicas_read": 2, "errors": [],
     "calls": 120, "status_2xx": 110, "status_4xx": 8, "status_5xx": 2, "rejected": 0,
     "latency_p50_ms": 1.2, "latency_p95_ms": 9.8, "in_flight": 0, "queued": 0,
     "cold_start_s": 0.41, "last_call_time": 1700000000.0,
     "endpoints": [{"endpoint", "calls", "status_4xx", "status_5xx", "latency_p50_ms", "latency_p95_ms"}]}

Latencies are estimated from the duration histogram's buckets as Prometheus'
`histogram_quantile` does (linear within a bucket), over all replicas; `cold_start_s` is the
slowest replica's import + `__init__` time. A replica that cannot be read is named in `errors`.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi import APIRouter, Request
from prometheus_client.parser import text_string_to_metric_families

from lifecycle.store.models import Scope

from .dependencies import CurrentSubject, control_plane, require
from .jobs import find_job

router = APIRouter(tags=["jobs"])

SCRAPE_TIMEOUT_S = 2.0
# one client for every scrape: making one costs more than a scrape (its TLS context), and it
# keeps the connections to the jobs open
_client: httpx.Client | None = None


def _scraper() -> httpx.Client:
    global _client
    if _client is None:
        _client = httpx.Client(timeout=SCRAPE_TIMEOUT_S, trust_env=False)
    return _client


@dataclass
class _Endpoint:
    calls: float = 0.0
    by_status: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    buckets: dict[float, float] = field(default_factory=lambda: defaultdict(float))


@dataclass
class MetricsSummary:
    endpoints: dict[str, _Endpoint] = field(default_factory=lambda: defaultdict(_Endpoint))
    rejected: float = 0.0
    in_flight: float = 0.0
    queued: float = 0.0
    cold_start_s: float | None = None
    last_call: float = 0.0

    def add(self, text: str) -> None:
        """One replica's scrape."""
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                name, labels, value = sample.name, sample.labels, sample.value
                if name == "job_requests_total":
                    entry = self.endpoints[labels.get("endpoint", "")]
                    entry.calls += value
                    entry.by_status[labels.get("status", "")] += value
                elif name == "job_request_duration_seconds_bucket":
                    self.endpoints[labels.get("endpoint", "")].buckets[float(labels["le"])] += value
                elif name == "job_rejected_requests_total":
                    self.rejected += value
                elif name == "job_requests_in_flight":
                    self.in_flight += value
                elif name == "job_requests_queued":
                    self.queued += value
                elif name == "job_init_duration_seconds" and value > 0:
                    self.cold_start_s = max(self.cold_start_s or 0.0, value)
                elif name == "job_last_call_timestamp_seconds":
                    self.last_call = max(self.last_call, value)

    def to_dict(self) -> dict[str, Any]:
        total_buckets: dict[float, float] = defaultdict(float)
        for entry in self.endpoints.values():
            for bound, count in entry.buckets.items():
                total_buckets[bound] += count

        def status(entries: list[_Endpoint], key: str) -> int:
            return int(sum(e.by_status.get(key, 0.0) for e in entries))

        entries = list(self.endpoints.values())
        return {
            "calls": int(sum(e.calls for e in entries)),
            "status_2xx": status(entries, "2XX"),
            "status_4xx": status(entries, "4XX"),
            "status_5xx": status(entries, "5XX"),
            "rejected": int(self.rejected),
            "latency_p50_ms": _ms(quantile(0.5, total_buckets)),
            "latency_p95_ms": _ms(quantile(0.95, total_buckets)),
            "in_flight": int(self.in_flight),
            "queued": int(self.queued),
            "cold_start_s": None if self.cold_start_s is None else round(self.cold_start_s, 3),
            "last_call_time": self.last_call or None,
            "endpoints": [
                {
                    "endpoint": endpoint,
                    "calls": int(entry.calls),
                    "status_4xx": status([entry], "4XX"),
                    "status_5xx": status([entry], "5XX"),
                    "latency_p50_ms": _ms(quantile(0.5, entry.buckets)),
                    "latency_p95_ms": _ms(quantile(0.95, entry.buckets)),
                }
                for endpoint, entry in sorted(self.endpoints.items())
                if entry.calls
            ],
        }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def quantile(q: float, buckets: dict[float, float]) -> float | None:
    """Prometheus' histogram_quantile over cumulative buckets {upper bound: count}; None without
    observations. Past the highest finite bound the answer is that bound."""
    ordered = sorted(buckets.items())
    if not ordered or ordered[-1][1] <= 0:
        return None
    total = ordered[-1][1]
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in ordered:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return lower_bound


@router.get("/job/{name}/{version}/metrics-summary")
def metrics_summary(name: str, version: str, request: Request, subject: CurrentSubject) -> dict[str, Any]:
    require(request, subject, Scope.READ_JOB, family=name)
    job = find_job(request, name, version)
    replicas = control_plane(request).runner.serving(job.name, job.version)
    summary = MetricsSummary()
    errors = []
    read = 0
    client = _scraper()
    for index, replica in enumerate(replicas):
        try:
            response = client.get(replica.address + "/metrics")
            response.raise_for_status()
            summary.add(response.text)
            read += 1
        except (httpx.HTTPError, ValueError) as e:
            errors.append(f"replica {index}: {e.__class__.__name__}: {e}")
    return {
        "name": job.name,
        "version": job.version,
        "replicas": len(replicas),
        "replicas_read": read,
        "errors": errors,
        **summary.to_dict(),
    }
