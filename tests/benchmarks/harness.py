"""What the benchmark smoke tests share: where the repository is, the harness's exit status for a
missing prerequisite, the deploy phases it reports, and a check that nothing it started is left."""

from __future__ import annotations

import os
from pathlib import Path

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
