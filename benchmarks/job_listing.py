"""Job listing: `GET /lifecycle/api/v1/job` with many registered versions.

The versions are written straight into the lifecycle's database (its store API) before the
lifecycle starts: deploying a thousand jobs would take far longer than listing them. They are
`stopped` and have no build, so the lifecycle neither restarts them nor changes their status.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .lifecycle import LifecycleProcess

VERSIONS_PER_FAMILY = 10
WARMUP_REQUESTS = 10


def seed_versions(data_dir: Path, count: int) -> float:
    """Register `count` job versions (families of VERSIONS_PER_FAMILY) in the SQLite database of
    `data_dir`, which must not be in use; returns the seconds it took."""
    from lifecycle.config import DATABASE_FILE, ensure_private_dir
    from lifecycle.store import jobs as job_store
    from lifecycle.store.database import Database
    from lifecycle.store.models import JobStatus
    from trackside.manifest import manifest_to_dict, manifest_to_yaml, parse_manifest

    started = time.perf_counter()
    ensure_private_dir(data_dir)
    db = Database(f"sqlite:///{data_dir / DATABASE_FILE}")
    try:
        with db.session() as session:
            for i in range(count):
                family, minor = divmod(i, VERSIONS_PER_FAMILY)
                manifest = parse_manifest(
                    {
                        "name": f"listed-{family:04d}",
                        "owner_email": "bench@example.com",
                        "jobtype": "python3:latest",
                        "version": f"1.{minor}.0",
                        "git": {
                            "remote": "https://github.com/trackside/trackside",
                            "directory": "sample-jobs/adder",
                        },
                        "jobtype_extra": {"entrypoint_path": "entrypoint.py"},
                        "labels": {"team": "benchmarks"},
                    }
                )
                job_store.create_job(
                    session,
                    name=manifest.name,
                    version=manifest.version,
                    manifest_yaml=manifest_to_yaml(manifest),
                    manifest=manifest_to_dict(manifest),
                    owner_email=manifest.owner_email,
                    deployed_by="bench",
                    status=JobStatus.STOPPED,
                    labels=dict(manifest.labels),
                )
    finally:
        db.dispose()
    return time.perf_counter() - started


def percentile(samples: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(samples)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class ListingResult:
    versions: int  # versions in the answer (checked against what was seeded)
    seed_s: float
    samples_ms: tuple[float, ...]
    body_bytes: int

    @property
    def p50_ms(self) -> float:
        return percentile(list(self.samples_ms), 50)

    @property
    def p99_ms(self) -> float:
        return percentile(list(self.samples_ms), 99)

    @property
    def mean_ms(self) -> float:
        return statistics.fmean(self.samples_ms)

    @property
    def max_ms(self) -> float:
        return max(self.samples_ms)


class ListingMismatch(Exception):
    pass


def measure_listing(
    lifecycle: LifecycleProcess, expected: int, requests: int, seed_s: float
) -> ListingResult:
    """`requests` sequential calls on one keep-alive connection, after WARMUP_REQUESTS unmeasured
    ones; each from sending the request to having read the whole body (not parsed)."""
    listed = lifecycle.client.get("/job")
    listed.raise_for_status()
    versions = len(listed.json())
    if versions != expected:
        raise ListingMismatch(f"GET /job listed {versions} versions, {expected} were registered")
    for _ in range(WARMUP_REQUESTS):
        lifecycle.client.get("/job").raise_for_status()
    samples = []
    size = 0
    for _ in range(requests):
        started = time.perf_counter()
        response = lifecycle.client.get("/job")
        body = response.read()
        samples.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
        size = len(body)
    return ListingResult(versions, seed_s, tuple(samples), size)
