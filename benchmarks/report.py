"""The run's results as a plain-text table with the ratios that have targets, and as JSON."""

from __future__ import annotations

import json
import operator
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .suite import Point, Results, ServerResult

TARGET_CONCURRENCY = 64
MIB = 2**20


@dataclass(frozen=True)
class Ratio:
    name: str
    value: float | None
    unit: str
    target: float
    at_least: bool
    note: str = ""

    @property
    def met(self) -> bool | None:
        if self.value is None:
            return None
        compare: Callable[[float, float], bool] = operator.ge if self.at_least else operator.le
        return compare(self.value, self.target)

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "value": self.value,
            "unit": self.unit.strip(),
            "target": self.target,
            "at_least": self.at_least,
            "of_target": None if self.value is None else self.value / self.target,
            "met": self.met,
        }

    def line(self) -> str:
        shown = "n/a" if self.value is None else f"{self.value:.3g}{self.unit}"
        target = f"target {'>=' if self.at_least else '<='} {self.target:g}{self.unit}"
        verdict = {True: "met", False: "MISSED", None: "not measured"}[self.met]
        note = f"  ({self.note})" if self.note else ""
        return f"  {self.name:<40} {shown:>10}   {target:<20} {verdict}{note}"


def _by_key(results: Results) -> dict[str, ServerResult]:
    return {r.spec.key: r for r in results.servers}


def _comparison_concurrency(results: Results) -> int | None:
    levels = results.settings.concurrency
    if TARGET_CONCURRENCY in levels:
        return TARGET_CONCURRENCY
    return max(levels) if levels else None


def _rps(result: ServerResult | None, c: int | None) -> float | None:
    if result is None or c is None or c not in result.points:
        return None
    return result.points[c].load.rps


def _ratio(num: float | None, den: float | None) -> float | None:
    return num / den if num is not None and den else None


def ratios(results: Results) -> list[Ratio]:
    servers = _by_key(results)
    a, b, c, d = (servers.get(k) for k in "abcd")
    top = _comparison_concurrency(results)
    at = f"at c={top}" if top else ""
    low = min(results.settings.concurrency) if results.settings.concurrency else None
    p99_b = b.points[low].load.p99_ms if b and low in b.points else None
    p99_c = c.points[low].load.p99_ms if c and low in c.points else None
    # The raw app's tail at the same point shows how much of (b)'s tail is the host, not the wrapper.
    floor = f"(c) at c={low}: {p99_c:.2f} ms" if p99_c is not None else ""
    reject = results.reject
    out = [
        Ratio(f"(a)/(d) throughput {at}", _ratio(_rps(a, top), _rps(d, top)), "x", 8, True),
        Ratio(f"(b)/(c) throughput {at}", _ratio(_rps(b, top), _rps(c, top)), "x", 0.4, True),
        Ratio(f"p99 of (b) at c={low}", p99_b, " ms", 1, False, floor),
        Ratio("cold start of (a), median", a.cold_start_median_ms if a else None, " ms", 350, False),
        Ratio(
            "idle RSS of (a)", a.idle_rss_bytes / MIB if a and a.idle_rss_bytes else None, " MiB", 40, False
        ),
        Ratio(
            "server CPU per 429 (upper bound)",
            reject.cpu_ms_per_429_upper_bound if reject else None,
            " ms",
            0.1,
            False,
            "all server CPU / number of 429s",
        ),
    ]
    return out


def _cpu_ratio_line(results: Results) -> str | None:
    """Server CPU per request of (d) over (a): the comparison least disturbed by a noisy host."""
    servers = _by_key(results)
    a, d = servers.get("a"), servers.get("d")
    top = _comparison_concurrency(results)
    if a is None or d is None or top is None or top not in a.points or top not in d.points:
        return None
    cpu_a, cpu_d = a.points[top].cpu_ms_per_request, d.points[top].cpu_ms_per_request
    if not cpu_a or not cpu_d:
        return None
    name = f"(d)/(a) server CPU per request at c={top}"
    return f"  {name:<40} {cpu_d / cpu_a:>9.3g}x   (no target)"


def _table(headers: list[str], rows: list[list[str]], left: int = 1) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def fmt(cells: list[str]) -> str:
        return "  ".join(
            cell.ljust(w) if i < left else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return [fmt(headers), fmt(["-" * w for w in widths]), *(fmt(r) for r in rows)]


def _ms(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def render(results: Results) -> str:
    s = results.settings
    cores = results.cores
    where = (
        f"server pinned to CPU {cores.server}, wrk to CPU {cores.load}"
        if cores.pinned
        else "NOT pinned (fewer than two cores): numbers are skewed"
    )
    lines = [f"Throughput and latency ({where}; {s.duration_s} s per point after {s.warmup_s} s warm-up)"]
    load_avg = results.environment.get("load_average_at_start")
    if isinstance(load_avg, list) and load_avg:
        cpus = results.environment.get("cpu_count")
        lines.append(
            f"Load average at start: {load_avg[0]:.2f} on {cpus} CPUs (other work on the host skews single runs)"
        )
    lines.append("")
    rows = []
    levels = sorted({c for result in results.servers for c in result.points})
    # Grouped by concurrency, so that the servers being compared sit next to each other.
    for c in levels:
        for result in results.servers:
            point = result.points.get(c)
            if point is None:
                continue
            load = point.load
            rows.append(
                [
                    result.spec.title,
                    str(c),
                    f"{load.rps:.0f}",
                    _ms(load.p50_ms),
                    _ms(load.p99_ms),
                    _ms(point.cpu_ms_per_request, 3),
                    f"{point.cpu_share * 100:.0f}",
                    f"{load.client_cpu_s / load.duration_s * 100:.0f}" if load.duration_s else "n/a",
                    str(load.requests),
                    str(load.non_2xx + load.socket_errors),
                ]
            )
    if rows:
        headers = ["server", "c", "req/s", "p50 ms", "p99 ms", "CPU ms/req", "CPU %", "wrk CPU %", "requests"]
        lines += _table([*headers, "errors"], rows)
        lines += [
            "",
            f"Cold start (process start to first /ready 200, median of {s.cold_starts}) and idle RSS",
            "",
        ]
        lines += _table(
            ["server", "cold start ms", "samples ms", "idle RSS MiB"],
            [
                [
                    r.spec.title,
                    _ms(r.cold_start_median_ms, 0),
                    " ".join(f"{ms:.0f}" for ms in r.cold_start_ms),
                    _ms(r.idle_rss_bytes / MIB if r.idle_rss_bytes else None, 1),
                ]
                for r in results.servers
            ],
        )
    if results.reject:
        rj = results.reject
        load = rj.point.load
        lines += ["", f"429 rejection: {rj.spec.label}, c={load.concurrency}", ""]
        lines += _table(
            ["429/s", "200/s", "other", "CPU ms per 429 (upper bound)", "CPU %", "wrk CPU %"],
            [
                [
                    f"{rj.rejected_per_s:.0f}",
                    f"{rj.accepted / load.duration_s:.0f}",
                    str(load.requests - rj.rejected - rj.accepted + load.socket_errors),
                    _ms(rj.cpu_ms_per_429_upper_bound, 4),
                    f"{rj.point.cpu_share * 100:.0f}",
                    f"{load.client_cpu_s / load.duration_s * 100:.0f}" if load.duration_s else "n/a",
                ]
            ],
            left=0,
        )
    lines += ["", "Ratios and targets", ""]
    lines += [r.line() for r in ratios(results)]
    cpu_line = _cpu_ratio_line(results)
    if cpu_line:
        lines.append(cpu_line)
    return "\n".join(lines)


def to_json(results: Results) -> dict[str, Any]:
    s = results.settings
    return {
        "settings": {
            "duration_s": s.duration_s,
            "warmup_s": s.warmup_s,
            "concurrency": list(s.concurrency),
            "cold_starts": s.cold_starts,
            "reject_concurrency": s.reject_concurrency,
        },
        "cores": {"server": results.cores.server, "load": results.cores.load},
        "environment": results.environment,
        "servers": {
            r.spec.key: {
                "label": r.spec.label,
                "command": r.spec.shown_command(),
                "cwd": str(r.spec.cwd),
                "points": [_point_json(c, p) for c, p in sorted(r.points.items())],
                "cold_start_ms": {"median": r.cold_start_median_ms, "samples": r.cold_start_ms},
                "idle_rss_mib": r.idle_rss_bytes / MIB if r.idle_rss_bytes else None,
            }
            for r in results.servers
        },
        "reject429": None
        if results.reject is None
        else {
            "label": results.reject.spec.label,
            "command": results.reject.spec.shown_command(),
            **_point_json(results.reject.point.load.concurrency, results.reject.point),
            "rejected": results.reject.rejected,
            "accepted": results.reject.accepted,
            "rejected_per_s": results.reject.rejected_per_s,
            "cpu_ms_per_429_upper_bound": results.reject.cpu_ms_per_429_upper_bound,
        },
        "ratios": [r.to_json() for r in ratios(results)],
    }


def _point_json(concurrency: int, point: Point) -> dict[str, Any]:
    load = point.load
    return {
        "concurrency": concurrency,
        "requests": load.requests,
        "duration_s": load.duration_s,
        "rps": load.rps,
        "p50_ms": load.p50_ms,
        "p99_ms": load.p99_ms,
        "max_ms": load.max_ms,
        "non_2xx": load.non_2xx,
        "socket_errors": load.socket_errors,
        "statuses": {str(k): v for k, v in sorted(load.statuses.items())},
        "server_cpu_s": point.cpu_s,
        "server_cpu_ms_per_request": point.cpu_ms_per_request,
        "server_cpu_share": point.cpu_share,
        "wrk_cpu_s": load.client_cpu_s,
    }


def write_json(results: Results, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_json(results), indent=2) + "\n")
