"""The CLI benchmark (`--only cli`): what a user of the `trackside` command waits for.

Against a `python -m trackside up` started for the run (fresh data dir, empty uv cache), with the
venv's `trackside` script as a user runs it (stdout a pipe, its own config dir, the remote and
token from TRACKSIDE_REMOTE / TRACKSIDE_TOKEN):

- start to exit of `trackside --help` and `trackside list` (one job deployed): wall time and CPU
  (the process's rusage), the median of `startup_runs` after one unmeasured round, interleaved
  with `python -c pass` (the interpreter's own floor);
- the biggest cumulative imports of `python -X importtime -m trackside list`;
- `trackside deploy DIR` of a directory like `sample-jobs/adder` (plus the lifecycle
  benchmark's one requirement, the directory a git work tree of its own) from process start to
  exit 0 with the job `running`: cold (nothing built yet, the uv cache empty) and warm (one
  line of the entrypoint changed, `--force`), with when each line of its output appeared and the
  deployment's own record (create to finish) from the lifecycle. Each warm CLI deploy is
  followed by a warm deploy of the same job through the API (`POST /deploy`, git), so the CLI's
  cost over the API is measured on the same platform in the same minute.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from .deploy_timing import DeployFailed, DeployTiming, JobRepo, PhaseTime, phase_times, timed_deploy
from .lifecycle import (
    COLD_TARGET_S,
    DEPLOY_KEY,
    REQUIREMENT,
    WARM_TARGET_S,
    LifecycleFailed,
    LifecycleProcess,
    LifecycleSettings,
    LifecycleUnavailable,
    StopReport,
    lifecycle_environment,
)
from .lifecycle import (
    check_prerequisites as lifecycle_prerequisites,
)
from .processes import child_environment
from .report import Ratio, _table

Log = Callable[[str], None]

CLI_KEY = "cli"
STARTUP_TARGET_MS = 300.0
JOB_NAME, JOB_VERSION = "adder", "1.0.0"
COMMAND_TIMEOUT_S = 300.0
TOP_IMPORTS = 5

# `trackside deploy`'s output: "Deployment <id>", a line per finished phase ("name ... 1.2 s"),
# then "Deployed NAME VERSION in T s."
_DEPLOYMENT_LINE = re.compile(r"^Deployment ([0-9A-Za-z-]+)$")
_PHASE_LINE = re.compile(r" \.\.\. [0-9.]+ s$")
_DEPLOYED_LINE = re.compile(r"^Deployed \S+ \S+ in [0-9.]+ s\.$")
# python -X importtime: "import time: SELF_US | CUMULATIVE_US | <2 spaces per level>NAME"
_IMPORT_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \| ( *)(\S+)$")


@dataclass(frozen=True)
class CliSettings:
    startup_runs: int = 21
    importtime_runs: int = 5
    warm_deploys: int = 5


# ---- one CLI process --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Exited:
    """A finished command: its exit code, wall time and CPU (user + system, from its rusage), and
    each line of its stdout with the time it arrived (seconds after the start)."""

    command: tuple[str, ...]
    exit_code: int
    wall_s: float
    cpu_s: float
    lines: tuple[tuple[float, str], ...]
    stderr: str

    @property
    def stdout(self) -> str:
        return "\n".join(line for _, line in self.lines)

    def first(self, pattern: re.Pattern[str]) -> tuple[float, str] | None:
        return next(((at, line) for at, line in self.lines if pattern.search(line)), None)

    def last(self, pattern: re.Pattern[str]) -> tuple[float, str] | None:
        return next(((at, line) for at, line in reversed(self.lines) if pattern.search(line)), None)

    def failure(self, why: str) -> LifecycleFailed:
        tail = "\n".join(self.stdout.splitlines()[-20:])
        return LifecycleFailed(
            f"`{' '.join(self.command)}` {why} (exit {self.exit_code})\n"
            f"--- stdout (tail) ---\n{tail}\n--- stderr (tail) ---\n{self.stderr[-2000:]}"
        )


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def run_timed(
    command: Sequence[str], env: Mapping[str, str], cwd: Path, timeout_s: float = COMMAND_TIMEOUT_S
) -> Exited:
    """Run `command` to its end, timing it from just before the fork to its reaping; killed (and
    reported as exit -9) after `timeout_s`."""
    with tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        process = subprocess.Popen(
            list(command),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
            start_new_session=True,
        )
        timer = threading.Timer(timeout_s, _kill_group, (process.pid,))
        timer.start()
        lines: list[tuple[float, str]] = []
        stdout = process.stdout
        assert stdout is not None
        try:
            for raw in stdout:
                lines.append((time.perf_counter() - started, raw.decode(errors="replace").rstrip("\r\n")))
            # wait4 (not Popen.wait) for the rusage of this child alone
            _, status, usage = os.wait4(process.pid, 0)
            wall_s = time.perf_counter() - started
        except BaseException:
            _kill_group(process.pid)
            process.wait()
            raise
        finally:
            timer.cancel()
            stdout.close()
        process.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        stderr = err.read().decode(errors="replace")
    return Exited(
        tuple(command),
        process.returncode,
        wall_s,
        usage.ru_utime + usage.ru_stime,
        tuple(lines),
        stderr,
    )


def trackside_command() -> list[str]:
    """The `trackside` script of the harness's venv: what a user runs."""
    script = Path(sys.executable).parent / "trackside"
    if not script.is_file():
        raise LifecycleUnavailable(f"{script} does not exist: run `make setup` first")
    return [str(script)]


def check_prerequisites() -> str:
    """uv's version; LifecycleUnavailable when the `trackside` script, uv or the package index (the
    cold deploy installs the job's requirements from it) is missing."""
    trackside_command()
    return lifecycle_prerequisites(LifecycleSettings(sections=frozenset({DEPLOY_KEY})))


def cli_environment(remote: str, token: str, config_home: Path) -> dict[str, str]:
    """The harness's environment without the platform's and uv's own settings, pointed at the
    run's platform with an empty config dir, so the user's config changes nothing."""
    env = {
        k: v for k, v in child_environment().items() if not k.startswith(("UV_", "TRACKSIDE_", "VIRTUAL_ENV"))
    }
    env.update(TRACKSIDE_REMOTE=remote, TRACKSIDE_TOKEN=token, XDG_CONFIG_HOME=str(config_home))
    return env


# ---- start to exit ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Startup:
    label: str
    wall_ms: tuple[float, ...]
    cpu_ms: tuple[float, ...]
    target_ms: float | None

    @property
    def wall_median_ms(self) -> float:
        return statistics.median(self.wall_ms)

    @property
    def cpu_median_ms(self) -> float:
        return statistics.median(self.cpu_ms)


@dataclass(frozen=True)
class StartupCommand:
    label: str
    argv: list[str]
    expect: str | None  # text its stdout must hold
    target_ms: float | None


def measure_startup(
    commands: list[StartupCommand], runs: int, env: Mapping[str, str], cwd: Path
) -> list[Startup]:
    """Each command `runs` times, interleaved (round after round), after one unmeasured round that
    warms the page cache and writes any missing .pyc files."""
    samples: dict[str, list[Exited]] = {c.label: [] for c in commands}
    for round_ in range(runs + 1):
        for command in commands:
            done = run_timed(command.argv, env, cwd, timeout_s=60)
            if done.exit_code != 0:
                raise done.failure("failed")
            if command.expect is not None and command.expect not in done.stdout:
                raise done.failure(f"printed no {command.expect!r}")
            if round_:
                samples[command.label].append(done)
    return [
        Startup(
            c.label,
            tuple(d.wall_s * 1000 for d in samples[c.label]),
            tuple(d.cpu_s * 1000 for d in samples[c.label]),
            c.target_ms,
        )
        for c in commands
    ]


# ---- imports ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportCost:
    module: str
    depth: int  # 0: imported by the program itself, 1: by a depth-0 module, ...
    self_ms: float
    cumulative_ms: float


@dataclass(frozen=True)
class ImportProfile:
    command: str
    runs: int
    total_ms: float  # the depth-0 imports' cumulative times added up (median of the runs)
    modules: int
    top: tuple[ImportCost, ...]  # the biggest median cumulative times, biggest first


def parse_importtime(stderr: str) -> list[ImportCost]:
    out = []
    for line in stderr.splitlines():
        if match := _IMPORT_LINE.match(line):
            out.append(ImportCost(match[4], len(match[3]) // 2, int(match[1]) / 1000, int(match[2]) / 1000))
    return out


def measure_imports(argv: list[str], runs: int, env: Mapping[str, str], cwd: Path) -> ImportProfile:
    """`argv` (a `python -X importtime ...` command) `runs` times. Each module's times are its
    medians over the runs (a module imported in only some runs counts where it was), so one
    descheduled import does not make the list; the total is the median of the runs' totals."""
    totals: list[float] = []
    seen: dict[str, list[ImportCost]] = {}
    for _ in range(runs):
        done = run_timed(argv, env, cwd, timeout_s=60)
        if done.exit_code != 0:
            raise done.failure("failed")
        costs = parse_importtime(done.stderr)
        if not costs:
            raise done.failure("printed no `import time:` lines")
        totals.append(sum(c.cumulative_ms for c in costs if c.depth == 0))
        for cost in costs:
            seen.setdefault(cost.module, []).append(cost)
    medians = [
        ImportCost(
            module,
            samples[0].depth,
            statistics.median(c.self_ms for c in samples),
            statistics.median(c.cumulative_ms for c in samples),
        )
        for module, samples in seen.items()
    ]
    top = sorted(medians, key=lambda c: c.cumulative_ms, reverse=True)[:TOP_IMPORTS]
    return ImportProfile(
        " ".join(["python", *argv[1:]]), runs, statistics.median(totals), len(medians), tuple(top)
    )


# ---- deploys ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CliDeploy:
    """One `trackside deploy`, times in seconds from the process's start."""

    deployment_id: str
    wall_s: float  # to exit 0
    cpu_s: float  # the CLI process's own
    packed_s: float  # its first line: the manifest validated and the directory packed
    submitted_s: float  # "Deployment <id>": POST /deploy (with the upload) answered
    done_seen_s: float  # the last phase line: the CLI learnt that the deployment is done
    summary_s: float  # "Deployed ...": after the job's input example was read through the gateway
    lifecycle_s: float  # the deployment's own record: created until finished (the lifecycle's clock)
    phases: tuple[PhaseTime, ...]
    environment_reused: bool

    @property
    def overhead_s(self) -> float:
        """What the user waits for beyond the deployment itself."""
        return self.wall_s - self.lifecycle_s


def _job_dir(root: Path) -> JobRepo:
    """A directory like sample-jobs/adder, with REQUIREMENT and a job.yaml naming them, that is a
    git work tree of its own (as a job's directory usually is; it also keeps the harness's
    .gitignore, which leaves out benchmarks/.work, from applying to the upload)."""
    repo = JobRepo.create(root, REQUIREMENT)
    (root / "job.yaml").write_text(yaml.safe_dump(repo.manifest(JOB_NAME, JOB_VERSION), sort_keys=False))
    return repo


def cli_deploy(
    trackside: list[str],
    job_dir: Path,
    force: bool,
    env: Mapping[str, str],
    cwd: Path,
    lifecycle: LifecycleProcess,
) -> CliDeploy:
    """`trackside deploy DIR [--force]`, checked: exit 0, the deployment done and the job running."""
    done = run_timed([*trackside, "deploy", str(job_dir), *(["--force"] if force else [])], env, cwd)
    if done.exit_code != 0:
        raise done.failure("failed")
    submitted = done.first(_DEPLOYMENT_LINE)
    summary = done.first(_DEPLOYED_LINE)
    last_phase = done.last(_PHASE_LINE)
    if submitted is None or summary is None or last_phase is None or not done.lines:
        raise done.failure("printed no `Deployment ID`, phase or `Deployed` line")
    match = _DEPLOYMENT_LINE.match(submitted[1])
    assert match is not None
    deployment_id = match[1]
    deployment = lifecycle.deployment(deployment_id)
    job = lifecycle.job(JOB_NAME, JOB_VERSION)
    if deployment.get("status") != "done" or job.get("status") != "running":
        raise done.failure(
            f"exited 0 but the deployment is {deployment.get('status')} and the job {job.get('status')}"
        )
    log = lifecycle.build_log(JOB_NAME, JOB_VERSION, deployment_id)
    return CliDeploy(
        deployment_id=deployment_id,
        wall_s=done.wall_s,
        cpu_s=done.cpu_s,
        packed_s=done.lines[0][0],
        submitted_s=submitted[0],
        done_seen_s=last_phase[0],
        summary_s=summary[0],
        lifecycle_s=float(deployment["finish_time"]) - float(deployment["create_time"]),
        phases=phase_times(deployment),
        environment_reused="environment reused from cache" in log,
    )


@dataclass(frozen=True)
class SectionDeploys:
    """The lifecycle benchmark's API-measured deploys of the same invocation (another platform,
    the adder fetched from git), when it ran: `python -m benchmarks` with `deploy` and `cli`."""

    cold_s: float | None
    warm_median_s: float | None


def section_deploys(lifecycle_json: Mapping[str, Any] | None) -> SectionDeploys | None:
    """From the lifecycle part's JSON results (`to_json`), if its deploy section ran."""
    deploy = (lifecycle_json or {}).get("deploy")
    if not deploy:
        return None
    return SectionDeploys(deploy["cold"]["total_s"], deploy.get("warm_median_s"))


# ---- the run ----------------------------------------------------------------------------------------


@dataclass
class CliResults:
    settings: CliSettings
    environment: dict[str, object]
    startup: list[Startup] = field(default_factory=list)
    imports: ImportProfile | None = None
    cold: CliDeploy | None = None
    warm: list[CliDeploy] = field(default_factory=list)
    api_warm: list[DeployTiming] = field(default_factory=list)  # interleaved with `warm`
    section: SectionDeploys | None = None
    lifecycle_start_s: float | None = None
    stop: StopReport | None = None

    @property
    def warm_median_s(self) -> float | None:
        return statistics.median(d.wall_s for d in self.warm) if self.warm else None

    @property
    def api_warm_median_s(self) -> float | None:
        return statistics.median(t.total_s for t in self.api_warm) if self.api_warm else None

    def startup_of(self, label: str) -> Startup | None:
        return next((s for s in self.startup if s.label == label), None)


@contextlib.contextmanager
def _on_cpus(cpus: set[int] | None) -> Iterator[None]:
    """Run on `cpus` (every CPU the harness was given: not pinned, as in use); the processes
    started meanwhile inherit it."""
    previous = os.sched_getaffinity(0)
    if cpus:
        os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, previous)


HELP_LABEL, LIST_LABEL, FLOOR_LABEL = "trackside --help", "trackside list", "python -c pass"


def run(
    settings: CliSettings,
    work_dir: Path,
    log_dir: Path,
    cpus: set[int] | None,
    uv_version: str,
    section: SectionDeploys | None,
    log: Log,
) -> CliResults:
    """The whole benchmark; `uv_version` comes from check_prerequisites, called before."""
    trackside = trackside_command()
    results = CliResults(
        settings,
        {
            "python": platform.python_version(),
            "uv": uv_version,
            "cpus": sorted(cpus or os.sched_getaffinity(0)),
            "load_average_at_start": list(os.getloadavg()),
            "trackside": " ".join(trackside),
            "platform": f"{sys.executable} -m trackside up --port PORT --data-dir DATA_DIR",
            "requirement": REQUIREMENT,
        },
        section=section,
    )
    work_dir.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="cli-", dir=work_dir))
    lifecycle: LifecycleProcess | None = None
    try:
        with _on_cpus(cpus):
            lifecycle = LifecycleProcess(
                "cli", root / "data", log_dir / "lifecycle-cli.log", lifecycle_environment(root / "uv-cache")
            )
            results.lifecycle_start_s = lifecycle.start_s
            log(
                f"cli: lifecycle live in {lifecycle.start_s:.2f} s (pid {lifecycle.pid}, log {lifecycle.log_path})"
            )
            token = str(lifecycle.client.headers["X-Racetrack-Auth"])
            (root / "config").mkdir()
            env = cli_environment(lifecycle.url, token, root / "config")
            repo = _job_dir(root / "adder")

            results.cold = cli_deploy(trackside, repo.path, False, env, root, lifecycle)
            if results.cold.environment_reused:
                raise LifecycleFailed(f"the cold deploy {results.cold.deployment_id} reused an environment")
            log(f"  cold `trackside deploy`: {results.cold.wall_s:.2f} s")
            for i in range(settings.warm_deploys):
                repo.change_one_line()
                warm = cli_deploy(trackside, repo.path, True, env, root, lifecycle)
                repo.change_one_line()
                api = timed_deploy(lifecycle, repo.manifest(JOB_NAME, JOB_VERSION), force=True)
                for reused, deployment_id in (
                    (warm.environment_reused, warm.deployment_id),
                    (api.environment_reused, api.deployment_id),
                ):
                    if not reused:
                        raise LifecycleFailed(f"warm redeploy {deployment_id} rebuilt the environment")
                results.warm.append(warm)
                results.api_warm.append(api)
                log(
                    f"  warm {i + 1}/{settings.warm_deploys}: `trackside deploy --force` {warm.wall_s:.2f} s, "
                    f"POST /deploy {api.total_s:.2f} s"
                )

            results.startup = measure_startup(
                [
                    StartupCommand(FLOOR_LABEL, [sys.executable, "-c", "pass"], None, None),
                    StartupCommand(HELP_LABEL, [*trackside, "--help"], "Usage", STARTUP_TARGET_MS),
                    StartupCommand(LIST_LABEL, [*trackside, "list"], JOB_NAME, STARTUP_TARGET_MS),
                ],
                settings.startup_runs,
                env,
                root,
            )
            for startup in results.startup:
                log(
                    f"  {startup.label}: median {startup.wall_median_ms:.0f} ms wall, "
                    f"{startup.cpu_median_ms:.0f} ms CPU ({len(startup.wall_ms)} runs)"
                )
            results.imports = measure_imports(
                [sys.executable, "-X", "importtime", "-m", "trackside", "list"],
                settings.importtime_runs,
                env,
                root,
            )
            log(f"  imports of `trackside list`: {results.imports.total_ms:.0f} ms in all")
    except DeployFailed as e:
        raise LifecycleFailed(str(e)) from e
    except httpx.HTTPError as e:  # the lifecycle stopped answering
        raise LifecycleFailed(f"{e.__class__.__name__}: {e} (logs in {log_dir})") from e
    finally:
        if lifecycle is not None:
            results.stop = lifecycle.stop()
        shutil.rmtree(root, ignore_errors=True)
    stop = results.stop
    assert stop is not None
    log(f"cli: lifecycle stopped in {stop.seconds:.2f} s (exit {stop.exit_code})")
    if stop.left_running:
        raise LifecycleFailed(
            f"{stop.left_running} job process(es) outlived the cli benchmark's lifecycle (killed)"
        )
    results.environment["load_average_at_end"] = list(os.getloadavg())
    return results


# ---- report -----------------------------------------------------------------------------------------


def ratios(results: CliResults) -> list[Ratio]:
    def of_target(value: float | None, target: float) -> str:
        return "" if value is None else f"{value / target:.2f} of the target"

    out = []
    for label in (HELP_LABEL, LIST_LABEL):
        startup = results.startup_of(label)
        value = startup.wall_median_ms if startup else None
        note = f"CPU {startup.cpu_median_ms:.0f} ms" if startup else ""
        out.append(Ratio(f"`{label}`, median", value, " ms", STARTUP_TARGET_MS, False, note))
    cold = results.cold.wall_s if results.cold else None
    warm = results.warm_median_s
    out += [
        Ratio(
            "cold `trackside deploy` to exit",
            cold,
            " s",
            COLD_TARGET_S,
            False,
            of_target(cold, COLD_TARGET_S),
        ),
        Ratio(
            "warm `trackside deploy --force`, median",
            warm,
            " s",
            WARM_TARGET_S,
            False,
            of_target(warm, WARM_TARGET_S),
        ),
    ]
    return out


def comparisons(results: CliResults) -> list[dict[str, Any]]:
    """The CLI's deploy times against the API-measured ones: same run, as ratio and difference."""
    out: list[dict[str, Any]] = []

    def add(name: str, cli_s: float | None, api_s: float | None, against: str) -> None:
        if cli_s is not None and api_s:
            out.append(
                {
                    "name": name,
                    "cli_s": cli_s,
                    "api_s": api_s,
                    "against": against,
                    "ratio": cli_s / api_s,
                    "difference_s": cli_s - api_s,
                }
            )

    add(
        "warm, same platform",
        results.warm_median_s,
        results.api_warm_median_s,
        "medians of POST /deploy (git) to running, interleaved on the same platform",
    )
    section = results.section
    if section is not None:
        add(
            "cold, lifecycle part",
            results.cold.wall_s if results.cold else None,
            section.cold_s,
            "the lifecycle benchmark's cold deploy in this run (its own platform)",
        )
        add(
            "warm, lifecycle part",
            results.warm_median_s,
            section.warm_median_s,
            "median of the lifecycle benchmark's warm redeploys in this run (its own platform)",
        )
    return out


def _deploy_row(label: str, deploy: CliDeploy | None = None, **values: float) -> list[str]:
    if deploy is not None:
        values = {
            "wall": deploy.wall_s,
            "packed": deploy.packed_s,
            "submitted": deploy.submitted_s,
            "done": deploy.done_seen_s,
            "summary": deploy.summary_s,
            "lifecycle": deploy.lifecycle_s,
            "overhead": deploy.overhead_s,
            "cpu": deploy.cpu_s,
        }
    keys = ("wall", "packed", "submitted", "done", "summary", "lifecycle", "overhead", "cpu")
    return [label, *(f"{values[k]:.2f}" if k in values else "-" for k in keys)]


def render(results: CliResults) -> str:
    env = results.environment
    lines = [
        f"CLI (`{env.get('trackside')}` as a user runs it, stdout a pipe, against "
        "`python -m trackside up` started for it; fresh data dir and uv cache)",
    ]
    load, cpus = env.get("load_average_at_start"), env.get("cpus")
    if isinstance(load, list) and load and isinstance(cpus, list):
        lines.append(f"Load average at start: {load[0]:.2f} on {len(cpus)} CPUs")
    if results.startup:
        runs = len(results.startup[0].wall_ms)
        lines += [
            "",
            f"Start to exit, ms (median of {runs} runs each, interleaved, after one unmeasured round)",
            "",
        ]
        lines += _table(
            ["command", "wall p50", "wall min", "wall max", "CPU p50", "CPU min"],
            [
                [
                    s.label + (" (1 job)" if s.label == LIST_LABEL else ""),
                    f"{s.wall_median_ms:.0f}",
                    f"{min(s.wall_ms):.0f}",
                    f"{max(s.wall_ms):.0f}",
                    f"{s.cpu_median_ms:.0f}",
                    f"{min(s.cpu_ms):.0f}",
                ]
                for s in results.startup
            ],
        )
    imports = results.imports
    if imports is not None:
        lines += [
            "",
            f"Biggest cumulative imports of `{imports.command}`, ms "
            + (f"(each the median of {imports.runs} runs)" if imports.runs > 1 else "(one run)"),
            "",
        ]
        lines += _table(
            ["module", "depth", "self", "cumulative"],
            [[c.module, str(c.depth), f"{c.self_ms:.1f}", f"{c.cumulative_ms:.1f}"] for c in imports.top],
        )
        lines.append(
            f"all imports: {imports.total_ms:.0f} ms for {imports.modules} modules "
            "(-X importtime's own bookkeeping included)"
        )
    if results.cold is not None:
        lines += [
            "",
            f"`trackside deploy DIR` of sample-jobs/adder (+ {REQUIREMENT}), seconds from the process's start",
            "",
        ]
        headers = [
            "deploy",
            "exit",
            "packed",
            "submitted",
            "done seen",
            "summary",
            "lifecycle",
            "CLI overhead",
            "CLI CPU",
        ]
        rows = [_deploy_row("cold: empty data dir + uv cache", results.cold)]
        if results.warm:

            def median(pick: Callable[[CliDeploy], float]) -> float:
                return statistics.median(pick(d) for d in results.warm)

            rows.append(
                _deploy_row(
                    f"warm --force, median of {len(results.warm)}",
                    wall=median(lambda d: d.wall_s),
                    packed=median(lambda d: d.packed_s),
                    submitted=median(lambda d: d.submitted_s),
                    done=median(lambda d: d.done_seen_s),
                    summary=median(lambda d: d.summary_s),
                    lifecycle=median(lambda d: d.lifecycle_s),
                    overhead=median(lambda d: d.overhead_s),
                    cpu=median(lambda d: d.cpu_s),
                )
            )
        if results.api_warm and (api_median := results.api_warm_median_s) is not None:
            rows.append(
                _deploy_row(f"API warm (POST /deploy), median of {len(results.api_warm)}", wall=api_median)
            )
        lines += _table(headers, rows)
        lines.append("")
        if results.warm:
            lines.append("warm samples s: " + " ".join(f"{d.wall_s:.2f}" for d in results.warm))
            lines.append("API warm samples s: " + " ".join(f"{t.total_s:.2f}" for t in results.api_warm))
        lines.append(
            "(packed: first line, manifest checked and DIR packed; submitted: POST /deploy answered; "
            "done seen: the last phase line; summary: after reading the job's input example through the "
            "gateway; lifecycle: the deployment's record, created to finished; CLI overhead: exit - lifecycle)"
        )
    compared = comparisons(results)
    if compared:
        lines += ["", "CLI against the API, same run", ""]
        for c in compared:
            lines.append(
                f"  {c['name']:<21} CLI {c['cli_s']:.2f} s / API {c['api_s']:.2f} s = {c['ratio']:.2f}x "
                f"({c['difference_s']:+.2f} s; API: {c['against']})"
            )
    if results.stop is not None:
        stop = results.stop
        lines.append("")
        lines.append(
            f"lifecycle: live after {results.lifecycle_start_s or 0:.2f} s, stopped in {stop.seconds:.2f} s "
            f"(exit {stop.exit_code}), {stop.job_groups} job group(s), {stop.left_running} left running"
        )
    lines += ["", "CLI targets", ""]
    lines += [r.line() for r in ratios(results)]
    return "\n".join(lines)


def _deploy_json(deploy: CliDeploy) -> dict[str, Any]:
    return {
        "deployment_id": deploy.deployment_id,
        "wall_s": deploy.wall_s,
        "cpu_s": deploy.cpu_s,
        "packed_s": deploy.packed_s,
        "submitted_s": deploy.submitted_s,
        "done_seen_s": deploy.done_seen_s,
        "summary_s": deploy.summary_s,
        "lifecycle_s": deploy.lifecycle_s,
        "overhead_s": deploy.overhead_s,
        "environment_reused": deploy.environment_reused,
        "phases_s": {p.name: p.seconds for p in deploy.phases},
    }


def to_json(results: CliResults) -> dict[str, Any]:
    s = results.settings
    imports = results.imports
    stop = results.stop
    return {
        "settings": {
            "startup_runs": s.startup_runs,
            "importtime_runs": s.importtime_runs,
            "warm_deploys": s.warm_deploys,
        },
        "environment": results.environment,
        "startup": {
            st.label: {
                "runs": len(st.wall_ms),
                "wall_ms": {
                    "median": st.wall_median_ms,
                    "min": min(st.wall_ms),
                    "max": max(st.wall_ms),
                    "samples": list(st.wall_ms),
                },
                "cpu_ms": {"median": st.cpu_median_ms, "min": min(st.cpu_ms), "samples": list(st.cpu_ms)},
                "target_ms": st.target_ms,
            }
            for st in results.startup
        },
        "imports": None
        if imports is None
        else {
            "command": imports.command,
            "runs": imports.runs,
            "total_ms": imports.total_ms,
            "modules": imports.modules,
            "top_cumulative": [
                {"module": c.module, "depth": c.depth, "self_ms": c.self_ms, "cumulative_ms": c.cumulative_ms}
                for c in imports.top
            ],
        },
        "deploy": {
            "requirement": REQUIREMENT,
            "cold": None if results.cold is None else _deploy_json(results.cold),
            "warm": [_deploy_json(d) for d in results.warm],
            "warm_median_s": results.warm_median_s,
            "api_warm": [
                {
                    "deployment_id": t.deployment_id,
                    "total_s": t.total_s,
                    "environment_reused": t.environment_reused,
                    "phases_s": {p.name: p.seconds for p in t.phases},
                }
                for t in results.api_warm
            ],
            "api_warm_median_s": results.api_warm_median_s,
            "compared": comparisons(results),
        },
        "lifecycle": None
        if stop is None
        else {
            "live_after_s": results.lifecycle_start_s,
            "stop_s": stop.seconds,
            "exit_code": stop.exit_code,
            "job_groups": stop.job_groups,
            "left_running": stop.left_running,
        },
        "ratios": [r.to_json() for r in ratios(results)],
    }
