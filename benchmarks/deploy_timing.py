"""Deploy timing: `sample-jobs/adder` from a local git repository (file:// remote) to `running`,
with the duration of each phase the lifecycle recorded for the deployment."""

from __future__ import annotations

import contextlib
import os
import re
import statistics
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .servers import REPO

if TYPE_CHECKING:
    from .lifecycle import LifecycleProcess

ADDER_ENTRYPOINT = REPO / "sample-jobs" / "adder" / "entrypoint.py"
# The line a warm redeploy changes: the input example, which the lifecycle calls before `done`,
# so the new code is what answers it.
EXAMPLE_LINE = 'return {"numbers": [40, 2]}'
POLL_INTERVAL_S = 0.02
_UV_SUMMARY = re.compile(
    r"((Resolved|Prepared|Installed|Uninstalled|Audited) \d+ packages?|Bytecode compiled \d+ files?) in "
)
DEPLOY_TIMEOUT_S = 300.0

# Commits do not depend on the user's git configuration.
_GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_AUTHOR_NAME": "Trackside Benchmarks",
    "GIT_AUTHOR_EMAIL": "bench@trackside.invalid",
    "GIT_COMMITTER_NAME": "Trackside Benchmarks",
    "GIT_COMMITTER_EMAIL": "bench@trackside.invalid",
    "GIT_TERMINAL_PROMPT": "0",
    "LC_ALL": "C",
}


class DeployFailed(Exception):
    """A deployment ended `failed` or did not finish in time; the message says why."""


# ---- the job's git repository -----------------------------------------------------------------


def _git(repo: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")} | _GIT_ENV
    done = subprocess.run(
        ["git", "-C", str(repo), *args], env=env, capture_output=True, text=True, timeout=30, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed in {repo}:\n{done.stdout}{done.stderr}")
    return done.stdout.strip()


@dataclass
class JobRepo:
    """A local repository holding the adder job, deployed through its file:// URL."""

    path: Path
    requirement: str
    revision: int = 2

    @classmethod
    def create(cls, path: Path, requirement: str) -> JobRepo:
        if EXAMPLE_LINE not in ADDER_ENTRYPOINT.read_text():
            raise RuntimeError(f"{ADDER_ENTRYPOINT} no longer has the line `{EXAMPLE_LINE}` to change")
        path.mkdir(parents=True, exist_ok=True)
        _git(path, "init", "--quiet", "--initial-branch=master")
        repo = cls(path, requirement)
        repo._commit(
            {"entrypoint.py": ADDER_ENTRYPOINT.read_text(), "requirements.txt": requirement + "\n"},
            "adder from sample-jobs",
        )
        return repo

    @property
    def url(self) -> str:
        return self.path.resolve().as_uri()

    def change_one_line(self) -> None:
        """Commit a new revision of the entrypoint that differs from the last in one line."""
        self.revision += 1
        line = EXAMPLE_LINE.replace("2]", f"{self.revision}]")
        source = ADDER_ENTRYPOINT.read_text().replace(EXAMPLE_LINE, line)
        self._commit({"entrypoint.py": source}, f"revision {self.revision}")

    def _commit(self, files: Mapping[str, str], message: str) -> None:
        for name, content in files.items():
            (self.path / name).write_text(content)
        _git(self.path, "add", "--all")
        _git(self.path, "commit", "--quiet", "-m", message)

    def manifest(self, name: str = "adder", version: str = "1.0.0") -> dict[str, Any]:
        return {
            "name": name,
            "owner_email": "bench@example.com",
            "jobtype": "python3:latest",
            "version": version,
            "git": {"remote": self.url},
            "jobtype_extra": {"entrypoint_path": "entrypoint.py", "requirements_path": "requirements.txt"},
        }


# ---- one timed deployment ---------------------------------------------------------------------


@dataclass(frozen=True)
class PhaseTime:
    name: str
    seconds: float


@dataclass(frozen=True)
class DeployTiming:
    deployment_id: str
    # request sent until the deployment is `done` and the job `running` (the harness's clock,
    # polled every POLL_INTERVAL_S)
    total_s: float
    # from the lifecycle's clock: "queued" (request stored until the first phase), each phase
    # until the next one starts, and "done" (the last phase until the deployment was finished)
    phases: tuple[PhaseTime, ...]
    environment_reused: bool
    # uv's summary lines from the build log ("Resolved/Prepared/Installed N packages in T")
    uv_summary: tuple[str, ...] = ()

    def phase(self, name: str) -> float | None:
        return next((p.seconds for p in self.phases if p.name == name), None)


def _when(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def phase_times(deployment: Mapping[str, Any]) -> tuple[PhaseTime, ...]:
    """Durations of the phases in a `GET /deploy/{id}` answer (phases: [{name, started_at}])."""
    phases: list[dict[str, str]] = list(deployment.get("phases") or [])
    if not phases:
        return ()
    starts = [_when(p["started_at"]) for p in phases]
    ends = [*starts[1:], deployment.get("finish_time") or starts[-1]]
    out = []
    created = deployment.get("create_time")
    if created is not None:
        out.append(PhaseTime("queued", max(0.0, starts[0] - float(created))))
    out += [
        PhaseTime(p["name"], max(0.0, float(end) - start))
        for p, start, end in zip(phases, starts, ends, strict=True)
    ]
    return tuple(out)


def timed_deploy(lifecycle: LifecycleProcess, manifest: dict[str, Any], force: bool) -> DeployTiming:
    started = time.perf_counter()
    deployment_id = lifecycle.deploy(manifest, force=force)
    deployment = wait_deployed(lifecycle, deployment_id, started)
    name, version = manifest["name"], manifest["version"]
    while True:
        job = lifecycle.job(name, version)
        if job.get("status") == "running":
            break
        if time.perf_counter() - started > DEPLOY_TIMEOUT_S:
            raise DeployFailed(
                f"{name} {version} was not running {DEPLOY_TIMEOUT_S:.0f} s after its deploy: {job}"
            )
        time.sleep(POLL_INTERVAL_S)
    total = time.perf_counter() - started
    log = lifecycle.build_log(name, version, deployment_id)
    return DeployTiming(
        deployment_id,
        total,
        phase_times(deployment),
        "environment reused from cache" in log,
        tuple(line.strip() for line in log.splitlines() if _UV_SUMMARY.match(line.strip())),
    )


def wait_deployed(
    lifecycle: LifecycleProcess, deployment_id: str, started: float, timeout_s: float = DEPLOY_TIMEOUT_S
) -> dict[str, Any]:
    """Poll the deployment until it is done; DeployFailed (with its error and build log) otherwise."""
    while True:
        deployment = lifecycle.deployment(deployment_id)
        status = deployment.get("status")
        if status == "done":
            return deployment
        if status != "in_progress":
            log = lifecycle.build_log(deployment["job_name"], deployment["job_version"], deployment_id)
            tail = "\n".join(log.splitlines()[-20:])
            raise DeployFailed(
                f"deployment {deployment_id} {status} in '{deployment.get('phase')}': "
                f"{deployment.get('error')}\n--- build log (tail) ---\n{tail}"
            )
        if time.perf_counter() - started > timeout_s:
            raise DeployFailed(f"deployment {deployment_id} still in progress after {timeout_s:.0f} s")
        time.sleep(POLL_INTERVAL_S)


# ---- the scenario -----------------------------------------------------------------------------


@dataclass(frozen=True)
class DeployResult:
    requirement: str
    cold: DeployTiming
    warm: tuple[DeployTiming, ...]
    uv_cache_bytes_after_cold: int  # the cache was empty before the cold deploy

    @property
    def warm_median_s(self) -> float | None:
        return statistics.median(t.total_s for t in self.warm) if self.warm else None

    def warm_phase_medians(self) -> list[PhaseTime]:
        """The median of each phase over the warm redeploys, in the order they ran."""
        names: list[str] = []
        for timing in self.warm:
            names += [p.name for p in timing.phases if p.name not in names]
        out = []
        for name in names:
            samples = [s for t in self.warm if (s := t.phase(name)) is not None]
            out.append(PhaseTime(name, statistics.median(samples)))
        return out


def _tree_bytes(root: Path) -> int:
    total = 0
    for directory, _, files in os.walk(root):
        for name in files:
            with contextlib.suppress(OSError):
                total += (Path(directory) / name).lstat().st_size
    return total


def measure_deploys(
    lifecycle: LifecycleProcess, repo: JobRepo, warm_deploys: int, uv_cache: Path, log: Callable[[str], None]
) -> DeployResult:
    """A cold deploy (the lifecycle's data dir and its uv cache `uv_cache` are empty), then
    `warm_deploys` code-only redeploys with force=true, each after a one-line change of the
    entrypoint."""
    if uv_cache.exists() and any(uv_cache.iterdir()):
        raise DeployFailed(f"the uv cache {uv_cache} is not empty before the cold deploy")
    cold = timed_deploy(lifecycle, repo.manifest(), force=False)
    if cold.environment_reused:
        raise DeployFailed(f"the cold deploy {cold.deployment_id} reused an environment")
    cache_bytes = _tree_bytes(uv_cache)
    log(f"  cold deploy: {cold.total_s:.2f} s (uv cache filled with {cache_bytes / 2**20:.0f} MiB)")
    warm = []
    for i in range(warm_deploys):
        repo.change_one_line()
        timing = timed_deploy(lifecycle, repo.manifest(), force=True)
        if not timing.environment_reused:
            raise DeployFailed(f"warm redeploy {timing.deployment_id} rebuilt the environment")
        warm.append(timing)
        log(f"  warm redeploy {i + 1}/{warm_deploys}: {timing.total_s:.2f} s")
    return DeployResult(repo.requirement, cold, tuple(warm), cache_bytes)
