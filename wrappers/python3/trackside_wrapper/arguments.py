"""Validating a JSON body into keyword arguments for a job method, from its type hints.

msgspec decodes and validates in one pass (lax: "5" becomes 5 for an int). Optional parameters
are UNSET unless sent, so Python applies the method's own defaults. Parameters annotated with a
pydantic model are validated by pydantic, loaded only when the job itself uses it; annotations
neither can validate are passed through as decoded JSON.
"""

from __future__ import annotations

import inspect
import logging
import re
import sys
import typing
from dataclasses import dataclass
from typing import Any

import msgspec

from .docstrings import parameter_descriptions

logger = logging.getLogger(__name__)

_AT = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>.*)`)?$", re.S)
_FIELD = re.compile(r"(unknown|missing required) field `(?P<name>[^`]*)`")
_PATH_PART = re.compile(r"\.([^.\[]+)|\[(\d+)\]|\[\.\.\.\]")


class InvalidArguments(Exception):
    """The request body does not fit the method's signature (422)."""

    def __init__(self, message: str, details: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.details = details


class MalformedJSON(Exception):
    """The request body is not JSON at all (400)."""


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
    if isinstance(annotation, type) and not typing.get_args(annotation):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def _is_pydantic_model(annotation: Any) -> bool:
    pydantic = sys.modules.get("pydantic")  # never imported here: only a job using it has it loaded
    return (
        pydantic is not None and isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel)
    )


def _msgspec_can_validate(annotation: Any) -> bool:
    try:
        msgspec.json.schema(annotation)
    except Exception:
        return False
    return True


def _location(message: str) -> tuple[str, list[str | int]]:
    match = _AT.match(message)
    assert match is not None
    loc: list[str | int] = []
    for name, index in _PATH_PART.findall(match.group("path") or ""):
        loc.append(name if name else int(index) if index else "...")
    field = _FIELD.search(match.group("msg"))
    if field:
        loc.append(field.group("name"))
    return match.group("msg"), loc


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
        self._pydantic: dict[str, Any] = {}
        fields: list[tuple[Any, ...]] = []
        for param in signature.parameters.values():
            if param.kind is inspect.Parameter.VAR_KEYWORD:
                self.accepts_extra = True
                continue
            annotation = hints.get(param.name, param.annotation)
            if annotation is inspect.Parameter.empty:
                validated: Any = Any
            elif _is_pydantic_model(annotation):
                validated = Any
                self._pydantic[param.name] = annotation
            elif _msgspec_can_validate(annotation):
                validated = annotation
            else:
                logger.warning(
                    "%s: parameter %r of type %s cannot be validated from JSON; it is passed as decoded JSON",
                    label,
                    param.name,
                    _type_name(annotation),
                )
                validated = Any
            required = param.default is inspect.Parameter.empty
            if required:
                fields.append((param.name, validated))
            else:
                fields.append((param.name, typing.Union[validated, msgspec.UnsetType], msgspec.UNSET))  # noqa: UP007
            self.parameters.append(
                Parameter(
                    param.name,
                    annotation,
                    _type_name(annotation),
                    None if required else param.default,
                    required,
                    descriptions.get(param.name, ""),
                )
            )
        self._names = tuple(p.name for p in self.parameters)
        self.struct: Any = msgspec.defstruct(
            "Arguments",
            fields,
            kw_only=True,
            forbid_unknown_fields=not self.accepts_extra,
        )
        self._decoder = msgspec.json.Decoder(self.struct, strict=False)

    def bind(self, body: bytes) -> dict[str, Any]:
        """Keyword arguments from a raw JSON body (empty body = no arguments)."""
        if not body:
            body = b"{}"
        raw: Any = None
        try:
            if self.accepts_extra:
                # parsed once: the extras are the raw keys no parameter takes
                raw = msgspec.json.decode(body)
                values = msgspec.convert(raw, self.struct, strict=False)
            else:
                values = self._decoder.decode(body)
        except msgspec.ValidationError as e:
            raise self._invalid(str(e)) from None
        except msgspec.DecodeError as e:
            raise MalformedJSON(f"request body is not valid JSON: {e}") from None
        kwargs = {}
        for name in self._names:
            value = getattr(values, name)
            if value is not msgspec.UNSET:
                kwargs[name] = value
        if self._pydantic:
            self._validate_pydantic(kwargs)
        if raw is not None:
            for key, value in raw.items():
                if key not in kwargs and key not in self._names:
                    kwargs[key] = value
        return kwargs

    def _validate_pydantic(self, kwargs: dict[str, Any]) -> None:
        pydantic = sys.modules["pydantic"]
        for name, model in self._pydantic.items():
            if name not in kwargs:
                continue
            try:
                kwargs[name] = model.model_validate(kwargs[name])
            except pydantic.ValidationError as e:
                details = [
                    {"loc": [name, *err["loc"]], "msg": err["msg"], "type": err["type"]}
                    for err in e.errors(include_url=False, include_context=False, include_input=False)
                ]
                raise InvalidArguments(_summarise(details), details) from None

    def _invalid(self, message: str) -> InvalidArguments:
        msg, loc = _location(message)
        if msg.startswith("Expected `object`") and not loc:
            msg = "request body must be a JSON object of arguments, " + msg[0].lower() + msg[1:]
        kind = (
            "unexpected_argument"
            if "unknown field" in msg
            else ("missing_argument" if "missing required field" in msg else "invalid_value")
        )
        details = [{"loc": loc, "msg": msg, "type": kind}]
        return InvalidArguments(_summarise(details), details)

    def json_schema(self, ref_template: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """(schema of the body, component schemas it refers to)."""
        (ref,), components = msgspec.json.schema_components([self.struct], ref_template=ref_template)
        name = ref["$ref"].rsplit("/", 1)[-1]
        schema = components.pop(name)
        properties = schema.get("properties", {})
        for p in self.parameters:
            prop = properties.get(p.name)
            if prop is None:
                continue
            if p.name in self._pydantic:
                properties[p.name] = self._pydantic[p.name].model_json_schema(
                    ref_template=ref_template.replace("{name}", "{model}")
                )
                components.update(properties[p.name].pop("$defs", {}))
                prop = properties[p.name]
            if not p.required:
                try:
                    msgspec.json.encode(p.default)
                    prop["default"] = p.default
                except (TypeError, msgspec.EncodeError):
                    pass
            if p.description:
                prop["description"] = p.description
        if self.accepts_extra:
            schema["additionalProperties"] = True
        return schema, components

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


def _summarise(details: list[dict[str, Any]]) -> str:
    parts = []
    for d in details[:5]:
        field = ".".join(str(x) for x in d["loc"]) or "body"
        parts.append(f"{field}: {d['msg']}")
    more = f" (and {len(details) - 5} more)" if len(details) > 5 else ""
    return "invalid arguments: " + "; ".join(parts) + more
