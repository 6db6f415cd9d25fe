"""`python -m benchmarks [--duration S] [--quick] [--only a,b,c,d,429,deploy,fleet,listing,gateway,cli,dashboard,containers] [--lifecycle] ...`
(what `make bench` runs; `dashboard` and `containers` only when asked for)."""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import cli, containers, dashboard, gateway, lifecycle, racetrack, report, servers
from .lifecycle import LIFECYCLE_KEYS, LifecycleFailed, LifecycleSettings, LifecycleUnavailable
from .load import Wrk, WrkFailed, WrkMissing, ensure_wrk, wrk_version
from .processes import Cores, ServerFailed, terminate_on_sigterm
from .servers import REJECT_KEY, SERVER_KEYS, ServerSpec
from .suite import Settings, Suite

# Exit status when something the harness needs (wrk, uv, PyPI) is not available.
EXIT_PREREQUISITE = 3
KEPT_LOG_RUNS = 5
WRAPPER_KEYS = frozenset({*SERVER_KEYS, REJECT_KEY})
GATEWAY_KEY = "gateway"
CLI_KEY = cli.CLI_KEY
DASHBOARD_KEY = dashboard.DASHBOARD_KEY  # not in the default selection: `--only dashboard`
CONTAINERS_KEY = containers.CONTAINERS_KEY  # not in the default selection: `--only containers`
# `--only lifecycle` (and `--lifecycle`) stand for all of LIFECYCLE_KEYS
LIFECYCLE_ALIAS = "lifecycle"


def _concurrency(text: str) -> tuple[int, ...]:
    try:
        levels = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like 1,8,64, got {text!r}") from None
    if not levels or min(levels) < 1:
        raise argparse.ArgumentTypeError("concurrency levels must be >= 1")
    return levels


def _only(text: str) -> frozenset[str]:
    chosen = {part.strip().lower() for part in text.split(",") if part.strip()}
    if LIFECYCLE_ALIAS in chosen:
        chosen = (chosen - {LIFECYCLE_ALIAS}) | set(LIFECYCLE_KEYS)
    unknown = (
        chosen - WRAPPER_KEYS - set(LIFECYCLE_KEYS) - {GATEWAY_KEY, CLI_KEY, DASHBOARD_KEY, CONTAINERS_KEY}
    )
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(
            "choose from a, b, c, d, 429, deploy, fleet, listing (or lifecycle for those three), gateway, "
            f"cli, dashboard, containers; got {text!r}"
        )
    return frozenset(chosen)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Measure the wrapper (a: def perform, b: async def perform) against a raw ASGI app (c) "
        "and Racetrack's runner (d), plus cold start, idle RSS and the cost of a 429; and the lifecycle "
        "(`trackside up`): deploy to running cold and warm, N jobs at once, GET /job with many versions.",
    )
    parser.add_argument("--duration", type=int, help="seconds measured per point (whole seconds; default 5)")
    parser.add_argument(
        "--warmup", type=int, help="seconds of load before each point, not measured (default 1)"
    )
    parser.add_argument("--concurrency", type=_concurrency, help="connection counts (default 1,8,64)")
    parser.add_argument(
        "--cold-starts", type=int, help="starts per server for the cold-start median (default 5)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a fast check that everything runs: --duration 1 --warmup 0 --cold-starts 1 "
        "--concurrency 8 --warm-deploys 1 --job-versions 100 --listing-requests 20 --fleet-size 3 "
        "--cli-runs 5, "
        "unless given",
    )
    selection = parser.add_mutually_exclusive_group()
    selection.add_argument(
        "--only",
        type=_only,
        default=WRAPPER_KEYS | set(LIFECYCLE_KEYS) | {GATEWAY_KEY, CLI_KEY},
        help="comma-separated subset of a,b,c,d,429,deploy,fleet,listing,gateway,cli,dashboard,containers; "
        "`lifecycle` stands for deploy,fleet,listing (default all but dashboard and containers)",
    )
    selection.add_argument(
        "--lifecycle",
        action="store_true",
        help="only the lifecycle benchmarks (same as --only deploy,fleet,listing)",
    )
    parser.add_argument(
        "--warm-deploys", type=int, help="warm code-only redeploys; the median is reported (default 5)"
    )
    parser.add_argument(
        "--job-versions", type=int, help="versions registered for the GET /job section (default 1000)"
    )
    parser.add_argument("--listing-requests", type=int, help="measured GET /job requests (default 200)")
    parser.add_argument("--fleet-size", type=int, help="adder jobs running at once (default 50)")
    parser.add_argument(
        "--cli-runs", type=int, help="runs of `trackside --help` and `trackside list` (median; default 21)"
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=servers.BENCH_DIR / "results" / "latest.json",
        help="where the JSON results go (default benchmarks/results/latest.json)",
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=servers.BENCH_DIR / ".work",
        help="Racetrack's venv, server logs, the lifecycle part's data dirs (default benchmarks/.work)",
    )
    parser.add_argument(
        "--racetrack-spec",
        default=racetrack.DEFAULT_SPEC,
        help=f"what to install for (d) (default {racetrack.DEFAULT_SPEC})",
    )
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    def pick(given: int | None, normal: int, quick: int) -> int:
        return given if given is not None else (quick if args.quick else normal)

    for name in ("duration", "cold_starts"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be at least 1")
    if args.cli_runs is not None and args.cli_runs < 1:
        raise SystemExit("--cli-runs must be at least 1")
    if args.warmup is not None and args.warmup < 0:
        raise SystemExit("--warmup must be at least 0")
    concurrency = args.concurrency or ((8,) if args.quick else (1, 8, 64))
    return Settings(
        duration_s=pick(args.duration, 5, 1),
        warmup_s=pick(args.warmup, 1, 0),
        concurrency=concurrency,
        cold_starts=pick(args.cold_starts, 5, 1),
    )


def _lifecycle_settings(args: argparse.Namespace, sections: frozenset[str]) -> LifecycleSettings:
    def pick(name: str, normal: int, quick: int, minimum: int) -> int:
        given: int | None = getattr(args, name)
        if given is not None and given < minimum:
            raise SystemExit(f"--{name.replace('_', '-')} must be at least {minimum}")
        return given if given is not None else (quick if args.quick else normal)

    return LifecycleSettings(
        sections=sections,
        warm_deploys=pick("warm_deploys", 5, 1, 0),
        job_versions=pick("job_versions", 1000, 100, 1),
        listing_requests=pick("listing_requests", 200, 20, 1),
        fleet_size=pick("fleet_size", 50, 3, 1),
        idle_window_s=1.0 if args.quick else 5.0,
    )


def _environment(
    wrk: str, runner: racetrack.RacetrackRunner | None, specs: list[ServerSpec]
) -> dict[str, object]:
    def version(package: str) -> str | None:
        try:
            return importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            return None

    cpu_model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        None,
    )
    commit = (
        subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=servers.REPO, capture_output=True, text=True
        ).stdout.strip()
        or None
    )
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "git_commit": commit,
        "python": platform.python_version(),
        "cpu_model": cpu_model,
        "cpu_count": os.cpu_count(),
        "load_average_at_start": list(os.getloadavg()),
        "wrk": wrk_version(wrk),
        "uvicorn": version("uvicorn"),
        "uvloop": version("uvloop"),
        "httptools": version("httptools"),
        "racetrack_runner": None
        if runner is None
        else {
            "version": runner.version,
            "command": next((s.shown_command() for s in specs if s.key == "d"), None),
            "cwd": str(servers.JOBS / "adder_sync"),
        },
    }


def _log_dir(work_dir: Path) -> Path:
    """A fresh folder for this run's server logs; only the latest few runs' folders are kept."""
    root = work_dir / "logs"
    root.mkdir(parents=True, exist_ok=True)
    runs = sorted(p for p in root.iterdir() if p.is_dir())
    for old in runs[: max(0, len(runs) - KEPT_LOG_RUNS + 1)]:
        # A run still writing (one beside this one) has touched its folder recently.
        if time.time() - old.stat().st_mtime > 3600:
            shutil.rmtree(old, ignore_errors=True)
    return root / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"


def run(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    only: frozenset[str] = frozenset(LIFECYCLE_KEYS) if args.lifecycle else args.only
    wrapper_keys = only & WRAPPER_KEYS
    settings = _settings(args)
    lifecycle_settings = _lifecycle_settings(args, only & frozenset(LIFECYCLE_KEYS))
    # the lifecycle runs unpinned, on every CPU the harness was given
    all_cpus = os.sched_getaffinity(0)
    cores = Cores.detect()
    if wrapper_keys:
        if cores.load is not None:
            # The harness polls and samples from the load generator's core, never from the server's.
            os.sched_setaffinity(0, {cores.load})
        else:
            print(
                "warning: fewer than two cores, so the server and wrk are not pinned apart", file=sys.stderr
            )
    wrk: str | None = None
    runner = None
    uv_version = ""
    try:
        if wrapper_keys:
            wrk = ensure_wrk()
            if "d" in wrapper_keys:
                runner = racetrack.ensure_runner(servers.REPO, args.work_dir, args.racetrack_spec)
        if lifecycle_settings.sections:
            uv_version = lifecycle.check_prerequisites(lifecycle_settings)
        if CLI_KEY in only:
            uv_version = cli.check_prerequisites()
        if GATEWAY_KEY in only:
            ensure_wrk()
            gateway.ensure_nginx()
    except (WrkMissing, racetrack.RacetrackUnavailable, LifecycleUnavailable, gateway.NginxMissing) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_PREREQUISITE

    log_dir = _log_dir(args.work_dir)
    sections = _Sections()
    output, texts = sections.output, sections.texts
    with terminate_on_sigterm():
        try:
            if wrk is not None:
                builders = {"a": servers.wrapper_sync, "b": servers.wrapper_async, "c": servers.raw_asgi}
                specs = [builders[key]() for key in SERVER_KEYS if key in wrapper_keys and key in builders]
                if runner is not None:
                    specs.append(servers.racetrack(runner))
                reject = servers.rejecting_job() if REJECT_KEY in wrapper_keys else None
                suite = Suite(
                    settings,
                    specs,
                    reject,
                    Wrk(wrk, cores.load, args.work_dir),
                    cores,
                    log_dir,
                    log=say,
                )
                try:
                    results = suite.run(_environment(wrk, runner, specs))
                except (ServerFailed, WrkFailed) as e:
                    print(f"error: {e}", file=sys.stderr)
                    return 1
                results.environment["load_average_at_end"] = list(os.getloadavg())
                texts.append(report.render(results))
                output.update(report.to_json(results))
            if GATEWAY_KEY in only:
                sections.measure(
                    "gateway",
                    lambda: gateway.run(
                        Wrk(ensure_wrk(), cores.load, args.work_dir),
                        args.work_dir,
                        settings.concurrency,
                        settings.duration_s,
                        settings.warmup_s,
                        cores.server,
                    ),
                    lambda results: (
                        gateway.render(results)
                        + "\n\n"
                        + "\n".join(["Gateway targets", "", *(r.line() for r in gateway.ratios(results))])
                    ),
                    gateway.to_json,
                    failures=(LifecycleFailed, gateway.NginxMissing, WrkFailed, RuntimeError),
                )
            if DASHBOARD_KEY in only:
                sections.measure(
                    "dashboard",
                    lambda: dashboard.run(
                        dashboard.DashboardSettings(
                            job_versions=lifecycle_settings.job_versions, requests=5 if args.quick else 50
                        ),
                        args.work_dir,
                        log_dir,
                        log=say,
                    ),
                    dashboard.render,
                    dashboard.to_json,
                )
            if CONTAINERS_KEY in only:
                try:
                    sections.measure(
                        "containers",
                        lambda: containers.run(
                            containers.ContainerSettings(repeats=1 if args.quick else 3),
                            args.work_dir,
                            log_dir,
                            log=say,
                        ),
                        containers.render,
                        containers.to_json,
                    )
                except LifecycleUnavailable as e:
                    print(f"error: {e}", file=sys.stderr)
                    return EXIT_PREREQUISITE
            if lifecycle_settings.sections:
                # what the wrapper part measured is still reported when this fails
                sections.measure(
                    "lifecycle",
                    lambda: lifecycle.run(
                        lifecycle_settings, args.work_dir, log_dir, all_cpus, uv_version, log=say
                    ),
                    lifecycle.render,
                    lifecycle.to_json,
                )
            if CLI_KEY in only:
                # after the lifecycle part, whose API-measured deploys it is compared with
                sections.measure(
                    "cli",
                    lambda: cli.run(
                        cli.CliSettings(
                            startup_runs=args.cli_runs or (5 if args.quick else 21),
                            importtime_runs=1 if args.quick else 5,
                            warm_deploys=lifecycle_settings.warm_deploys,
                        ),
                        args.work_dir,
                        log_dir,
                        all_cpus,
                        uv_version,
                        cli.section_deploys(sections.output.get("lifecycle")),
                        log=say,
                    ),
                    cli.render,
                    cli.to_json,
                )
        except KeyboardInterrupt:
            print("\ninterrupted: all servers stopped", file=sys.stderr)
            return 130
    for text in texts:
        print()
        print(text)
    if output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(output, indent=2) + "\n")
        print(f"\nresults written to {args.output}")
    return 1 if sections.failed else 0


def say(line: str) -> None:
    print(line, flush=True)


class _Sections:
    """Each part's text and JSON as it is measured; a part that fails is reported and the rest go on."""

    def __init__(self) -> None:
        self.output: dict[str, Any] = {}
        self.texts: list[str] = []
        self.failed = False

    def measure(
        self,
        key: str,
        run: Callable[[], Any],
        render: Callable[[Any], str],
        to_json: Callable[[Any], Any],
        failures: tuple[type[BaseException], ...] = (LifecycleFailed,),
    ) -> None:
        try:
            results = run()
        except failures as e:
            print(f"error: {e}", file=sys.stderr)
            self.failed = True
            return
        self.texts.append(render(results))
        self.output[key] = to_json(results)


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
