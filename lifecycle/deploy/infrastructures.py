"""The infrastructure targets of a lifecycle (embedded processes, containers ...) and the builder and
runner that route each call to the right one, so the pipeline, the API and the monitor see one
Builder and one Runner whatever runs where.

A target's builder and runner are made on first use: a lifecycle that never runs a container
never talks to a container engine. Routing rules:
  * a build goes to the target its request names; a build result remembers its target, and the
    runner of that target starts it;
  * a stored build is restored by the target that recognises its environment id;
  * calls naming a job version go to every runner that has started (a version runs on one target
    at a time, except while a redeploy moves it: then the newest generation wins).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .builder import Builder, BuildError, BuildRequest, BuildResult
from .runner import ReplicaState, Runner, RunSpec


class UnknownTarget(ValueError):
    """A target that does not exist or cannot be used here; the message says which and why."""


@dataclass
class Infrastructure:
    name: str
    description: str
    create: Callable[[], tuple[Builder, Runner]]
    owns_environment: Callable[[str], bool]
    unavailable: str | None = None  # why it cannot be used on this machine (None: it can)
    parts: tuple[Builder, Runner] | None = field(default=None, repr=False)


class Infrastructures:
    def __init__(self, targets: list[Infrastructure], default: str, aliases: dict[str, str]) -> None:
        self._targets = {t.name: t for t in targets}
        self._aliases = aliases
        self._lock = threading.RLock()
        self.default = aliases.get(default, default)  # may be unavailable: the caller says so
        if self.default not in self._targets:
            raise UnknownTarget(f"unknown default infrastructure target {default!r}")

    def resolve(self, requested: str | None) -> str:
        """The target a manifest's `infrastructure_target` names (None: the default)."""
        if requested is None:
            return self.default
        name = self._aliases.get(requested.strip().lower(), requested)
        target = self._targets.get(name)
        if target is None:
            raise UnknownTarget(
                f"infrastructure_target: unknown target {requested!r}; this lifecycle has "
                + ", ".join(sorted(self._targets))
            )
        if target.unavailable:
            raise UnknownTarget(f"infrastructure_target {requested!r} cannot be used: {target.unavailable}")
        return name

    def describe(self) -> dict[str, str]:
        """Name -> description of the targets that can be used."""
        return {t.name: t.description for t in self._targets.values() if not t.unavailable}

    def parts(self, name: str) -> tuple[Builder, Runner]:
        with self._lock:
            target = self._targets.get(name)
            if target is None:
                raise UnknownTarget(f"unknown infrastructure target {name!r}")
            if target.parts is None:
                if target.unavailable:
                    raise UnknownTarget(
                        f"infrastructure target {name!r} cannot be used: {target.unavailable}"
                    )
                target.parts = target.create()
            return target.parts

    def started(self) -> list[tuple[str, Builder, Runner]]:
        with self._lock:
            return [(t.name, *t.parts) for t in self._targets.values() if t.parts is not None]

    def is_started(self, name: str) -> bool:
        with self._lock:
            target = self._targets.get(name)
            return target is not None and target.parts is not None

    def owner_of(self, environment_id: str) -> str | None:
        return next((t.name for t in self._targets.values() if t.owns_environment(environment_id)), None)


class RoutingBuilder:
    def __init__(self, targets: Infrastructures) -> None:
        self.targets = targets

    def build(self, request: BuildRequest, log: Callable[[str], None]) -> BuildResult:
        try:
            builder, _ = self.targets.parts(request.infrastructure)
        except UnknownTarget as e:
            raise BuildError(str(e)) from None
        return builder.build(request, log)

    def release(self, result: BuildResult) -> None:
        builder, _ = self.targets.parts(result.infrastructure)
        builder.release(result)

    def restore(self, environment_id: str, code_dir: Path) -> BuildResult | None:
        owner = self.targets.owner_of(environment_id)
        if owner is None:
            return None
        try:
            builder, _ = self.targets.parts(owner)
        except UnknownTarget:
            return None  # e.g. the container engine is gone: the job is reported lost
        return builder.restore(environment_id, code_dir)


class RoutingRunner:
    def __init__(self, targets: Infrastructures) -> None:
        self.targets = targets

    def _runners(self) -> list[Runner]:
        return [runner for _, _, runner in self.targets.started()]

    def start(self, spec: RunSpec) -> None:
        _, runner = self.targets.parts(spec.build.infrastructure)
        runner.start(spec)

    def _newest(self, name: str, version: str) -> Runner | None:
        """The runner with the version's newest generation."""
        best: tuple[int, Runner] | None = None
        for runner in self._runners():
            generations = runner.generations(name, version)
            if generations and (best is None or generations[-1] > best[0]):
                best = (generations[-1], runner)
        return best[1] if best else None

    def replicas(
        self, name: str, version: str, deployment_timestamp: int | None = None
    ) -> list[ReplicaState]:
        if deployment_timestamp is None:
            runner = self._newest(name, version)
            return runner.replicas(name, version) if runner else []
        for runner in self._runners():
            found = runner.replicas(name, version, deployment_timestamp)
            if found:
                return found
        return []

    def serving(self, name: str, version: str) -> list[ReplicaState]:
        best: list[ReplicaState] = []
        for runner in self._runners():
            ready = runner.serving(name, version)
            if ready and (not best or ready[0].deployment_timestamp > best[0].deployment_timestamp):
                best = ready
        return best

    def versions(self) -> list[tuple[str, str]]:
        seen: dict[tuple[str, str], None] = {}
        for runner in self._runners():
            seen.update(dict.fromkeys(runner.versions()))
        return list(seen)

    def generations(self, name: str, version: str) -> list[int]:
        return sorted(t for runner in self._runners() for t in runner.generations(name, version))

    def retire_others(self, name: str, version: str, keep: int) -> None:
        for runner in self._runners():
            runner.retire_others(name, version, keep)

    def stop_generation(self, name: str, version: str, deployment_timestamp: int) -> None:
        for runner in self._runners():
            runner.stop_generation(name, version, deployment_timestamp)

    def stop(self, name: str, version: str) -> None:
        for runner in self._runners():
            runner.stop(name, version)

    def logs(self, name: str, version: str, tail: int) -> list[str]:
        runner = self._newest(name, version)
        if runner is not None:
            return runner.logs(name, version, tail)
        for runner in self._runners():
            lines = runner.logs(name, version, tail)
            if lines:
                return lines
        return []

    def follow(self, name: str, version: str) -> Iterator[str]:
        runner = self._newest(name, version)
        return runner.follow(name, version) if runner is not None else iter(())

    def shutdown(self) -> None:
        for runner in self._runners():
            runner.shutdown()
