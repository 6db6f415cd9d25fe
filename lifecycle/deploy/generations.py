"""The generations a runner runs, by version, and the log each version writes to: the bookkeeping
the embedded and the container runner share (runner.py says what a generation is).

A runner subclasses `Generations`, which answers the Runner contract's state queries and stops
generations; the runner itself starts them (`_add`) and says how their logs are read.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from .runner import ReplicaState, RunSpec


class SupervisedGeneration(Protocol):
    @property
    def spec(self) -> RunSpec: ...
    def snapshot(self) -> list[ReplicaState]: ...
    def request_stop(self) -> None: ...
    def join(self) -> None: ...


class VersionEvents(Protocol):
    def event(self, text: str) -> None: ...
    def close(self) -> None: ...


G = TypeVar("G", bound=SupervisedGeneration)
L = TypeVar("L", bound=VersionEvents)


class Generations(Generic[G, L]):
    """The running generations of each (name, version), oldest first, and the version's log."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._generations: dict[tuple[str, str], list[G]] = {}
        self._logs: dict[tuple[str, str], L] = {}
        self._closed = False

    # ---- starting ------------------------------------------------------------------------------

    def _add(
        self, spec: RunSpec, new_log: Callable[[], L], new_generation: Callable[[L], G]
    ) -> tuple[L, G] | None:
        """Register a new generation (made under the lock, with the version's log); None when this
        deployment already runs."""
        key = (spec.job_name, spec.job_version)
        with self._lock:
            if self._closed:
                raise RuntimeError("the runner is shut down")
            running = self._generations.setdefault(key, [])
            if any(g.spec.deployment_timestamp == spec.deployment_timestamp for g in running):
                return None
            log = self._logs.get(key)
            if log is None:
                log = self._logs[key] = new_log()
            generation = new_generation(log)
            running.append(generation)
        return log, generation

    # ---- state ---------------------------------------------------------------------------------

    def replicas(
        self, name: str, version: str, deployment_timestamp: int | None = None
    ) -> list[ReplicaState]:
        generation = self._generation(name, version, deployment_timestamp)
        return generation.snapshot() if generation else []

    def serving(self, name: str, version: str) -> list[ReplicaState]:
        for generation in reversed(self._running(name, version)):
            ready = [r for r in generation.snapshot() if r.ready]
            if ready:
                return ready
        return []

    def versions(self) -> list[tuple[str, str]]:
        """(name, version) of everything this runner runs now."""
        with self._lock:
            return [key for key, generations in self._generations.items() if generations]

    def generations(self, name: str, version: str) -> list[int]:
        return [g.spec.deployment_timestamp for g in self._running(name, version)]

    def _running(self, name: str, version: str) -> list[G]:
        with self._lock:
            return list(self._generations.get((name, version), ()))

    def _generation(self, name: str, version: str, deployment_timestamp: int | None) -> G | None:
        running = self._running(name, version)
        if deployment_timestamp is None:
            return running[-1] if running else None
        return next((g for g in running if g.spec.deployment_timestamp == deployment_timestamp), None)

    def _log(self, name: str, version: str) -> L | None:
        with self._lock:
            return self._logs.get((name, version))

    # ---- stopping ------------------------------------------------------------------------------

    def retire_others(self, name: str, version: str, keep: int) -> None:
        self._stop(name, version, lambda timestamp: timestamp != keep)

    def stop_generation(self, name: str, version: str, deployment_timestamp: int) -> None:
        self._stop(name, version, lambda timestamp: timestamp == deployment_timestamp)

    def stop(self, name: str, version: str) -> None:
        self._stop(name, version, lambda timestamp: True)

    def _stop(self, name: str, version: str, chosen: Callable[[int], bool]) -> None:
        key = (name, version)
        with self._lock:
            running = self._generations.get(key, [])
            stopping = [g for g in running if chosen(g.spec.deployment_timestamp)]
            remaining = [g for g in running if g not in stopping]
            if remaining:
                self._generations[key] = remaining
            else:
                self._generations.pop(key, None)
            log = self._logs.get(key)
            if not remaining:
                self._logs.pop(key, None)
        for generation in stopping:
            if log is not None:
                log.event(f"deployment {generation.spec.deployment_timestamp}: stopping")
            generation.request_stop()
        for generation in stopping:
            generation.join()
        if log is not None and not remaining:
            log.event("stopped")
            log.close()

    def _stop_all(self, last_event: str | None) -> None:
        """Stop every generation and close every log (writing `last_event` to it first); no
        generation can be added afterwards."""
        with self._lock:
            self._closed = True
            generations = [g for running in self._generations.values() for g in running]
            logs = list(self._logs.values())
            self._generations.clear()
            self._logs.clear()
        for generation in generations:
            generation.request_stop()
        for generation in generations:
            generation.join()
        for log in logs:
            if last_event is not None:
                log.event(last_event)
            log.close()
