"""Kubernetes resource quantities (``100m``, ``0.5``, ``512Mi``, ``1G``, ``2e3``) for ``resources``.

A quantity keeps the text the author wrote (for display and serialisation) next to its value:
CPU in cores (``Decimal``, ``100m`` = 0.1), memory in bytes (``int``, ``1Ki`` = 1024).
Grammar (as Kubernetes): ``<number><suffix>`` where the number may have a sign and a fraction and
the suffix is a binary SI suffix (``Ki Mi Gi Ti Pi Ei``), a decimal SI suffix
(``n u m k M G T P E`` or none) or a decimal exponent (``e3``, ``E-2``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation, localcontext

__all__ = ["CpuQuantity", "MemoryQuantity", "parse_cpu", "parse_memory", "parse_quantity"]

_QUANTITY = re.compile(
    r"(?P<number>[+-]?(?:\d+(?:\.\d*)?|\.\d+))"
    r"(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?\d{1,4})?",
    re.ASCII,
)
_BINARY = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_MAX_TEXT = 64
_MAX_MAGNITUDE = 30  # 10**30 bytes or cores: far beyond any machine; keeps absurd inputs cheap


def parse_quantity(text: str | int | float) -> Decimal:
    """The plain value of a Kubernetes quantity; ``ValueError`` when it is not one."""
    if isinstance(text, bool) or not isinstance(text, str | int | float):
        raise ValueError(f"{text!r} is not a quantity")
    raw = text.strip() if isinstance(text, str) else str(text)
    match = _QUANTITY.fullmatch(raw)
    if match is None or len(raw) > _MAX_TEXT:
        raise ValueError(f"{text!r} is not a quantity")
    suffix = match["suffix"] or ""
    with localcontext() as ctx:
        ctx.prec = 2 * _MAX_TEXT
        try:
            number = Decimal(match["number"])
            if suffix in _BINARY:
                value = number * (1024 ** _BINARY[suffix])
            elif suffix in _DECIMAL:
                value = number.scaleb(_DECIMAL[suffix])
            else:
                value = number.scaleb(int(suffix[1:]))
        except InvalidOperation as exc:  # pragma: no cover - the pattern keeps inputs finite
            raise ValueError(f"{text!r} is not a quantity") from exc
    if value and value.adjusted() > _MAX_MAGNITUDE:
        raise ValueError(f"{text!r} is too large")
    return value


def _source_text(raw: str | int | float) -> str:
    return raw.strip() if isinstance(raw, str) else str(raw)


@dataclass(frozen=True)
class CpuQuantity:
    """A CPU amount: ``text`` as written, ``cores`` as a number (``100m`` -> 0.1)."""

    text: str
    cores: Decimal

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class MemoryQuantity:
    """A memory amount: ``text`` as written, ``bytes`` as an integer (``1Ki`` -> 1024)."""

    text: str
    bytes: int

    def __str__(self) -> str:
        return self.text


def parse_cpu(raw: str | int | float) -> CpuQuantity:
    """A positive CPU quantity (``100m``, ``0.5``, ``2``); ``ValueError`` otherwise."""
    value = parse_quantity(raw)
    if value <= 0:
        raise ValueError(f"{raw!r} is not a positive quantity")
    return CpuQuantity(_source_text(raw), value)


def parse_memory(raw: str | int | float) -> MemoryQuantity:
    """A positive, whole number of bytes (``512Mi``, ``1G``, ``2e9``); ``ValueError`` otherwise."""
    value = parse_quantity(raw)
    if value <= 0:
        raise ValueError(f"{raw!r} is not a positive quantity")
    if value != value.to_integral_value():
        raise ValueError(f"{raw!r} is not a whole number of bytes")
    return MemoryQuantity(_source_text(raw), int(value))
