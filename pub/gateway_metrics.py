"""The gateway's Prometheus metrics, in a registry of its own (served at /pub/metrics).

On the request path a metric is a plain integer in a dict keyed by its labels (the event loop's
thread is the only writer, so no locks): a request costs two dict lookups and a few additions.
Prometheus families are built from these numbers at scrape time. Requests that name no known
job count under job="" so that callers cannot create series at will.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"

_CLASSES = ("1xx", "1xx", "2xx", "3xx", "4xx", "5xx")
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def status_class(status: int) -> str:
    index = status // 100
    return _CLASSES[index] if 0 <= index < len(_CLASSES) else "5xx"


class _Histogram:
    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)  # the last one: above the highest bound
        self.total = 0.0


class GatewayMetrics(Collector):
    def __init__(self, auth_cache_stats: Callable[[], tuple[int, int]] | None = None) -> None:
        self.in_flight = 0
        self._requests: dict[tuple[str, str, int], int] = {}
        self._durations: dict[str, _Histogram] = {}
        self._upstream_errors: dict[tuple[str, str, str], int] = {}
        self._auth: dict[str, int] = {}
        self._auth_cache_stats = auth_cache_stats
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    # ---- the request path -------------------------------------------------------------------

    def observe(self, job: str, version: str, status: int, seconds: float) -> None:
        key = (job, version, status // 100)
        requests = self._requests
        requests[key] = requests.get(key, 0) + 1
        histogram = self._durations.get(job)
        if histogram is None:
            histogram = self._durations[job] = _Histogram()
        histogram.counts[bisect_left(BUCKETS, seconds)] += 1
        histogram.total += seconds

    def upstream_error(self, job: str, version: str, kind: str) -> None:
        key = (job, version, kind)
        self._upstream_errors[key] = self._upstream_errors.get(key, 0) + 1

    def auth(self, result: str) -> None:
        self._auth[result] = self._auth.get(result, 0) + 1

    # ---- scrapes ----------------------------------------------------------------------------

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def collect(self) -> Iterable[Any]:
        requests = CounterMetricFamily(
            "pub_requests",
            "Requests through the gateway by job, version and status class",
            labels=["job", "version", "status"],
        )
        for (job, version, klass), count in list(self._requests.items()):
            requests.add_metric([job, version, status_class(klass * 100)], count)
        yield requests

        durations = HistogramMetricFamily(
            "pub_request_duration_seconds",
            "Time from the request to the end of the response, by job",
            labels=["job"],
        )
        for job, histogram in list(self._durations.items()):
            cumulative = 0
            buckets: list[tuple[str, float]] = []
            for bound, count in zip((*(str(b) for b in BUCKETS), "+Inf"), histogram.counts, strict=True):
                cumulative += count
                buckets.append((bound, cumulative))
            durations.add_metric([job], buckets, histogram.total)
        yield durations

        errors = CounterMetricFamily(
            "pub_upstream_errors",
            "Failed attempts to reach a job (refused, reset, timeout, invalid response)",
            labels=["job", "version", "kind"],
        )
        for (job, version, kind), count in list(self._upstream_errors.items()):
            errors.add_metric([job, version, kind], count)
        yield errors

        auth = CounterMetricFamily(
            "pub_auth_decisions",
            "Authorisation outcomes at the gateway (public: no decision needed)",
            labels=["result"],
        )
        for result, count in list(self._auth.items()):
            auth.add_metric([result], count)
        yield auth

        in_flight = GaugeMetricFamily("pub_requests_in_flight", "Requests being served")
        in_flight.add_metric([], self.in_flight)
        yield in_flight

        if self._auth_cache_stats is not None:
            try:
                hits, misses = self._auth_cache_stats()
            except Exception:  # the registry could not tell: leave the series out of this scrape
                return
            hit = CounterMetricFamily(
                "pub_auth_cache_hits", "Authorisation decisions answered from the cache"
            )
            hit.add_metric([], hits)
            yield hit
            miss = CounterMetricFamily(
                "pub_auth_cache_misses", "Authorisation decisions that had to be made (store or lifecycle)"
            )
            miss.add_metric([], misses)
            yield miss
