"""The request body size limit: its default and how sizes are written (16M, 512k, 1048576)."""

from __future__ import annotations

import os

DEFAULT_MAX_BODY = 16 * 1024 * 1024
ENV_VAR = "TRACKSIDE_MAX_BODY_SIZE"
_UNITS = {"k": 1024, "m": 1024**2, "g": 1024**3}


def parse_size(text: str) -> int:
    """Bytes from "1048576", "512k", "16M", "16MiB"; ValueError naming the text otherwise."""
    t = text.strip().lower().removesuffix("ib").removesuffix("b")
    try:
        number = float(t[:-1]) * _UNITS[t[-1]] if t and t[-1] in _UNITS else float(t)
    except ValueError:
        raise ValueError(f"not a size: {text!r} (examples: 1048576, 512k, 16M)") from None
    if number < 1 or number != number:
        raise ValueError(f"not a size: {text!r} (must be at least 1 byte)")
    return int(number)


def max_body_from_env() -> int:
    value = os.environ.get(ENV_VAR)
    if not value:
        return DEFAULT_MAX_BODY
    try:
        return parse_size(value)
    except ValueError as e:
        raise ValueError(f"{ENV_VAR}: {e}") from None
