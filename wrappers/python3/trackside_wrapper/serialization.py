"""Turning whatever a job method returns into JSON bytes."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

import msgspec


class NotSerializableError(TypeError):
    pass


def _fallback(value: Any) -> Any:
    # msgspec handles builtins, dataclasses, datetimes, Decimal, UUID, enums, sets and bytes
    # (base64) natively; the rest lands here. numpy is never imported: its arrays and scalars,
    # like pandas objects, are recognised by their tolist().
    model_dump = getattr(value, "model_dump", None)
    if callable(model_dump):  # pydantic v2 models
        return model_dump(mode="json")
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        return tolist()
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, PurePath):
        return str(value)
    if hasattr(value, "__iter__") and not isinstance(value, str | bytes):
        return list(value)
    raise NotSerializableError(f"result of type {type(value).__qualname__} is not JSON serializable")


_encoder = msgspec.json.Encoder(enc_hook=_fallback, decimal_format="number")


def to_json(value: Any) -> bytes:
    try:
        return _encoder.encode(value)
    except NotSerializableError:
        raise
    except (TypeError, ValueError, OverflowError) as e:
        raise NotSerializableError(f"result cannot be sent as JSON: {e}") from e
