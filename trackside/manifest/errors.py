"""What is wrong with a manifest: one ``FieldError`` per problem, all of them in one ``ManifestError``."""

from __future__ import annotations

import re
import reprlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails, PydanticCustomError

__all__ = [
    "MANIFEST_ERROR_TYPE",
    "FieldError",
    "ManifestError",
    "field_errors_from_validation",
    "format_path",
    "invalid",
]

# the pydantic error type of the manifest's own checks; its context carries "expected"
MANIFEST_ERROR_TYPE = "manifest"

Loc = tuple[str | int, ...]

_repr = reprlib.Repr()
_repr.maxstring = 80
_repr.maxother = 80
_repr.maxlist = _repr.maxdict = _repr.maxtuple = _repr.maxset = 6
_repr.maxlevel = 3


def show_value(value: Any) -> str:
    """A short, single-line rendering of a value for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    try:
        return _repr.repr(value)
    except Exception:  # a value whose repr fails must not hide the error being reported
        return f"<{type(value).__name__}>"


@dataclass(frozen=True)
class FieldError:
    """One problem: the field's dotted ``path``, the bad ``value`` and what was ``expected``.

    ``problem`` says what is wrong when it is not simply a bad value ("missing",
    "unknown field"); ``origin`` says where the value came from when it was not the manifest
    file itself (a ``-e`` override, a base manifest).
    """

    path: str
    value: Any
    expected: str
    problem: str = ""
    origin: str | None = None

    @property
    def message(self) -> str:
        where = self.path or "(manifest)"
        if self.problem == "missing":
            what = "missing"
        elif self.problem:
            what = f"{self.problem} (value {show_value(self.value)})"
        else:
            what = f"got {show_value(self.value)}"
        text = f"{where}: {what}; expected {self.expected}"
        if self.origin:
            text += f" [from {self.origin}]"
        return one_line(text)

    def __str__(self) -> str:
        return self.message


class ManifestError(Exception):
    """An invalid manifest. ``errors`` lists every problem found; ``str()`` shows them one a line."""

    def __init__(self, errors: Iterable[FieldError], source: str | None = None) -> None:
        self.errors: list[FieldError] = list(errors)
        self.source = source
        super().__init__(self._render())

    def _render(self) -> str:
        count = len(self.errors)
        where = f" {self.source}" if self.source else ""
        head = f"invalid manifest{where}: {count} error{'s' if count != 1 else ''}"
        return "\n".join([head, *(f"  - {e.message}" for e in self.errors)])

    def __str__(self) -> str:
        return self._render()

    @property
    def paths(self) -> list[str]:
        """The field paths of the errors, in order (handy in tests and UIs)."""
        return [e.path for e in self.errors]


def invalid(expected: str) -> PydanticCustomError:
    """The error a manifest field validator raises: ``expected`` says what a valid value is."""
    return PydanticCustomError(MANIFEST_ERROR_TYPE, "expected {expected}", {"expected": expected})


def one_line(text: str) -> str:
    """``text`` with line breaks and other control characters escaped (``\\n``)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


_PLAIN_KEY = re.compile(r"[^\s.\[\]'\"]+")


def format_path(loc: Sequence[str | int]) -> str:
    """``("jobtype_extra", "max_concurrency")`` -> ``jobtype_extra.max_concurrency``.

    List indexes show as ``[2]``; a key that is not plain text (empty, with spaces, dots or
    control characters) as ``['my key']``; pydantic's ``[key]`` marker (a bad key) is dropped.
    """
    text = ""
    for part in loc:
        if part == "[key]":
            continue
        if isinstance(part, str) and _PLAIN_KEY.fullmatch(part) and part.isprintable():
            text += f".{part}" if text else part
        else:
            text += f"[{part!r}]"
    return text


# what pydantic's own error types mean, phrased as what was expected
_EXPECTED: dict[str, str | Callable[[dict[str, Any]], str]] = {
    "string_type": "a string",
    "string_unicode": "a string",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "list_type": "a list",
    "invalid_key": "string keys",
    "recursion_loop": "a finite structure (no recursive YAML aliases)",
    "greater_than_equal": lambda ctx: f"a number >= {ctx.get('ge')}",
    "greater_than": lambda ctx: f"a number > {ctx.get('gt')}",
    "less_than_equal": lambda ctx: f"a number <= {ctx.get('le')}",
    "literal_error": lambda ctx: f"one of {ctx.get('expected')}",
}


def field_errors_from_validation(
    exc: ValidationError,
    known_fields: Callable[[Loc], Sequence[str] | None] = lambda loc: None,
    required_expected: Callable[[Loc], str | None] = lambda loc: None,
) -> list[FieldError]:
    """Turn pydantic's errors into ``FieldError``s.

    ``known_fields(parent_loc)`` names the fields allowed where an unknown one was found;
    ``required_expected(loc)`` says what a missing required field should hold.
    """
    return [_field_error(d, known_fields, required_expected) for d in exc.errors()]


def _field_error(
    detail: ErrorDetails,
    known_fields: Callable[[Loc], Sequence[str] | None],
    required_expected: Callable[[Loc], str | None],
) -> FieldError:
    loc: Loc = tuple(detail["loc"])
    kind = detail["type"]
    ctx: dict[str, Any] = dict(detail.get("ctx") or {})
    value = detail.get("input")
    path = format_path(loc)
    if kind == "missing":
        return FieldError(path, None, required_expected(loc) or "a value (required)", problem="missing")
    if kind == "extra_forbidden":
        known = known_fields(loc[:-1])
        expected = f"one of the known fields: {', '.join(known)}" if known else "no such field"
        return FieldError(path, value, expected, problem="unknown field")
    if kind == MANIFEST_ERROR_TYPE and "expected" in ctx:
        return FieldError(path, value, str(ctx["expected"]))
    phrase = _EXPECTED.get(kind)
    expected = (phrase(ctx) if callable(phrase) else phrase) or detail["msg"]
    if loc and loc[-1] == "[key]":
        expected = f"{expected} as the name"
    return FieldError(path, value, expected)
