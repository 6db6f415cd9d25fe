"""Turning whatever a job method returns into JSON bytes."""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Mapping
from decimal import Decimal
from pathlib import PurePath
from typing import Any

import orjson

_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


class NotSerializableError(TypeError):
    pass


def _default(value: Any) -> Any:
    # orjson handles str/int/float/bool/None/dict/list/tuple, dataclasses, datetimes, enums,
    # UUIDs and contiguous numpy arrays/scalars natively; the rest lands here.
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() and value.is_finite() else float(value)
    model_dump = getattr(value, "model_dump", None)
    if model_dump is not None and callable(model_dump):  # pydantic v2 models
        return model_dump(mode="json")
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, set | frozenset):
        return list(value)
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return base64.b64encode(raw).decode("ascii")
    if isinstance(value, PurePath):
        return str(value)
    # numpy arrays orjson cannot take directly (non-contiguous, object dtype, float16 ...) and
    # numpy scalars: numpy is never imported here, its objects are recognised by their methods.
    if type(value).__module__ == "numpy":
        if hasattr(value, "tolist"):
            return value.tolist()
    if hasattr(value, "tolist") and callable(value.tolist):  # pandas/numpy-like containers
        return value.tolist()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if hasattr(value, "__iter__") and not isinstance(value, str | bytes):
        return list(value)
    raise NotSerializableError(f"result of type {type(value).__qualname__} is not JSON serializable")


def to_json(value: Any) -> bytes:
    try:
        return orjson.dumps(value, default=_default, option=_OPTIONS)
    except orjson.JSONEncodeError as e:
        raise NotSerializableError(str(e)) from e
