"""End to end: `python -m benchmarks --only cli --quick` times `trackside --help`, `trackside list`
and `trackside deploy` (cold, then warm beside a warm API deploy) against a real `trackside up`,
and writes the `cli` section of the JSON results. Counts are checked, never timings: this machine
is shared."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.benchmarks.harness import PHASES, processes_mentioning, run_harness


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_cli_section_runs_and_leaves_nothing_behind(tmp_path: Path) -> None:
    work = tmp_path / "work"  # where run_harness points the harness
    done, output = run_harness(tmp_path, "--only", "cli", "--quick", "--cli-runs", "3")
    for heading in (
        "Start to exit, ms (median of 3 runs",
        "Biggest cumulative imports of `python -X importtime -m trackside list`",
        "`trackside deploy DIR` of sample-jobs/adder",
        "CLI against the API, same run",
        "CLI targets",
    ):
        assert heading in done.stdout
    assert "Throughput and latency" not in done.stdout  # the wrapper part was not asked for
    assert "Lifecycle targets" not in done.stdout  # nor the lifecycle part

    results = json.loads(output.read_text())
    assert set(results) == {"cli"}
    cli = results["cli"]
    assert cli["settings"] == {"startup_runs": 3, "importtime_runs": 1, "warm_deploys": 1}

    assert list(cli["startup"]) == ["python -c pass", "trackside --help", "trackside list"]
    for label, startup in cli["startup"].items():
        assert startup["runs"] == 3, label
        assert len(startup["wall_ms"]["samples"]) == 3 and len(startup["cpu_ms"]["samples"]) == 3, label
        assert all(sample > 0 for sample in startup["wall_ms"]["samples"]), label
    assert cli["startup"]["trackside --help"]["target_ms"] == 300
    assert cli["startup"]["python -c pass"]["target_ms"] is None

    imports = cli["imports"]
    assert imports["command"] == "python -X importtime -m trackside list"
    assert len(imports["top_cumulative"]) == 5
    cumulative = [entry["cumulative_ms"] for entry in imports["top_cumulative"]]
    assert cumulative == sorted(cumulative, reverse=True)
    assert any(entry["module"].startswith("trackside") for entry in imports["top_cumulative"])
    assert imports["modules"] > 5 and imports["total_ms"] >= cumulative[0]

    deploy = cli["deploy"]
    cold = deploy["cold"]
    assert cold["environment_reused"] is False
    assert list(cold["phases_s"]) == PHASES
    # the CLI's lines come in order: packed, submitted, the deployment done, the summary, exit
    assert 0 < cold["packed_s"] <= cold["submitted_s"] <= cold["done_seen_s"] <= cold["summary_s"]
    assert cold["summary_s"] <= cold["wall_s"]
    assert [warm["environment_reused"] for warm in deploy["warm"]] == [True]
    assert [api["environment_reused"] for api in deploy["api_warm"]] == [True]
    assert (
        len(
            {
                cold["deployment_id"],
                deploy["warm"][0]["deployment_id"],
                deploy["api_warm"][0]["deployment_id"],
            }
        )
        == 3
    )
    # only the same-platform comparison: the lifecycle part did not run
    assert [c["name"] for c in deploy["compared"]] == ["warm, same platform"]

    assert cli["lifecycle"]["job_groups"] == 1 and cli["lifecycle"]["left_running"] == 0
    assert [r["value"] is not None for r in cli["ratios"]] == [True, True, True, True]

    # the platform, the job and every CLI process ran with paths under tmp_path; none is left
    assert processes_mentioning(str(tmp_path)) == []
    # the run's data dir, uv cache and job directory are removed; the lifecycle's log is kept
    assert not list(work.glob("cli-*"))
    assert list(work.glob("logs/*/lifecycle-cli.log"))
