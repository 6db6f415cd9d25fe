"""Templates (Jinja2, autoescaped) and the filters they use to show times, durations and statuses."""

from __future__ import annotations

import hashlib
import math
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup, escape

from .yaml_highlight import highlight_yaml

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"

STATUSES = ("running", "starting", "error", "lost", "stopped")  # a job version's
# status -> badge colour class; the text label is always shown next to the colour
_TONES = {
    "running": "ok",
    "done": "ok",
    "approved": "ok",
    "active": "ok",
    "starting": "busy",
    "in_progress": "busy",
    "pending": "wait",
    "error": "bad",
    "failed": "bad",
    "lost": "bad",
    "rejected": "bad",
    "revoked": "bad",
    "stopped": "off",
    "inactive": "off",
    "expired": "off",
}
_LABELS = {"in_progress": "in progress"}


def _as_datetime(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def when(value: Any) -> str:
    """`2026-01-02 13:04:05 UTC`, or an em dash for none."""
    moment = _as_datetime(value)
    return "—" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def ago(value: Any, now: float | None = None) -> str:
    """`just now`, `5 s ago`, `3 min ago`, `2 h ago`, `4 days ago`; `never` for none."""
    moment = _as_datetime(value)
    if moment is None:
        return "never"
    seconds = (now if now is not None else time.time()) - moment.timestamp()
    if seconds < 0:
        return "in the future"
    if seconds < 2:
        return "just now"
    if seconds < 60:
        return f"{int(seconds)} s ago"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 86400:
        return f"{int(seconds // 3600)} h ago"
    days = int(seconds // 86400)
    return f"{days} day{'s' if days != 1 else ''} ago"


def duration(seconds: Any) -> str:
    """`42 ms`, `1.42 s`, `12.3 s`, `4 min 05 s`, `2 h 03 min`; an em dash for none."""
    if seconds is None:
        return "—"
    value = float(seconds)
    if math.isnan(value):
        return "—"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 10:
        return f"{value:.2f} s"
    if value < 60:
        return f"{value:.1f} s"
    if value < 3600:
        return f"{int(value // 60)} min {int(value % 60):02d} s"
    return f"{int(value // 3600)} h {int(value % 3600 // 60):02d} min"


def number(value: Any, unit: str = "") -> str:
    if value is None:
        return "—"
    text = f"{value:,}" if isinstance(value, int) else f"{float(value):,.2f}".rstrip("0").rstrip(".")
    return f"{text} {unit}".rstrip()


def badge(status: Any, title: str | None = None) -> Markup:
    """A coloured badge with the status as text (colour is never the only signal)."""
    text = str(status or "unknown")
    if not title and text in _TONES:
        cached = _BADGES.get(text)
        if cached is None:
            cached = _BADGES[text] = _badge(text, None)
        return cached
    return _badge(text, title)


def _badge(text: str, title: str | None) -> Markup:
    # plain concatenation of escaped parts: a jobs page makes a thousand of these
    tone = _TONES.get(text, "off")
    label = escape(_LABELS.get(text, text))
    title_attr = f' title="{escape(title)}"' if title else ""
    return Markup(f'<span class="badge badge-{tone}" data-status="{escape(text)}"{title_attr}>{label}</span>')


_BADGES: dict[str, Markup] = {}


def static_version(directory: Path = STATIC) -> str:
    """A fingerprint of the static files, for cache-busting URLs."""
    digest = hashlib.sha256()
    for path in sorted(directory.glob("*")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )
    env.filters.update(when=when, ago=ago, duration=duration, number=number, badge=badge, yaml=highlight_yaml)
    env.globals.update(job_statuses=STATUSES)
    return env
