"""End to end: `python -m benchmarks --lifecycle` with tiny settings runs the deploy, fleet and
listing sections against a real `trackside up` and writes every section of the JSON results.
Counts are checked, never timings: this machine is shared."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.benchmarks.harness import PHASES, processes_mentioning, run_harness


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_lifecycle_sections_run_and_leave_nothing_behind(tmp_path: Path) -> None:
    work = tmp_path / "work"  # where run_harness points the harness
    done, output = run_harness(
        tmp_path,
        "--lifecycle",
        "--quick",
        "--warm-deploys",
        "2",
        "--fleet-size",
        "2",
        "--job-versions",
        "30",
        "--listing-requests",
        "5",
    )
    for heading in ("Deploy of sample-jobs/adder", "adder jobs running at once", "GET /lifecycle/api/v1/job"):
        assert heading in done.stdout
    assert "Lifecycle targets" in done.stdout
    assert "Throughput and latency" not in done.stdout  # the wrapper part was not asked for

    results = json.loads(output.read_text())
    assert set(results) == {"lifecycle"}
    lifecycle = results["lifecycle"]
    assert lifecycle["settings"]["sections"] == ["deploy", "fleet", "listing"]

    deploy = lifecycle["deploy"]
    assert deploy["cold"]["environment_reused"] is False
    assert list(deploy["cold"]["phases_s"]) == PHASES
    assert deploy["uv_cache_mib_after_cold"] > 0  # the cache started empty and the build filled it
    assert len(deploy["warm"]) == 2
    for warm in deploy["warm"]:
        assert warm["environment_reused"] is True
        assert list(warm["phases_s"]) == PHASES
    assert deploy["warm_median_s"] is not None
    assert list(deploy["warm_phase_medians_s"]) == PHASES

    fleet = lifecycle["fleet"]
    assert fleet["jobs"] == 2 and fleet["job_processes"] == 2
    assert fleet["jobs_rss_mib"] > 0 and fleet["lifecycle_rss_mib"] > 0

    listing = lifecycle["listing"]
    assert listing["versions"] == 30
    assert listing["requests"] == 5 and len(listing["samples_ms"]) == 5
    assert listing["body_bytes"] > 0

    assert [lc["name"] for lc in lifecycle["lifecycles"]] == ["deploy", "listing"]
    assert [lc["job_groups"] for lc in lifecycle["lifecycles"]] == [3, 0]  # adder + the fleet
    assert all(lc["left_running"] == 0 for lc in lifecycle["lifecycles"])
    assert [r["value"] is not None for r in lifecycle["ratios"]] == [True, True, True]

    # every lifecycle, job and builder process ran with paths under tmp_path; none is left
    assert processes_mentioning(str(tmp_path)) == []
    # the run's data dirs and uv cache are removed; the lifecycles' logs are kept
    assert not list(work.glob("lifecycle-*"))
    assert list(work.glob("logs/*/lifecycle-deploy.log"))
