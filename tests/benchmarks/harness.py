"""What the benchmark smoke tests share: where the repository is, the harness's exit status for a
missing prerequisite, the deploy phases it reports, and a check that nothing it started is left."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
IN_CI = os.environ.get("CI", "").lower() == "true"
# benchmarks/__main__.py exits with this when uv or the package index is not available
EXIT_PREREQUISITE = 3
PHASES = [
    "queued",
    "fetching the source code",
    "building the environment",
    "starting the job",
    "initialising the entrypoint",
    "checking the input examples",
    "done",
]


def processes_mentioning(text: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(f"{entry.name}: {cmdline}")
    return found


def run_harness(
    tmp_path: Path, *args: str, timeout: float = 140
) -> tuple[subprocess.CompletedProcess[str], Path]:
    """`python -m benchmarks ARGS` with its work dir and JSON results under `tmp_path`; skips here
    (fails under CI) when the harness lacks a prerequisite, fails on any other non-zero exit.
    The finished run and the results file."""
    output = tmp_path / "results.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            *args,
            "--work-dir",
            str(tmp_path / "work"),
            "--output",
            str(output),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if done.returncode == EXIT_PREREQUISITE and not IN_CI:
        pytest.skip(f"the harness lacks a prerequisite here: {done.stderr.strip()}")
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    return done, output
