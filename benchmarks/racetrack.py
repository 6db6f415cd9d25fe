"""Racetrack's own job runner (`racetrack-job-runner` on PyPI) in a venv of its own, built with uv.

Its CLI (racetrack_job_wrapper/main.py in the package) is
`racetrack_job_runner run ENTRYPOINT_PATH [CLASS] [--manifest-path P] [--port N]`: it imports
ENTRYPOINT_PATH, reads job.yaml from the working directory, and serves on 0.0.0.0:N with
uvicorn's defaults (uvloop and httptools when installed, as they are with this package).
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

DEFAULT_SPEC = "racetrack-job-runner==1.18.0"


class RacetrackUnavailable(Exception):
    pass


@dataclass(frozen=True)
class RacetrackRunner:
    version: str
    executable: Path

    def command(self, entrypoint_file: str) -> list[str]:
        """Serve ENTRYPOINT_FILE (relative to the job directory, the working directory)."""
        return [str(self.executable), "run", entrypoint_file, "--port", "{port}"]


def find_uv(repo: Path) -> Path:
    candidates = [repo / ".tools" / "bin" / "uv", Path(sys.prefix) / "bin" / "uv"]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    from shutil import which

    found = which("uv")
    if found:
        return Path(found)
    raise RacetrackUnavailable("uv not found (expected .tools/bin/uv): run `make setup` first")


def ensure_runner(repo: Path, work_dir: Path, spec: str = DEFAULT_SPEC) -> RacetrackRunner:
    """A venv under work_dir with `spec` installed; reused while the spec stays the same."""
    venv = work_dir / "racetrack-venv"
    marker = venv / ".installed-spec"
    work_dir.mkdir(parents=True, exist_ok=True)
    # Two harness runs at once (a test next to `make bench`) must not build the venv together.
    with open(work_dir / "racetrack-venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (marker.is_file() and marker.read_text() == spec and (venv / "bin" / "python").exists()):
            _install(find_uv(repo), venv, spec)
            marker.write_text(spec)
    python = venv / "bin" / "python"
    version = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('racetrack-job-runner'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return RacetrackRunner(version, venv / "bin" / "racetrack_job_runner")


def _install(uv: Path, venv: Path, spec: str) -> None:
    print(f"installing {spec} into {venv} with uv ...", flush=True)
    # Bytecode is compiled at install time so that cold starts do not include compiling.
    env = {**os.environ, "UV_COMPILE_BYTECODE": "1", "UV_PYTHON_DOWNLOADS": "never"}
    env.pop("VIRTUAL_ENV", None)
    steps = [
        [str(uv), "venv", "--quiet", "--clear", "--python", sys.executable, str(venv)],
        [str(uv), "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"), spec],
    ]
    for step in steps:
        done = subprocess.run(step, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RacetrackUnavailable(
                f"`{' '.join(step)}` failed ({done.returncode}):\n{done.stderr[-3000:]}"
            )
