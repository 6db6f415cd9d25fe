"""What the gateway needs from the lifecycle, and nothing more.

The gateway never imports the lifecycle: in embedded mode the lifecycle hands it an object with
these methods (an in-process call); in separate processes `pub.lifecycle_client` implements them
over HTTP with a short cache.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True)
class JobTarget:
    """A job version the gateway may route to."""

    name: str
    version: str  # the exact version `latest` or a wildcard resolved to
    replicas: tuple[str, ...]  # base URLs of ready replicas, e.g. "http://127.0.0.1:41234"
    status: str  # starting | running | error | lost | stopped
    public_endpoints: tuple[str, ...] = field(default=())  # approved for this version


@dataclass(frozen=True)
class CallDecision:
    allowed: bool
    status: int  # 200 when allowed, else 401 (no valid token) or 403 (no permission)
    caller_name: str | None  # "User alice", "ESC billing", "Job family adder" (for X-Caller-Name)
    reason: str
    subject_key: str | None = None  # stable id of the caller (e.g. "user:3"), to scope async tasks


class CallRecorder(Protocol):
    """Optional for a registry: where the gateway reports when each job version was last called
    (Racetrack's `last_call_time`), in batches every few seconds, never per request."""

    def record_calls(self, calls: dict[tuple[str, str], datetime]) -> None:
        """(name, exact version) → time of its last call (UTC). Blocking: run from a thread."""
        ...


class Registry(Protocol):
    def resolve(self, name: str, version: str) -> JobTarget | None:
        """`version` is exact, `latest` (highest stable running) or a wildcard (`1.x`); None: no such job."""
        ...

    def authorize(self, token: str | None, name: str, version: str, endpoint: str) -> CallDecision:
        """One decision for (token, job, exact version, endpoint inside the job, e.g. /api/v1/perform)."""
        ...
