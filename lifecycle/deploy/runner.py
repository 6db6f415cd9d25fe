"""The Runner contract: keep a built job running as supervised replicas.

One implementation per infrastructure (embedded: `local_runner.LocalRunner`, containers:
`container_runner.ContainerRunner`); the deploy pipeline only knows this protocol, and
`infrastructures.RoutingRunner` hands each call to the runner of the version's target.

Generations. Replicas are keyed by (name, version, deployment_timestamp): each `start` adds a
generation, and earlier generations of the same version keep running until they are retired.
A redeploy therefore goes:

    runner.start(new_spec)                                # old replicas keep serving
    wait until all(r.ready for r in runner.replicas(name, version))   # the newest generation
    runner.retire_others(name, version, keep=new_spec.deployment_timestamp)
    # or, when the new one fails:
    runner.stop_generation(name, version, new_spec.deployment_timestamp)

While both run, `serving(name, version)` gives the ready replicas callers should use: those of the
newest generation that has a ready replica.

A replica is ready when its `/ready` answers 200 and its `/live` reports the generation's
deployment timestamp. A replica whose process exits, or whose `/live` reports that the job failed
to load, is restarted with exponential backoff; `last_error` says why (cleared once it is ready
again) and `failures` counts consecutive failed starts (reset once a process stays up).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

from .builder import BuildResult


class RunnerError(Exception):
    """Starting a generation failed before any replica ran (e.g. the cluster refused an object);
    the message is shown to the user and names what failed."""


@dataclass(frozen=True)
class Resources:
    """A replica's share of the machine (manifest `resources`); None: no reservation or limit."""

    memory_min: int | None = None  # bytes
    memory_max: int | None = None  # bytes
    cpu_min: float | None = None  # cores
    cpu_max: float | None = None  # cores


@dataclass(frozen=True)
class RunSpec:
    job_name: str
    job_version: str
    deployment_timestamp: int
    replicas: int
    build: BuildResult
    # runtime_env + runtime secrets (+ reserved variables, which the runner sets from the fields)
    env: dict[str, str] = field(repr=False)
    manifest_yaml: str
    resources: Resources = field(default_factory=Resources)  # enforced where the runner can (containers)


@dataclass(frozen=True)
class ReplicaState:
    address: str  # "http://127.0.0.1:PORT"
    ready: bool
    restarts: int
    last_error: str | None
    deployment_timestamp: int = 0
    # consecutive failed starts; a runner that sees a replica cannot start without outside help
    # (its image cannot be pulled, its code fails to load, no node fits it) reports it as failed
    # enough times to stop waiting: the pipeline fails the deploy, the monitor reports `error`
    failures: int = 0
    pid: int | None = None  # of the running process (None while it is down)


class Runner(Protocol):
    def start(self, spec: RunSpec) -> None:
        """Start a generation; returns at once, replicas come up in the background. Starting a
        generation that already runs does nothing."""
        ...

    def replicas(
        self, name: str, version: str, deployment_timestamp: int | None = None
    ) -> list[ReplicaState]:
        """Replicas of one generation: the newest when no timestamp is given; [] when none runs."""
        ...

    def serving(self, name: str, version: str) -> list[ReplicaState]:
        """The ready replicas of the newest generation that has any: what a gateway should call."""
        ...

    def versions(self) -> list[tuple[str, str]]:
        """(name, version) of everything this runner runs now."""
        ...

    def generations(self, name: str, version: str) -> list[int]:
        """Deployment timestamps of the running generations, oldest first."""
        ...

    def retire_others(self, name: str, version: str, keep: int) -> None:
        """Stop every generation of the version except `keep` (waits for the processes)."""
        ...

    def stop_generation(self, name: str, version: str, deployment_timestamp: int) -> None:
        """Stop one generation (waits for its processes); the others keep running."""
        ...

    def stop(self, name: str, version: str) -> None:
        """Stop every generation of the version: SIGTERM, then SIGKILL after a grace period."""
        ...

    def logs(self, name: str, version: str, tail: int) -> list[str]:
        """The last `tail` lines of the version's log (all replicas and generations)."""
        ...

    def follow(self, name: str, version: str) -> Iterator[str]:
        """New log lines as they come; ends when the version is stopped."""
        ...

    def shutdown(self) -> None:
        """Stop everything this runner started."""
        ...
