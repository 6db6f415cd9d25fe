"""A manifest written back out: a JSON-compatible mapping or YAML, canonical field names only."""

from __future__ import annotations

from typing import Any

from trackside.manifest.model import Manifest
from trackside.manifest.yaml_text import dump_yaml

__all__ = ["manifest_to_dict", "manifest_to_yaml"]


def manifest_to_dict(manifest: Manifest) -> dict[str, Any]:
    """The manifest as plain JSON-compatible data, in field order.

    Unset fields (null) and empty collections are left out; quantities keep the text they were
    written with (``512Mi``). Parsing the result gives an equal manifest.
    """
    data = manifest.model_dump(mode="json", exclude_none=True)
    return {key: value for key, value in data.items() if value not in ({}, [])}


def manifest_to_yaml(manifest: Manifest) -> str:
    """The manifest as ``job.yaml`` text (what ``JOB_MANIFEST_YAML`` carries)."""
    return dump_yaml(manifest_to_dict(manifest))
