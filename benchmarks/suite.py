"""One benchmark run: every selected server side by side, then cold starts, then the 429 scenario."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import servers
from .load import LoadResult, Wrk
from .processes import Cores, Server, ServerGroup, child_environment, cpu_seconds, rss_bytes
from .servers import ServerSpec

Log = Callable[[str], None]

WARM_REQUESTS = 20


@dataclass(frozen=True)
class Settings:
    duration_s: int = 5
    warmup_s: int = 1
    concurrency: tuple[int, ...] = (1, 8, 64)
    cold_starts: int = 5
    reject_concurrency: int = 64


@dataclass(frozen=True)
class Point:
    load: LoadResult
    cpu_s: float

    @property
    def cpu_ms_per_request(self) -> float | None:
        return self.cpu_s * 1000 / self.load.requests if self.load.requests else None

    @property
    def cpu_share(self) -> float:
        """Fraction of one core the server used while measured."""
        return self.cpu_s / self.load.duration_s if self.load.duration_s else 0.0


@dataclass
class ServerResult:
    spec: ServerSpec
    points: dict[int, Point] = field(default_factory=dict)
    cold_start_ms: list[float] = field(default_factory=list)
    idle_rss_bytes: int | None = None

    @property
    def cold_start_median_ms(self) -> float | None:
        return statistics.median(self.cold_start_ms) if self.cold_start_ms else None


@dataclass
class RejectResult:
    spec: ServerSpec
    point: Point

    @property
    def rejected(self) -> int:
        return self.point.load.count(429)

    @property
    def accepted(self) -> int:
        return self.point.load.count(200)

    @property
    def rejected_per_s(self) -> float:
        return self.rejected / self.point.load.duration_s if self.point.load.duration_s else 0.0

    @property
    def cpu_ms_per_429_upper_bound(self) -> float | None:
        # Everything the server did is charged to the 429s, the 200s' work included.
        return self.point.cpu_s * 1000 / self.rejected if self.rejected else None


@dataclass
class Results:
    settings: Settings
    cores: Cores
    servers: list[ServerResult]
    reject: RejectResult | None
    environment: dict[str, object]


class Suite:
    def __init__(
        self,
        settings: Settings,
        specs: list[ServerSpec],
        reject: ServerSpec | None,
        wrk: Wrk,
        cores: Cores,
        log_dir: Path,
        log: Log = print,
    ) -> None:
        self.settings = settings
        self.specs = specs
        self.reject_spec = reject
        self.wrk = wrk
        self.cores = cores
        self.log_dir = log_dir
        self.log = log
        self.env = child_environment()

    def run(self, environment: dict[str, object]) -> Results:
        results = [ServerResult(spec) for spec in self.specs]
        if results:
            self._throughput(results)
            self._cold_starts(results)
        reject = self._reject() if self.reject_spec else None
        return Results(self.settings, self.cores, results, reject, environment)

    def _group(self) -> ServerGroup:
        return ServerGroup(self.log_dir, self.cores.server)

    def _start(self, group: ServerGroup, spec: ServerSpec) -> Server:
        return group.start(spec.key, spec.command, spec.cwd, self.env)

    def _check_and_warm(self, server: Server, expect_status: int = 200) -> None:
        """A few calls, checked: a server that answers wrongly must not be measured."""
        for _ in range(WARM_REQUESTS):
            status, body = server.request("POST", servers.PERFORM_PATH, servers.REQUEST_BODY)
            if status != expect_status:
                raise server.fail(f"POST {servers.PERFORM_PATH} answered {status}: {body[:300]!r}")
            if json.loads(body) != servers.EXPECTED_RESULT:
                raise server.fail(
                    f"POST {servers.PERFORM_PATH} returned {body[:300]!r}, expected {servers.EXPECTED_RESULT}"
                )

    def _measure(self, server: Server, concurrency: int, count_statuses: bool = False) -> Point:
        url = f"http://127.0.0.1:{server.port}{servers.PERFORM_PATH}"
        if self.settings.warmup_s:
            self.wrk.run(url, servers.REQUEST_BODY, concurrency, self.settings.warmup_s, count_statuses)
        before = cpu_seconds(server.pid)
        load = self.wrk.run(url, servers.REQUEST_BODY, concurrency, self.settings.duration_s, count_statuses)
        cpu = cpu_seconds(server.pid) - before
        return Point(load, cpu)

    def _throughput(self, results: list[ServerResult]) -> None:
        """All servers run at once (idle ones cost nothing) and are measured in turn at each
        concurrency, so that drift in the machine's speed touches all of them alike."""
        with self._group() as group:
            running: list[tuple[ServerResult, Server]] = []
            for result in results:
                server = self._start(group, result.spec)
                server.wait_ready()
                self._check_and_warm(server)
                time.sleep(0.2)
                result.idle_rss_bytes = rss_bytes(server.pid)
                self.log(f"{result.spec.title}: ready, idle RSS {result.idle_rss_bytes / 2**20:.1f} MiB")
                running.append((result, server))
            for concurrency in self.settings.concurrency:
                for result, server in running:
                    point = self._measure(server, concurrency)
                    result.points[concurrency] = point
                    load = point.load
                    self.log(
                        f"{result.spec.title}: c={concurrency:<3} {load.rps:9.0f} req/s  "
                        f"p50 {load.p50_ms:7.2f} ms  p99 {load.p99_ms:7.2f} ms  "
                        f"CPU {point.cpu_ms_per_request or 0:.3f} ms/req"
                        + (f"  non-2xx {load.non_2xx}" if load.non_2xx else "")
                    )

    def _cold_starts(self, results: list[ServerResult]) -> None:
        """Process start to the first 200 from /ready, servers interleaved round by round. The
        throughput phase ran first, so bytecode caches are already written."""
        with self._group() as group:
            for _ in range(self.settings.cold_starts):
                for result in results:
                    server = self._start(group, result.spec)
                    result.cold_start_ms.append(server.wait_ready() * 1000)
                    group.stop(server)
        for result in results:
            samples = ", ".join(f"{ms:.0f}" for ms in result.cold_start_ms)
            self.log(
                f"{result.spec.title}: cold start median {result.cold_start_median_ms:.0f} ms ({samples})"
            )

    def _reject(self) -> RejectResult:
        assert self.reject_spec is not None
        with self._group() as group:
            server = self._start(group, self.reject_spec)
            server.wait_ready()
            self._check_and_warm(server)
            point = self._measure(server, self.settings.reject_concurrency, count_statuses=True)
        result = RejectResult(self.reject_spec, point)
        self.log(
            f"{self.reject_spec.title}: c={self.settings.reject_concurrency}: "
            f"{result.rejected_per_s:.0f} 429/s, {result.accepted} x 200, "
            f"CPU <= {result.cpu_ms_per_429_upper_bound or 0:.3f} ms per 429"
        )
        return result
