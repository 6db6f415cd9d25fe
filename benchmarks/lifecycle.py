"""The lifecycle benchmarks: `python -m trackside up` as a real process, measured through its API.

Three sections, each selectable (`--only deploy,fleet,listing`; `--lifecycle` for all three):

- deploy:  `sample-jobs/adder` (+ one small requirement) from a file:// git repository, request to
           `running`: once cold (fresh data dir and empty uv cache), then warm code-only redeploys;
- fleet:   `fleet_size` copies of the adder running at once: memory of the jobs and the lifecycle,
           and the CPU they use while idle;
- listing: `GET /job` with `job_versions` versions registered through the store API.

deploy and fleet share one lifecycle (data dir and uv cache made fresh for the run); listing gets
a second one, whose database is seeded before it starts. Every lifecycle is stopped with SIGTERM
(which stops its jobs) and the run checks that none of its job processes is left.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from .deploy_timing import (
    DEPLOY_TIMEOUT_S,
    POLL_INTERVAL_S,
    DeployFailed,
    DeployResult,
    DeployTiming,
    JobRepo,
    PhaseTime,
    measure_deploys,
    wait_deployed,
)
from .job_listing import ListingMismatch, ListingResult, measure_listing, seed_versions
from .processes import CLOCK_TICKS, child_environment, free_port
from .report import MIB, Ratio
from .servers import REPO

Log = Callable[[str], None]

DEPLOY_KEY, LISTING_KEY, FLEET_KEY = "deploy", "listing", "fleet"
LIFECYCLE_KEYS = (DEPLOY_KEY, FLEET_KEY, LISTING_KEY)
REQUIREMENT = "six"  # the one small dependency of the deployed job (pure Python, one wheel)

COLD_TARGET_S = 20.0
WARM_TARGET_S = 3.0
LISTING_P99_TARGET_MS = 50.0

START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 60.0
SETTLE_S = 2.0  # after the fleet is up, before memory and idle CPU are sampled


class LifecycleUnavailable(Exception):
    """Something the lifecycle benchmarks need (uv, the package index) is missing."""


class LifecycleFailed(Exception):
    """The lifecycle did not start, a deployment failed, or an answer was wrong."""


@dataclass(frozen=True)
class LifecycleSettings:
    sections: frozenset[str] = frozenset(LIFECYCLE_KEYS)
    warm_deploys: int = 5
    job_versions: int = 1000
    listing_requests: int = 200
    fleet_size: int = 50
    idle_window_s: float = 5.0


# ---- /proc --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcInfo:
    pid: int
    ppid: int
    pgid: int
    state: str
    cpu_ticks: int  # utime + stime


def _proc(pid: int) -> ProcInfo | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # fields after the command name (which may contain spaces): state is field 3
    fields = text[text.rindex(")") + 2 :].split()
    return ProcInfo(pid, int(fields[1]), int(fields[2]), fields[0], int(fields[11]) + int(fields[12]))


def _all_processes() -> list[ProcInfo]:
    out = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and (info := _proc(int(entry.name))) is not None:
            out.append(info)
    return out


def _status_kib(pid: int, key: str, file: str = "status") -> int:
    """A `key: N kB` line of /proc/PID/status (or smaps_rollup), in KiB; 0 when gone."""
    try:
        text = Path(f"/proc/{pid}/{file}").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def rss_bytes(pids: list[int]) -> int:
    return sum(_status_kib(pid, "VmRSS") for pid in pids) * 1024


def pss_bytes(pids: list[int]) -> int:
    """Proportional set size: shared pages divided among the processes that map them."""
    return sum(_status_kib(pid, "Pss", "smaps_rollup") for pid in pids) * 1024


def cpu_seconds(pids: list[int]) -> float:
    return sum(info.cpu_ticks for pid in pids if (info := _proc(pid)) is not None) / CLOCK_TICKS


# ---- one lifecycle process ----------------------------------------------------------------------


@dataclass(frozen=True)
class StopReport:
    name: str
    exit_code: int | None
    seconds: float
    job_groups: int  # job process groups known before the stop
    # processes of those groups or of the lifecycle's own (a build's uv or git) still alive once
    # the lifecycle exited; the harness kills them
    left_running: int


def lifecycle_environment(uv_cache: Path) -> dict[str, str]:
    """The harness's environment without the platform's and uv's own settings, with a uv cache
    of the run's: nothing from the caller's setup (say `make`'s UV_* exports) changes what is
    measured."""
    env = {
        k: v for k, v in child_environment().items() if not k.startswith(("UV_", "TRACKSIDE_", "VIRTUAL_ENV"))
    }
    env.update(UV_CACHE_DIR=str(uv_cache), PYTHONUNBUFFERED="1")
    return env


class LifecycleProcess:
    """`python -m trackside up` in its own session, and an authenticated client of its API."""

    def __init__(self, name: str, data_dir: Path, log_path: Path, env: dict[str, str]) -> None:
        self.name = name
        self.data_dir = data_dir
        self.log_path = log_path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.command = [
            sys.executable,
            "-m",
            "trackside",
            "up",
            "--port",
            str(self.port),
            "--data-dir",
            str(data_dir),
        ]
        log_path.parent.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        with open(log_path, "ab") as out:
            self.process = subprocess.Popen(
                self.command,
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self._stopped: StopReport | None = None
        self.client = httpx.Client(base_url=self.url + "/lifecycle/api/v1", timeout=60)
        try:
            self._wait_live()
            self.start_s = time.perf_counter() - started
            token = (data_dir / "admin-token").read_text().strip()
        except BaseException:
            self.stop()
            raise
        self.client.headers["X-Racetrack-Auth"] = token

    @property
    def pid(self) -> int:
        return self.process.pid

    def output_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def fail(self, why: str) -> LifecycleFailed:
        return LifecycleFailed(
            f"lifecycle {self.name}: {why}\n--- last lines of {self.log_path} ---\n{self.output_tail()}"
        )

    def _wait_live(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                if httpx.get(self.url + "/lifecycle/live", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.process.poll() is not None:
                raise self.fail(f"exited with code {self.process.returncode} before it was live")
            if time.monotonic() > deadline:
                raise self.fail(f"not live within {START_TIMEOUT_S:.0f} s")
            time.sleep(0.05)

    # ---- API --------------------------------------------------------------------------------

    def _json(self, response: httpx.Response) -> Any:
        if response.status_code >= 400:
            raise self.fail(
                f"{response.request.method} {response.request.url.path} answered {response.status_code}: {response.text[:500]}"
            )
        return response.json()

    def deploy(self, manifest: dict[str, Any], force: bool = False) -> str:
        body = self._json(self.client.post("/deploy", json={"manifest": manifest, "force": force}))
        return str(body["id"])

    def deployment(self, deployment_id: str) -> dict[str, Any]:
        body: dict[str, Any] = self._json(self.client.get(f"/deploy/{deployment_id}"))
        return body

    def job(self, name: str, version: str) -> dict[str, Any]:
        body: dict[str, Any] = self._json(self.client.get(f"/job/{name}/{version}"))
        return body

    def build_log(self, name: str, version: str, deployment_id: str) -> str:
        body = self._json(self.client.get(f"/job/{name}/{version}/build-logs"))
        if body.get("deployment_id") != deployment_id:
            raise self.fail(
                f"the build log of {name} {version} is of {body.get('deployment_id')}, not {deployment_id}"
            )
        return str(body["logs"])

    # ---- processes --------------------------------------------------------------------------

    def job_groups(self) -> list[int]:
        """The process groups of the jobs: each replica is a child of the lifecycle that leads a
        group of its own (uv and git, also children, stay in the lifecycle's group)."""
        return sorted(p.pid for p in _all_processes() if p.ppid == self.pid and p.pgid == p.pid)

    def _recorded_groups(self) -> set[int]:
        """Job pids in the runner's registry (kept for reaping orphans of a killed lifecycle)."""
        directory = self.data_dir / "logs" / ".processes"
        with contextlib.suppress(OSError):
            return {int(entry.name) for entry in directory.iterdir() if entry.name.isdigit()}
        return set()

    @staticmethod
    def group_members(groups: set[int] | list[int]) -> list[int]:
        chosen = set(groups)
        return [p.pid for p in _all_processes() if p.pgid in chosen and p.state != "Z"]

    def stop(self) -> StopReport:
        """SIGTERM (the lifecycle stops its jobs), SIGKILL after STOP_TIMEOUT_S; then every
        process left in a job group or in the lifecycle's group is counted and killed."""
        if self._stopped is not None:
            return self._stopped
        self.client.close()
        groups = set(self.job_groups()) | self._recorded_groups()
        started = time.perf_counter()
        code: int | None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                code = self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                code = self.process.wait()
        else:
            code = self.process.returncode
        seconds = time.perf_counter() - started
        # The lifecycle's own group holds the uv and git processes of a build it was running.
        # A group's id is not given to a new process while a member lives, so only groups that
        # still have members are signalled.
        left = self.group_members(groups | {self.pid})
        for pgid in {info.pgid for pid in left if (info := _proc(pid)) is not None}:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
        self._stopped = StopReport(self.name, code, seconds, len(groups), len(left))
        return self._stopped


# ---- the fleet ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FleetResult:
    jobs: int
    job_processes: int
    deploy_all_s: float  # every deploy submitted at once until the last job ran
    jobs_rss_bytes: int
    jobs_pss_bytes: int
    lifecycle_rss_bytes: int
    lifecycle_rss_before_bytes: int  # the same lifecycle before the fleet, running `jobs_before` jobs
    jobs_before: int
    idle_window_s: float
    lifecycle_cpu_share: float  # of one core, while nothing but the runner's probes happens
    jobs_cpu_share: float

    @property
    def rss_per_job_bytes(self) -> float:
        return self.jobs_rss_bytes / self.jobs if self.jobs else 0.0


def measure_fleet(
    lifecycle: LifecycleProcess, repo: JobRepo, size: int, idle_window_s: float, log: Log
) -> FleetResult:
    before = rss_bytes([lifecycle.pid])
    earlier_groups = set(lifecycle.job_groups())  # the deploy section's job, when it ran
    names = [f"fleet-{i:02d}" for i in range(1, size + 1)]
    started = time.perf_counter()
    deployments = [(name, lifecycle.deploy(repo.manifest(name))) for name in names]
    timeout_s = max(DEPLOY_TIMEOUT_S, 10.0 * size)
    for name, deployment_id in deployments:
        wait_deployed(lifecycle, deployment_id, started, timeout_s)
        while (job := lifecycle.job(name, "1.0.0")).get("status") != "running":
            if time.perf_counter() - started > timeout_s:
                raise lifecycle.fail(f"{name} is not running after its deploy: {job}")
            time.sleep(POLL_INTERVAL_S)
    deploy_all_s = time.perf_counter() - started
    log(f"  {size} jobs deployed and running in {deploy_all_s:.1f} s")
    time.sleep(SETTLE_S)
    groups = sorted(set(lifecycle.job_groups()) - earlier_groups)
    if len(groups) != size:
        raise lifecycle.fail(f"the fleet has {len(groups)} job process groups, expected {size}")
    members = lifecycle.group_members(groups)
    cpu_jobs, cpu_lifecycle = cpu_seconds(members), cpu_seconds([lifecycle.pid])
    time.sleep(idle_window_s)
    cpu_jobs, cpu_lifecycle = cpu_seconds(members) - cpu_jobs, cpu_seconds([lifecycle.pid]) - cpu_lifecycle
    result = FleetResult(
        jobs=size,
        job_processes=len(members),
        deploy_all_s=deploy_all_s,
        jobs_before=len(earlier_groups),
        jobs_rss_bytes=rss_bytes(members),
        jobs_pss_bytes=pss_bytes(members),
        lifecycle_rss_bytes=rss_bytes([lifecycle.pid]),
        lifecycle_rss_before_bytes=before,
        idle_window_s=idle_window_s,
        lifecycle_cpu_share=cpu_lifecycle / idle_window_s,
        jobs_cpu_share=cpu_jobs / idle_window_s,
    )
    log(
        f"  jobs RSS {result.jobs_rss_bytes / MIB:.0f} MiB ({result.rss_per_job_bytes / MIB:.1f} MiB per job), "
        f"lifecycle RSS {result.lifecycle_rss_bytes / MIB:.0f} MiB"
    )
    return result


# ---- the run --------------------------------------------------------------------------------------


@dataclass
class LifecycleResults:
    settings: LifecycleSettings
    environment: dict[str, object]
    deploy: DeployResult | None = None
    fleet: FleetResult | None = None
    listing: ListingResult | None = None
    start_s: dict[str, float] = field(default_factory=dict)
    stops: list[StopReport] = field(default_factory=list)


def find_uv() -> Path:
    """The uv the lifecycle's builder uses (the `uv` package of its venv, else the PATH's)."""
    beside = Path(sys.executable).parent / "uv"
    if beside.is_file():
        return beside
    found = shutil.which("uv")
    if not found:
        raise LifecycleUnavailable("uv not found: run `make setup` first")
    return Path(found)


def check_prerequisites(settings: LifecycleSettings) -> str:
    """uv's version; LifecycleUnavailable when the package index cannot be reached (the deploy
    and fleet sections install the job's environment from it)."""
    uv = find_uv()
    version = subprocess.run(
        [str(uv), "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    if settings.sections & {DEPLOY_KEY, FLEET_KEY}:
        done = subprocess.run(
            [str(uv), "pip", "compile", "--quiet", "--no-cache", "--no-config", "-"],
            input=REQUIREMENT + "\n",
            capture_output=True,
            text=True,
            timeout=120,
            env={k: v for k, v in os.environ.items() if not k.startswith("UV_")}
            | {"UV_PYTHON_DOWNLOADS": "never"},
            check=False,
        )
        if done.returncode != 0:
            raise LifecycleUnavailable(
                f"cannot resolve {REQUIREMENT!r} from the package index (uv pip compile):\n{done.stderr[-1500:]}"
            )
    return version


@contextlib.contextmanager
def _affinity(cpus: set[int] | None) -> Iterator[None]:
    """Run the lifecycle (and the harness beside it) on `cpus`: the lifecycle is not pinned, as
    it would not be in use; its children inherit the harness's affinity at start."""
    previous = os.sched_getaffinity(0)
    if cpus:
        os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, previous)


def run(
    settings: LifecycleSettings,
    work_dir: Path,
    log_dir: Path,
    cpus: set[int] | None,
    uv_version: str,
    log: Log,
) -> LifecycleResults:
    """The selected sections; `uv_version` comes from check_prerequisites, called before."""
    results = LifecycleResults(
        settings,
        {
            "python": platform.python_version(),
            "uv": uv_version,
            "cpus": sorted(cpus or os.sched_getaffinity(0)),
            "load_average_at_start": list(os.getloadavg()),
            "command": f"{sys.executable} -m trackside up --port PORT --data-dir DATA_DIR",
            "requirement": REQUIREMENT,
        },
    )
    work_dir.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="lifecycle-", dir=work_dir))
    running: list[LifecycleProcess] = []

    def start(name: str, data_dir: Path, uv_cache: Path) -> LifecycleProcess:
        lifecycle = LifecycleProcess(
            name, data_dir, log_dir / f"lifecycle-{name}.log", lifecycle_environment(uv_cache)
        )
        running.append(lifecycle)
        results.start_s[name] = lifecycle.start_s
        log(
            f"lifecycle {name}: live in {lifecycle.start_s:.2f} s (pid {lifecycle.pid}, log {lifecycle.log_path})"
        )
        return lifecycle

    def stop(lifecycle: LifecycleProcess) -> None:
        running.remove(lifecycle)
        report = lifecycle.stop()
        results.stops.append(report)
        log(
            f"lifecycle {report.name}: stopped in {report.seconds:.2f} s (exit {report.exit_code}), "
            f"{report.left_running} of its job processes left running"
        )
        if report.left_running:
            raise LifecycleFailed(
                f"{report.left_running} job process(es) outlived lifecycle {report.name} (killed)"
            )

    try:
        with _affinity(cpus):
            if settings.sections & {DEPLOY_KEY, FLEET_KEY}:
                # fresh data dir and empty uv cache: the first deploy builds everything
                lifecycle = start("deploy", root / "deploy-data", root / "uv-cache")
                repo = JobRepo.create(root / "adder-repo", REQUIREMENT)
                if DEPLOY_KEY in settings.sections:
                    log(f"deploy: sample-jobs/adder + {REQUIREMENT}, cold then {settings.warm_deploys} warm")
                    results.deploy = measure_deploys(
                        lifecycle, repo, settings.warm_deploys, root / "uv-cache", log
                    )
                    # its job keeps running (the fleet's numbers leave it out): deleting it would
                    # remove the environment the fleet reuses, as the builder prunes unused ones
                if FLEET_KEY in settings.sections:
                    log(f"fleet: {settings.fleet_size} adder jobs at once")
                    results.fleet = measure_fleet(
                        lifecycle, repo, settings.fleet_size, settings.idle_window_s, log
                    )
                stop(lifecycle)
            if LISTING_KEY in settings.sections:
                data = root / "listing-data"
                seed_s = seed_versions(data, settings.job_versions)
                log(f"listing: {settings.job_versions} versions registered in {seed_s:.2f} s")
                lifecycle = start("listing", data, root / "uv-cache-listing")
                results.listing = measure_listing(
                    lifecycle, settings.job_versions, settings.listing_requests, seed_s
                )
                listing = results.listing
                log(f"  GET /job: p50 {listing.p50_ms:.1f} ms, p99 {listing.p99_ms:.1f} ms")
                stop(lifecycle)
    except (DeployFailed, ListingMismatch) as e:
        raise LifecycleFailed(str(e)) from e
    except httpx.HTTPError as e:  # the lifecycle stopped answering
        where = f" (logs in {log_dir})"
        raise LifecycleFailed(f"{e.__class__.__name__}: {e}{where}") from e
    finally:
        for lifecycle in list(running):
            running.remove(lifecycle)
            results.stops.append(lifecycle.stop())
        shutil.rmtree(root, ignore_errors=True)
    results.environment["load_average_at_end"] = list(os.getloadavg())
    return results


# ---- report ---------------------------------------------------------------------------------------

PHASE_COLUMNS = {
    "queued": "queued",
    "fetching the source code": "fetch",
    "building the environment": "build",
    "starting the job": "start",
    "initialising the entrypoint": "init",
    "checking the input examples": "examples",
    "done": "finish",
}


def _table(headers: list[str], rows: list[list[str]], left: int = 1) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def fmt(cells: list[str]) -> str:
        return "  ".join(
            cell.ljust(w) if i < left else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return [fmt(headers), fmt(["-" * w for w in widths]), *(fmt(r) for r in rows)]


def _phase_row(label: str, total: float, phases: list[PhaseTime] | tuple[PhaseTime, ...]) -> list[str]:
    by_name = {p.name: p.seconds for p in phases}
    cells = [label, f"{total:.2f}"]
    cells += [f"{by_name[name]:.2f}" if name in by_name else "-" for name in PHASE_COLUMNS]
    cells.append(f"{total - sum(by_name.values()):.2f}")
    return cells


def ratios(results: LifecycleResults) -> list[Ratio]:
    deploy, listing = results.deploy, results.listing

    def of_target(value: float | None, target: float) -> str:
        return "" if value is None else f"{value / target:.2f} of the target"

    cold = deploy.cold.total_s if deploy else None
    warm = deploy.warm_median_s if deploy else None
    p99 = listing.p99_ms if listing else None
    versions = listing.versions if listing else results.settings.job_versions
    return [
        Ratio("cold deploy to running", cold, " s", COLD_TARGET_S, False, of_target(cold, COLD_TARGET_S)),
        Ratio(
            "warm code-only redeploy, median",
            warm,
            " s",
            WARM_TARGET_S,
            False,
            of_target(warm, WARM_TARGET_S),
        ),
        Ratio(
            f"GET /job p99, {versions} versions",
            p99,
            " ms",
            LISTING_P99_TARGET_MS,
            False,
            of_target(p99, LISTING_P99_TARGET_MS),
        ),
    ]


def render(results: LifecycleResults) -> str:
    env = results.environment
    load = env.get("load_average_at_start")
    lines = [
        "Lifecycle (`python -m trackside up` as a process, not pinned; fresh data dir and uv cache per run)",
    ]
    cpus = env.get("cpus")
    if isinstance(load, list) and load and isinstance(cpus, list):
        lines.append(f"Load average at start: {load[0]:.2f} on {len(cpus)} CPUs")
    deploy = results.deploy
    if deploy is not None:
        lines += [
            "",
            f"Deploy of sample-jobs/adder (+ {deploy.requirement}) from the request to `running`, seconds; "
            "phases from the deployment's record",
            "",
        ]
        headers = ["deploy", "total", *PHASE_COLUMNS.values(), "other"]
        rows = [_phase_row("cold: empty data dir + uv cache", deploy.cold.total_s, deploy.cold.phases)]
        if deploy.warm and deploy.warm_median_s is not None:
            rows.append(
                _phase_row(
                    f"warm redeploy, median of {len(deploy.warm)}",
                    deploy.warm_median_s,
                    deploy.warm_phase_medians(),
                )
            )
        lines += _table(headers, rows)
        lines.append("")
        if deploy.warm:
            lines.append("warm samples s: " + " ".join(f"{t.total_s:.2f}" for t in deploy.warm))
        lines.append(
            f"cold build: uv cache empty -> {deploy.uv_cache_bytes_after_cold / MIB:.0f} MiB; "
            + ("; ".join(deploy.cold.uv_summary) or "no uv summary in the build log")
        )
        lines.append(
            "(other: the API request and the harness's polling every 20 ms; warm phase columns are each a median)"
        )
    fleet = results.fleet
    if fleet is not None:
        lines += [
            "",
            f"{fleet.jobs} adder jobs running at once (idle, sampled over {fleet.idle_window_s:.0f} s)",
            "",
        ]
        lines += _table(
            [
                "jobs",
                "processes",
                "deploy all s",
                "jobs RSS MiB",
                "RSS/job MiB",
                "jobs PSS MiB",
                "lifecycle RSS MiB",
                f"(before: {fleet.jobs_before} job{'' if fleet.jobs_before == 1 else 's'})",
                "lifecycle CPU %",
                "jobs CPU %",
            ],
            [
                [
                    str(fleet.jobs),
                    str(fleet.job_processes),
                    f"{fleet.deploy_all_s:.1f}",
                    f"{fleet.jobs_rss_bytes / MIB:.0f}",
                    f"{fleet.rss_per_job_bytes / MIB:.1f}",
                    f"{fleet.jobs_pss_bytes / MIB:.0f}",
                    f"{fleet.lifecycle_rss_bytes / MIB:.0f}",
                    f"{fleet.lifecycle_rss_before_bytes / MIB:.0f}",
                    f"{fleet.lifecycle_cpu_share * 100:.1f}",
                    f"{fleet.jobs_cpu_share * 100:.1f}",
                ]
            ],
            left=0,
        )
    listing = results.listing
    if listing is not None:
        lines += [
            "",
            f"GET /lifecycle/api/v1/job with {listing.versions} versions "
            f"({len(listing.samples_ms)} sequential requests on one connection)",
            "",
        ]
        lines += _table(
            ["versions", "p50 ms", "p99 ms", "mean ms", "max ms", "body KiB"],
            [
                [
                    str(listing.versions),
                    f"{listing.p50_ms:.1f}",
                    f"{listing.p99_ms:.1f}",
                    f"{listing.mean_ms:.1f}",
                    f"{listing.max_ms:.1f}",
                    f"{listing.body_bytes / 1024:.0f}",
                ]
            ],
            left=0,
        )
    if results.start_s or results.stops:
        lines += ["", "Lifecycle processes", ""]
        lines += _table(
            ["lifecycle", "live after s", "stop s", "exit", "job groups", "left running"],
            [
                [
                    stop.name,
                    f"{results.start_s.get(stop.name, 0.0):.2f}",
                    f"{stop.seconds:.2f}",
                    str(stop.exit_code),
                    str(stop.job_groups),
                    str(stop.left_running),
                ]
                for stop in results.stops
            ],
        )
    lines += ["", "Lifecycle targets", ""]
    lines += [r.line() for r in ratios(results)]
    if fleet is not None:
        name = f"job RSS per job, {fleet.jobs} jobs"
        pss = fleet.jobs_pss_bytes / fleet.jobs / MIB
        lines.append(
            f"  {name:<40} {fleet.rss_per_job_bytes / MIB:>6.1f} MiB   (no target; PSS {pss:.1f} MiB per job)"
        )
    return "\n".join(lines)


def _timing_json(timing: DeployTiming) -> dict[str, Any]:
    return {
        "deployment_id": timing.deployment_id,
        "total_s": timing.total_s,
        "environment_reused": timing.environment_reused,
        "uv_summary": list(timing.uv_summary),
        "phases_s": {p.name: p.seconds for p in timing.phases},
    }


def to_json(results: LifecycleResults) -> dict[str, Any]:
    s = results.settings
    deploy, fleet, listing = results.deploy, results.fleet, results.listing
    return {
        "settings": {
            "sections": sorted(s.sections),
            "warm_deploys": s.warm_deploys,
            "job_versions": s.job_versions,
            "listing_requests": s.listing_requests,
            "fleet_size": s.fleet_size,
            "idle_window_s": s.idle_window_s,
        },
        "environment": results.environment,
        "deploy": None
        if deploy is None
        else {
            "requirement": deploy.requirement,
            "uv_cache_mib_after_cold": deploy.uv_cache_bytes_after_cold / MIB,
            "cold": _timing_json(deploy.cold),
            "warm": [_timing_json(t) for t in deploy.warm],
            "warm_median_s": deploy.warm_median_s,
            "warm_phase_medians_s": {p.name: p.seconds for p in deploy.warm_phase_medians()},
        },
        "fleet": None
        if fleet is None
        else {
            "jobs": fleet.jobs,
            "job_processes": fleet.job_processes,
            "deploy_all_s": fleet.deploy_all_s,
            "jobs_rss_mib": fleet.jobs_rss_bytes / MIB,
            "rss_per_job_mib": fleet.rss_per_job_bytes / MIB,
            "jobs_pss_mib": fleet.jobs_pss_bytes / MIB,
            "pss_per_job_mib": fleet.jobs_pss_bytes / fleet.jobs / MIB,
            "lifecycle_rss_mib": fleet.lifecycle_rss_bytes / MIB,
            "lifecycle_rss_before_fleet_mib": fleet.lifecycle_rss_before_bytes / MIB,
            "jobs_before_fleet": fleet.jobs_before,
            "idle_window_s": fleet.idle_window_s,
            "lifecycle_cpu_share": fleet.lifecycle_cpu_share,
            "jobs_cpu_share": fleet.jobs_cpu_share,
        },
        "listing": None
        if listing is None
        else {
            "versions": listing.versions,
            "requests": len(listing.samples_ms),
            "seed_s": listing.seed_s,
            "p50_ms": listing.p50_ms,
            "p99_ms": listing.p99_ms,
            "mean_ms": listing.mean_ms,
            "max_ms": listing.max_ms,
            "body_bytes": listing.body_bytes,
            "samples_ms": list(listing.samples_ms),
        },
        "lifecycles": [
            {
                "name": stop.name,
                "live_after_s": results.start_s.get(stop.name),
                "stop_s": stop.seconds,
                "exit_code": stop.exit_code,
                "job_groups": stop.job_groups,
                "left_running": stop.left_running,
            }
            for stop in results.stops
        ],
        "ratios": [r.to_json() for r in ratios(results)],
    }
