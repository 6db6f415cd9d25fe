"""Deep merge of a base manifest and the overlay that ``extends`` it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["deep_merge", "plain_copy"]


def deep_merge(base: Mapping[Any, Any], overlay: Mapping[Any, Any]) -> dict[Any, Any]:
    """``base`` with ``overlay`` laid over it, as a new mapping (neither input is changed).

    Mappings merge key by key, recursively; lists and scalars of the overlay replace the base's;
    a null in the overlay removes the key (``null`` means "not set").
    """
    merged = plain_copy(base)
    for key, value in overlay.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = plain_copy(value)
    return merged


def plain_copy(value: Any) -> Any:
    """A copy of nested mappings and lists (as dicts and lists); other values are shared."""
    return _copy(value, set())


def _copy(value: Any, active: set[int]) -> Any:
    if not isinstance(value, Mapping | list):
        return value
    if id(value) in active:  # a recursive YAML alias: leave the cycle for validation to reject
        return value
    active.add(id(value))
    try:
        if isinstance(value, Mapping):
            return {k: _copy(v, active) for k, v in value.items()}
        return [_copy(v, active) for v in value]
    finally:
        active.discard(id(value))
