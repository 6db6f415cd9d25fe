"""``-e key.path=value`` overrides of manifest fields (Racetrack's ``--extra-vars``).

The key is a dotted path (``git.branch``, ``jobtype_extra.max_concurrency``,
``runtime_env.LOG_LEVEL``); missing mappings on the way are created. The value is parsed as YAML
(``replicas=3`` is a number, ``public_endpoints=[/a, /b]`` a list, ``git.branch='007'`` a
string); an empty value (``key=``) unsets the field.
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass
from typing import Any

from trackside.manifest.errors import FieldError
from trackside.manifest.yaml_text import YamlSyntaxError, load_yaml

__all__ = ["Override", "OverrideError", "apply_overrides", "parse_override"]

_SYNTAX = "KEY.PATH=VALUE, e.g. git.branch=main or replicas=2 (VALUE in YAML)"


class OverrideError(ValueError):
    """An override that cannot be applied; ``error`` says which and why."""

    def __init__(self, error: FieldError) -> None:
        super().__init__(error.message)
        self.error = error


@dataclass(frozen=True)
class Override:
    path: tuple[str, ...]
    value: Any
    text: str  # as given, for error messages

    @property
    def key(self) -> str:
        return ".".join(self.path)


def parse_override(text: str) -> Override:
    """``git.branch=main`` -> ``Override(("git", "branch"), "main", ...)``; ``OverrideError`` if malformed."""
    origin = f"-e {text}"
    if not isinstance(text, str) or "=" not in text:
        raise OverrideError(FieldError(str(text), text, _SYNTAX, problem="malformed override", origin=origin))
    key, _, raw = text.partition("=")
    path = tuple(part.strip() for part in key.split("."))
    if not key.strip() or not all(path):
        raise OverrideError(FieldError(key, text, _SYNTAX, problem="malformed override key", origin=origin))
    try:
        value = load_yaml(raw) if raw.strip() else None
    except YamlSyntaxError as exc:
        raise OverrideError(
            FieldError(
                ".".join(path), raw, f"a YAML value ({exc})", problem="unparsable value", origin=origin
            )
        ) from None
    return Override(path, value, text)


# resolved before overrides apply, so an override cannot change it
_NOT_OVERRIDABLE = ("extends",)


def apply_overrides(data: MutableMapping[Any, Any], overrides: Iterable[str]) -> list[FieldError]:
    """Apply each override to ``data`` in order; return the errors of those that could not be applied."""
    errors: list[FieldError] = []
    for text in overrides:
        try:
            override = parse_override(text)
            if override.path[0] in _NOT_OVERRIDABLE:
                raise OverrideError(
                    FieldError(
                        override.key,
                        override.value,
                        "another field: extends is resolved before overrides apply",
                        problem="cannot override",
                        origin=f"-e {text}",
                    )
                )
            _apply(data, override)
        except OverrideError as exc:
            errors.append(exc.error)
    return errors


def _apply(data: MutableMapping[Any, Any], override: Override) -> None:
    target = data
    for depth, part in enumerate(override.path[:-1]):
        child = target.get(part)
        if child is None:
            if override.value is None:
                return  # unsetting below something that is not there: nothing to do
            child = target[part] = {}
        elif not isinstance(child, MutableMapping):
            inside = ".".join(override.path[: depth + 1])
            raise OverrideError(
                FieldError(
                    override.key,
                    override.value,
                    f"a path through mappings ({inside} is a {_kind(child)}, not a mapping)",
                    problem="cannot set",
                    origin=f"-e {override.text}",
                )
            )
        target = child
    last = override.path[-1]
    if override.value is None:
        target.pop(last, None)
    else:
        target[last] = override.value


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "list"
    if isinstance(value, str):
        return "string"
    return type(value).__name__
