"""The wrapper's view of a job manifest: only the fields the runtime needs.

The platform validates the full manifest (trackside.manifest); the wrapper must not import it,
so it reads the few keys it uses and reports bad values with the field path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


class ManifestError(Exception):
    """The manifest is missing, unreadable or has a bad value for a field the wrapper uses."""


@dataclass(frozen=True)
class JobSettings:
    name: str
    version: str
    entrypoint_path: str
    entrypoint_class: str | None = None
    max_concurrency: int | None = None
    max_concurrency_queue: int | None = None
    home_page: str = "/docs"
    raw: dict[str, Any] | None = None


def load_manifest_dict(job_dir: Path) -> dict[str, Any]:
    """Manifest from JOB_MANIFEST_YAML when set, else JOB_DIR/job.yaml."""
    text = os.environ.get("JOB_MANIFEST_YAML")
    source = "JOB_MANIFEST_YAML"
    if not text:
        path = job_dir / "job.yaml"
        if not path.is_file():
            raise ManifestError(f"no manifest: {path} does not exist and JOB_MANIFEST_YAML is not set")
        text = path.read_text(encoding="utf-8")
        source = str(path)
    try:
        data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as e:
        raise ManifestError(f"{source} is not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ManifestError(f"{source} must be a mapping, got {type(data).__name__}")
    return data


def _optional_int(section: dict[str, Any], key: str, where: str, minimum: int) -> int | None:
    value = section.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not (
        isinstance(value, int) or (isinstance(value, str) and value.isdigit())
    ):
        raise ManifestError(f"{where}.{key}: expected an integer >= {minimum}, got {value!r}")
    number = int(value)
    if number < minimum:
        raise ManifestError(f"{where}.{key}: expected an integer >= {minimum}, got {number}")
    return number


def job_settings(data: dict[str, Any]) -> JobSettings:
    # Racetrack's current manifests keep python3 options in `jobtype_extra`; older ones in `python`.
    extra = data.get("jobtype_extra")
    where = "jobtype_extra"
    if extra is None and isinstance(data.get("python"), dict):
        extra, where = data["python"], "python"
    if extra is None:
        extra = {}
    if not isinstance(extra, dict):
        raise ManifestError(f"{where}: expected a mapping, got {type(extra).__name__}")
    entrypoint_path = extra.get("entrypoint_path")
    if not entrypoint_path or not isinstance(entrypoint_path, str):
        raise ManifestError(f"{where}.entrypoint_path: required, the path of the file with the job class")
    entrypoint_class = extra.get("entrypoint_class")
    if entrypoint_class is not None and not isinstance(entrypoint_class, str):
        raise ManifestError(f"{where}.entrypoint_class: expected a class name, got {entrypoint_class!r}")
    home_page = extra.get("home_page") or "/docs"
    if not isinstance(home_page, str) or not home_page.startswith("/"):
        raise ManifestError(f"{where}.home_page: expected a path starting with '/', got {home_page!r}")
    name = os.environ.get("JOB_NAME") or str(data.get("name") or "job")
    version = os.environ.get("JOB_VERSION") or str(data.get("version") or "0.0.1")
    return JobSettings(
        name=name,
        version=version,
        entrypoint_path=entrypoint_path,
        entrypoint_class=entrypoint_class,
        max_concurrency=_optional_int(extra, "max_concurrency", where, 1),
        max_concurrency_queue=_optional_int(extra, "max_concurrency_queue", where, 0),
        home_page=home_page,
        raw=data,
    )
