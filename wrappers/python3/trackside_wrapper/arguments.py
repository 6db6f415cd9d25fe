"""Validating a JSON object into keyword arguments for a job method, from its type hints."""

from __future__ import annotations

import inspect
import logging
import typing
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, create_model

from .docstrings import parameter_descriptions

logger = logging.getLogger(__name__)


class InvalidArguments(Exception):
    """The request body does not fit the method's signature (422)."""

    def __init__(self, message: str, details: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.details = details


@dataclass(frozen=True)
class Parameter:
    name: str
    annotation: Any
    type_name: str
    default: Any
    required: bool
    description: str


def _type_name(annotation: Any) -> str:
    if annotation is inspect.Parameter.empty or annotation is Any:
        return "Any"
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def _usable(annotation: Any, where: str) -> Any:
    """Types pydantic can validate are kept; others (arbitrary classes) are passed through as-is."""
    if annotation is inspect.Parameter.empty:
        return Any
    try:
        TypeAdapter(annotation)
    except Exception as e:
        logger.warning("%s: type %s cannot be validated from JSON (%s); passing the value as is",
                       where, _type_name(annotation), e.__class__.__name__)
        return Any
    return annotation


class ArgumentBinder:
    """Built once per method at load time; `bind` runs per request."""

    def __init__(self, method: Any, label: str) -> None:
        self.label = label
        signature = inspect.signature(method)
        try:
            hints = typing.get_type_hints(method, include_extras=True)
        except Exception:
            hints = {}
        descriptions = parameter_descriptions(method)
        self.accepts_extra = False
        self.parameters: list[Parameter] = []
        fields: dict[str, Any] = {}
        self._names: list[tuple[str, str]] = []  # (field name, argument name)
        for index, param in enumerate(signature.parameters.values()):
            if param.kind is inspect.Parameter.VAR_KEYWORD:
                self.accepts_extra = True
                continue
            annotation = hints.get(param.name, param.annotation)
            usable = _usable(annotation, f"{label} parameter {param.name!r}")
            required = param.default is inspect.Parameter.empty
            default = ... if required else param.default
            description = descriptions.get(param.name, "")
            # Field names are positional so that parameters called e.g. `json` or `schema`
            # cannot clash with BaseModel attributes; the alias is the real name.
            field_name = f"p{index}"
            fields[field_name] = (
                usable,
                Field(default, alias=param.name, description=description or None),
            )
            self._names.append((field_name, param.name))
            self.parameters.append(
                Parameter(param.name, annotation, _type_name(annotation),
                          None if required else param.default, required, description)
            )
        config = ConfigDict(
            extra="allow" if self.accepts_extra else "forbid",
            arbitrary_types_allowed=True,
            populate_by_name=False,
            title=label,
        )
        self.model: type[BaseModel] = create_model(  # type: ignore[call-overload]
            "Arguments", __config__=config, **fields
        )
        self.model.model_rebuild()

    def bind(self, payload: Any) -> dict[str, Any]:
        if not isinstance(payload, dict):
            raise InvalidArguments(
                f"request body must be a JSON object of arguments, got {_json_kind(payload)}",
                [{"loc": [], "msg": "expected a JSON object", "type": "model_type"}],
            )
        try:
            validated = self.model.model_validate(payload)
        except ValidationError as e:
            details = [
                {"loc": list(err["loc"]), "msg": err["msg"], "type": err["type"]}
                for err in e.errors(include_url=False, include_context=False, include_input=False)
            ]
            raise InvalidArguments(_summarise(details), details) from None
        kwargs = {arg: getattr(validated, field) for field, arg in self._names}
        if validated.model_extra:
            kwargs.update(validated.model_extra)
        return kwargs

    def json_schema(self, ref_template: str) -> dict[str, Any]:
        schema = self.model.model_json_schema(by_alias=True, ref_template=ref_template)
        if self.accepts_extra:
            schema["additionalProperties"] = True
        return schema

    def describe(self) -> list[dict[str, Any]]:
        result = []
        for p in self.parameters:
            entry: dict[str, Any] = {"name": p.name, "type": p.type_name, "required": p.required}
            if not p.required:
                entry["default"] = p.default
            if p.description:
                entry["description"] = p.description
            result.append(entry)
        return result


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return "a number"


def _summarise(details: list[dict[str, Any]]) -> str:
    parts = []
    for d in details[:5]:
        field = ".".join(str(x) for x in d["loc"]) or "body"
        msg = d["msg"]
        if d["type"] == "extra_forbidden":
            msg = "unexpected argument"
        elif d["type"] == "missing":
            msg = "missing required argument"
        parts.append(f"{field}: {msg}")
    more = f" (and {len(details) - 5} more)" if len(details) > 5 else ""
    return "invalid arguments: " + "; ".join(parts) + more
