"""Parameter descriptions and summaries from docstrings (reST `:param x:` and Google `Args:`)."""

from __future__ import annotations

import inspect
import re
from typing import Any

_REST_PARAM = re.compile(r"^\s*:param\s+(?:[^:]*\s)?(\w+)\s*:\s*(.*)$")
_GOOGLE_SECTION = re.compile(r"^\s*(Args|Arguments|Parameters|Params)\s*:\s*$")
_GOOGLE_ITEM = re.compile(r"^\s*(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")
_ANY_SECTION = re.compile(r"^\s*[A-Z][A-Za-z ]+:\s*$")


def summary(obj: Any) -> str:
    """The docstring's text before its parameter sections."""
    doc = inspect.getdoc(obj) or ""
    lines: list[str] = []
    for line in doc.splitlines():
        if _REST_PARAM.match(line) or line.strip().startswith(":return") or _GOOGLE_SECTION.match(line):
            break
        lines.append(line)
    return "\n".join(lines).strip()


def parameter_descriptions(obj: Any) -> dict[str, str]:
    doc = inspect.getdoc(obj) or ""
    result: dict[str, str] = {}
    in_google = False
    current: str | None = None
    for line in doc.splitlines():
        rest = _REST_PARAM.match(line)
        if rest:
            current = rest.group(1)
            result[current] = rest.group(2).strip()
            in_google = False
            continue
        if _GOOGLE_SECTION.match(line):
            in_google, current = True, None
            continue
        if in_google:
            if not line.strip():
                current = None
                continue
            if _ANY_SECTION.match(line) and not line.startswith((" ", "\t")):
                in_google = False
                continue
            item = _GOOGLE_ITEM.match(line)
            if item and (current is None or len(line) - len(line.lstrip()) <= _indent_of(doc, current)):
                current = item.group(1).lstrip("*")
                result[current] = item.group(2).strip()
                continue
        if current and line.startswith((" ", "\t")) and line.strip() and not line.strip().startswith(":"):
            result[current] = (result[current] + " " + line.strip()).strip()
        elif not line.strip():
            current = None if not in_google else current
    return result


def _indent_of(doc: str, name: str) -> int:
    for line in doc.splitlines():
        stripped = line.lstrip()
        if stripped.startswith((name, "*" + name, "**" + name)):
            return len(line) - len(stripped)
    return 0
