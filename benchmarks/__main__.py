"""`python -m benchmarks [--duration S] [--quick] [--only a,b,c,d,429] ...` (what `make bench` runs)."""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

from . import racetrack, report, servers
from .load import Wrk, WrkFailed, WrkMissing, ensure_wrk, wrk_version
from .processes import Cores, ServerFailed, terminate_on_sigterm
from .servers import REJECT_KEY, SERVER_KEYS, ServerSpec
from .suite import Settings, Suite

# Exit status when something the harness needs (wrk, uv, PyPI) is not available.
EXIT_PREREQUISITE = 3
KEPT_LOG_RUNS = 5


def _concurrency(text: str) -> tuple[int, ...]:
    try:
        levels = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like 1,8,64, got {text!r}") from None
    if not levels or min(levels) < 1:
        raise argparse.ArgumentTypeError("concurrency levels must be >= 1")
    return levels


def _only(text: str) -> frozenset[str]:
    chosen = frozenset(part.strip().lower() for part in text.split(",") if part.strip())
    unknown = chosen - {*SERVER_KEYS, REJECT_KEY}
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"choose from a, b, c, d, 429 (got {text!r})")
    return chosen


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Measure the wrapper (a: def perform, b: async def perform) against a raw ASGI app (c) "
        "and Racetrack's runner (d), plus cold start, idle RSS and the cost of a 429.",
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
        "--concurrency 8, unless given",
    )
    parser.add_argument(
        "--only",
        type=_only,
        default=frozenset({*SERVER_KEYS, REJECT_KEY}),
        help="comma-separated subset of a,b,c,d,429 (default all)",
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
        help="Racetrack's venv and server logs (default benchmarks/.work)",
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
    if args.warmup is not None and args.warmup < 0:
        raise SystemExit("--warmup must be at least 0")
    concurrency = args.concurrency or ((8,) if args.quick else (1, 8, 64))
    return Settings(
        duration_s=pick(args.duration, 5, 1),
        warmup_s=pick(args.warmup, 1, 0),
        concurrency=concurrency,
        cold_starts=pick(args.cold_starts, 5, 1),
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
    settings = _settings(args)
    cores = Cores.detect()
    if cores.load is not None:
        # The harness polls and samples from the load generator's core, never from the server's.
        os.sched_setaffinity(0, {cores.load})
    else:
        print("warning: fewer than two cores, so the server and wrk are not pinned apart", file=sys.stderr)
    try:
        wrk = ensure_wrk()
        runner = None
        if "d" in args.only:
            runner = racetrack.ensure_runner(servers.REPO, args.work_dir, args.racetrack_spec)
    except (WrkMissing, racetrack.RacetrackUnavailable) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_PREREQUISITE

    builders = {"a": servers.wrapper_sync, "b": servers.wrapper_async, "c": servers.raw_asgi}
    specs = [builders[key]() for key in SERVER_KEYS if key in args.only and key in builders]
    if runner is not None:
        specs.append(servers.racetrack(runner))
    reject = servers.rejecting_job() if REJECT_KEY in args.only else None
    suite = Suite(
        settings,
        specs,
        reject,
        Wrk(wrk, cores.load, args.work_dir),
        cores,
        _log_dir(args.work_dir),
        log=lambda line: print(line, flush=True),
    )
    with terminate_on_sigterm():
        try:
            results = suite.run(_environment(wrk, runner, specs))
            results.environment["load_average_at_end"] = list(os.getloadavg())
        except KeyboardInterrupt:
            print("\ninterrupted: all servers stopped", file=sys.stderr)
            return 130
        except (ServerFailed, WrkFailed) as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
    print()
    print(report.render(results))
    report.write_json(results, args.output)
    print(f"\nresults written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
