"""The jobs page's list: every version the user may read, filtered by text and status, sorted, and
grouped by family (versions of a family together, newest first) when sorted by name.

A thousand versions make a thousand rows, so each row's text is worked out here, once, in plain
Python (badge, relative times, links): the template only puts the pieces in place. That keeps the
page within its 100 ms (benchmarks/dashboard.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from markupsafe import Markup

from .rendering import STATUSES, ago, badge

SORTS = ("name", "status", "owner", "deployed_by", "last_call", "updated")
# the worst first: what needs attention
_STATUS_ORDER = {"error": 0, "lost": 1, "starting": 2, "running": 3, "stopped": 4}
_PART = re.compile(r"\d+|[^\d.+-]+")
_PATH_SAFE = re.compile(r"[A-Za-z0-9._~-]+")
ERROR_SHOWN = 140

__all__ = ["SORTS", "STATUSES", "Family", "JobList", "Row", "build", "version_key"]


def version_key(version: str) -> tuple[Any, ...]:
    """Orders `1.10.0` after `1.9.0` and a release after its prereleases (`1.0.0-rc.1`)."""
    core, _, pre = version.partition("+")[0].partition("-")
    parts = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in _PART.findall(core))
    pre_parts = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in _PART.findall(pre))
    return (parts, 0 if pre else 1, pre_parts)


@dataclass(slots=True)
class Row:
    """One version as the jobs page shows it."""

    name: str
    version: str
    status: str
    badge: Markup
    error: str | None
    error_shown: str | None
    owner_email: str
    deployed_by: str
    replicas: int
    last_call_time: float | None
    last_call: str
    updated: str
    page: str  # the job page's path below the dashboard's prefix
    gateway: str | None  # the job's address on the gateway while it runs
    webview: bool
    latest: bool
    repeat: bool = False  # not the first row of its family (the name is not repeated on wide screens)


@dataclass
class Family:
    name: str  # "" when the list is not grouped
    versions: list[Row] = field(default_factory=list)


@dataclass
class JobList:
    groups: list[Family]
    shown: int
    total: int
    families: int
    by_status: dict[str, int]


def search_text(job: dict[str, Any]) -> str:
    """What the text filter looks in (the page's script filters its rows by the same cells)."""
    return " ".join(
        str(job.get(k) or "") for k in ("name", "version", "owner_email", "deployed_by", "status")
    ).lower()


def _sort_key(sort: str) -> Callable[[dict[str, Any]], Any]:
    if sort == "status":
        return lambda j: (_STATUS_ORDER.get(j["status"], 9), j["name"])
    if sort == "owner":
        return lambda j: ((j.get("owner_email") or "").lower(), j["name"])
    if sort == "deployed_by":
        return lambda j: ((j.get("deployed_by") or "").lower(), j["name"])
    if sort == "last_call":
        return lambda j: (j.get("last_call_time") or 0.0, j["name"])
    if sort == "updated":
        return lambda j: (j.get("update_time") or 0.0, j["name"])
    return lambda j: j["name"]


def _segment(text: str) -> str:
    return text if _PATH_SAFE.fullmatch(text) else quote(text, safe="")


def _row(job: dict[str, Any], now: float, link: Callable[[str], str]) -> Row:
    error = job.get("error")
    status = job["status"]
    name, version = job["name"], job["version"]
    shown = error if error is None or len(error) <= ERROR_SHOWN else error[: ERROR_SHOWN - 3] + "..."
    return Row(
        name=name,
        version=version,
        status=status,
        badge=badge(status, error),
        error=error,
        error_shown=shown,
        owner_email=job.get("owner_email") or "",
        deployed_by=job.get("deployed_by") or "—",
        replicas=job.get("replicas") or 0,
        last_call_time=job.get("last_call_time"),
        last_call=ago(job.get("last_call_time"), now),
        updated=ago(job.get("update_time"), now),
        page=f"/jobs/{_segment(name)}/{_segment(version)}",
        gateway=link(job["pub_url"]) if status == "running" else None,
        webview=bool(job.get("webview")),
        latest=bool(job.get("latest")),
    )


def build(
    jobs: list[dict[str, Any]],
    text: str = "",
    status: str = "",
    sort: str = "name",
    order: str = "",
    *,
    now: float,
    link: Callable[[str], str] = lambda url: url,
) -> JobList:
    """`order`: asc or desc; by default names go A-Z, times newest first, statuses worst first.
    `link` makes a job's gateway address a link (see Dashboard.gateway_link)."""
    sort = sort if sort in SORTS else "name"
    descending = order == "desc" if order in ("asc", "desc") else sort in ("last_call", "updated")
    by_status: dict[str, int] = {}
    for job in jobs:
        by_status[job["status"]] = by_status.get(job["status"], 0) + 1
    words = text.lower().split()
    shown = [
        j
        for j in jobs
        if (not status or j["status"] == status) and (not words or all(w in search_text(j) for w in words))
    ]
    groups: list[Family]
    if sort == "name":
        families: dict[str, list[dict[str, Any]]] = {}
        for job in shown:
            families.setdefault(job["name"], []).append(job)
        groups = []
        for name in sorted(families, reverse=descending):
            versions = sorted(families[name], key=lambda j: version_key(j["version"]), reverse=True)
            rows = [_row(j, now, link) for j in versions]
            for row in rows[1:]:
                row.repeat = True
            groups.append(Family(name, rows))
    else:
        ordered = sorted(shown, key=_sort_key(sort), reverse=descending)
        groups = [Family("", [_row(j, now, link) for j in ordered])]
    return JobList(
        groups=groups,
        shown=len(shown),
        total=len(jobs),
        families=len({j["name"] for j in jobs}),
        by_status=by_status,
    )
