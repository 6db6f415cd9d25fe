"""End to end: `python -m benchmarks --quick` runs all four servers and the 429 scenario and writes
every section of the JSON results. Counts are checked, never timings: this machine is shared."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
IN_CI = os.environ.get("CI", "").lower() == "true"
# benchmarks/__main__.py exits with this when wrk, uv or PyPI is not available
EXIT_PREREQUISITE = 3


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_quick_run_measures_every_server_and_the_429_scenario(tmp_path: Path) -> None:
    if shutil.which("wrk") is None and not IN_CI:
        pytest.skip("wrk is not installed (`make bench` installs it; CI must have it)")
    output = tmp_path / "results.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--quick",
            "--duration",
            "1",
            "--concurrency",
            "8",
            "--output",
            str(output),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=170,
    )
    if done.returncode == EXIT_PREREQUISITE and not IN_CI:
        pytest.skip(f"the harness lacks a prerequisite here: {done.stderr.strip()}")
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert "Ratios and targets" in done.stdout

    results = json.loads(output.read_text())
    assert set(results["servers"]) == {"a", "b", "c", "d"}
    for key, server in results["servers"].items():
        [point] = server["points"]
        assert point["concurrency"] == 8
        assert point["requests"] > 0, key
        assert point["non_2xx"] == 0 and point["socket_errors"] == 0, (key, point)
        assert point["server_cpu_s"] > 0, key
        assert len(server["cold_start_ms"]["samples"]) == 1, key
        assert server["idle_rss_mib"] > 0, key

    reject = results["reject429"]
    assert reject["rejected"] > 0 and reject["accepted"] > 0, reject
    assert reject["statuses"].keys() <= {"200", "429"}, reject["statuses"]
    assert reject["cpu_ms_per_429_upper_bound"] is not None

    assert results["environment"]["racetrack_runner"]["version"]
    assert "racetrack_job_runner run" in results["servers"]["d"]["command"]
    assert len(results["ratios"]) == 6
    assert all(ratio["value"] is not None for ratio in results["ratios"])
