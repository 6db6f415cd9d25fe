"""The ``jobtype`` field: a job type name and the version of it that the job asks for.

``python3:latest``, ``python3:2.4.0``, ``python3:2.x``, ``python3:2.6.*``, ``python3:*``: the
version part is any version request of ``trackside.manifest.versions`` (exact, ``latest`` or a
wildcard), resolved against the job type versions a platform offers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from trackside.manifest.versions import is_version_request

__all__ = ["EXPECTED_JOBTYPE", "JOBTYPE_PATTERN", "PYTHON3", "JobTypeRef", "parse_jobtype"]

PYTHON3 = "python3"
JOBTYPE_PATTERN = r"^[a-z0-9][a-z0-9._-]*:\S+$"
EXPECTED_JOBTYPE = "a job type and version as NAME:VERSION, e.g. 'python3:latest', 'python3:2.4.0', 'python3:2.x' or 'python3:*'"
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]*", re.ASCII)


@dataclass(frozen=True)
class JobTypeRef:
    name: str  # "python3"
    version: str  # "latest", "2.4.0", "2.x", "*"

    def __str__(self) -> str:
        return f"{self.name}:{self.version}"


def parse_jobtype(text: object) -> JobTypeRef | None:
    """The parts of ``NAME:VERSION``, or None when ``text`` is not a valid job type reference."""
    if not isinstance(text, str):
        return None
    name, colon, version = text.partition(":")
    if not colon or _NAME.fullmatch(name) is None or not is_version_request(version):
        return None
    return JobTypeRef(name, version)


def jobtype_name(text: object) -> str | None:
    """The NAME part of a ``NAME:...`` string even when its version part is invalid (or None)."""
    if not isinstance(text, str):
        return None
    name = text.partition(":")[0].strip()
    return name if _NAME.fullmatch(name) else None
