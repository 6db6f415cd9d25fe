"""Serving files of the job: static endpoints and the webview's `static/` folder.

A request can only reach files under the folder (or the single file) the job declared, and
everything must lie inside the job's root once symlinks are resolved; anything else is a 404.
"""

from __future__ import annotations

import logging
import mimetypes
import os
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StaticTarget:
    """One declared static endpoint: a file, or a directory served recursively."""

    path: str  # the URL path, e.g. "/docs/readme"
    target: str  # real path on disk
    is_dir: bool
    mimetype: str | None


def _inside(child: str, parent: str) -> bool:
    return child == parent or child.startswith(parent.rstrip(os.sep) + os.sep)


def declare(job_root: Path, endpoints: dict[str, object]) -> list[StaticTarget]:
    root = os.path.realpath(job_root)
    targets: list[StaticTarget] = []
    for url_path, spec in endpoints.items():
        if isinstance(spec, tuple | list) and len(spec) == 2:
            filename, mimetype = str(spec[0]), (str(spec[1]) if spec[1] else None)
        elif isinstance(spec, str | os.PathLike):
            filename, mimetype = str(spec), None
        else:
            raise ValueError(f"static_endpoints()[{url_path!r}]: expected a file name or (file, mimetype)")
        real = os.path.realpath(os.path.join(root, filename))
        if not _inside(real, root):
            raise ValueError(f"static_endpoints()[{url_path!r}]: {filename!r} lies outside the job's root")
        if not os.path.exists(real):
            raise ValueError(f"static_endpoints()[{url_path!r}]: {filename!r} does not exist")
        path = "/" + str(url_path).strip("/")
        targets.append(StaticTarget(path, real, os.path.isdir(real), mimetype))
    return targets


def resolve_in_directory(directory: str, job_root: str, relative: str) -> str | None:
    """The real file for `relative` under `directory`, or None when it is missing or escapes."""
    if not relative or "\x00" in relative or "\\" in relative:
        return None
    parts = relative.split("/")
    if any(part in ("..", ".") for part in parts):
        return None
    parts = [p for p in parts if p]
    if not parts:
        return None
    candidate = os.path.realpath(os.path.join(directory, *parts))
    if not _inside(candidate, directory) or not _inside(candidate, job_root):
        return None
    if not os.path.isfile(candidate):
        return None
    return candidate


def guess_mimetype(path: str) -> str:
    mimetype, _ = mimetypes.guess_type(path, strict=False)
    return mimetype or "application/octet-stream"
