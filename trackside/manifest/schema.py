"""JSON Schema of ``job.yaml`` for editors (e.g. VS Code's YAML extension, ``# yaml-language-server``)."""

from __future__ import annotations

from typing import Any

from trackside.manifest.model import Manifest
from trackside.manifest.normalising import JOBTYPE_ALIASES, JOBTYPE_EXTRA_ALIASES
from trackside.manifest.python3 import Python3Extra

__all__ = ["manifest_json_schema"]

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def manifest_json_schema() -> dict[str, Any]:
    """The manifest's JSON Schema (draft 2020-12).

    It is ``Manifest.model_json_schema()`` plus what the model checks across fields: python3's
    ``jobtype_extra`` keys when ``jobtype`` is ``python3:...``, and Racetrack's deprecated aliases
    (marked ``deprecated``) so that editors accept, but flag, them.
    """
    schema = Manifest.model_json_schema()
    python3 = Python3Extra.model_json_schema()
    schema["$schema"] = SCHEMA_DIALECT
    schema.setdefault("$defs", {})["Python3Extra"] = python3
    properties: dict[str, Any] = schema["properties"]
    for alias in JOBTYPE_ALIASES:
        properties[alias] = {
            **properties["jobtype"],
            "deprecated": True,
            "description": "Deprecated: use jobtype.",
        }
    for alias in JOBTYPE_EXTRA_ALIASES:
        properties[alias] = {
            "type": "object",
            "deprecated": True,
            "description": "Deprecated: use jobtype_extra.",
        }
    properties["image_type"] = {
        "const": "docker",
        "deprecated": True,
        "description": "Ignored (Racetrack's).",
    }
    # jobtype (or lang) is required; the model reports it as missing when neither is given
    schema["required"] = [name for name in schema.get("required", []) if name != "jobtype"]
    schema["allOf"] = [
        {"anyOf": [{"required": ["jobtype"]}, {"required": list(JOBTYPE_ALIASES)}]},
        {
            "if": {"properties": {"jobtype": {"pattern": "^python3:"}}, "required": ["jobtype"]},
            "then": {"properties": {"jobtype_extra": {"$ref": "#/$defs/Python3Extra"}}},
        },
    ]
    return schema
