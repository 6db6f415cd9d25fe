"""What no manifest may contain, checked before anything walks it recursively: nesting deeper
than any real manifest needs, and text no file, process or git command can carry (NUL
characters, lone surrogates)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from trackside.manifest.errors import FieldError

MAX_DEPTH = 32
# YAML aliases can make a small text expand to a huge tree ("billion laughs")
MAX_NODES = 100_000


def _bad_text(text: str) -> str | None:
    if "\x00" in text:
        return "text without NUL characters"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "valid Unicode text (no lone surrogates)"
    return None


def limit_errors(document: Any) -> list[FieldError]:
    """Field errors for values beyond the limits (iterative: deep input cannot exhaust the stack)."""
    errors: list[FieldError] = []
    stack: list[tuple[Any, str, int]] = [(document, "", 0)]
    nodes = 0
    while stack:
        value, path, depth = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            return [FieldError("(manifest)", "...", f"at most {MAX_NODES} values in all")]
        if depth > MAX_DEPTH:
            errors.append(FieldError(path or "(manifest)", "...", f"at most {MAX_DEPTH} levels of nesting"))
            continue
        if isinstance(value, str):
            expected = _bad_text(value)
            if expected:
                errors.append(
                    FieldError(path or "(manifest)", value.encode("utf-8", "replace").decode(), expected)
                )
        elif isinstance(value, Mapping):
            for key, item in value.items():
                name = str(key)
                expected = _bad_text(name)
                child = f"{path}.{name}" if path else name
                if expected:
                    errors.append(
                        FieldError(
                            path or "(manifest)",
                            name.encode("utf-8", "replace").decode(),
                            f"keys in {expected}",
                        )
                    )
                    continue
                stack.append((item, child, depth + 1))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                stack.append((item, f"{path}[{index}]", depth + 1))
    return errors
