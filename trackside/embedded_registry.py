"""pub.registry.Registry for `trackside up`: the gateway asks the lifecycle's own objects, in-process.

- resolve: the versions of a job and their statuses come from a small snapshot per job name,
  read from the store at most every `refresh_interval` seconds (0.5 s), and dropped at once when
  a commit of this process changes a job row (an SQLAlchemy ORM event: deploys, deletes, status
  changes by the monitor); a name the store does not know is answered from one set of all job
  names (same refresh), so made-up names cost no query each; `latest` and wildcards pick among
  `running` versions only (never a
  `starting` one); the replicas are the runner's ready ones, asked at most every `replica_ttl`
  seconds (0.1 s: the runner's lock is shared with its supervisor and log threads, and under load
  waiting on it costs more than the answer; a replica that died meanwhile refuses the connection
  and the gateway tries the next one).
- authorize: `CallAuthorizer.can_call` (its own TTL cache, emptied when auth data changes).

Loaded only by the embedded launcher (it imports the lifecycle).
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from itertools import chain
from typing import Any

from sqlalchemy import event, select
from sqlalchemy.orm import Session

from lifecycle.control_plane import ControlPlane
from lifecycle.store import jobs as job_store
from lifecycle.store.models import Job, JobStatus
from pub.registry import CallDecision, JobTarget
from trackside.manifest import versions

_CHANGED_KEY = "trackside.embedded_registry.changed_jobs"
_RUNNING = JobStatus.RUNNING.value
_STOPPED = JobStatus.STOPPED.value


@dataclass
class _Family:
    fetched_at: float
    statuses: dict[str, str]  # version -> status
    resolved: dict[str, str | None] = field(default_factory=dict)  # requested -> exact, memoised


class EmbeddedRegistry:
    def __init__(
        self,
        plane: ControlPlane,
        refresh_interval: float = 0.5,
        replica_ttl: float = 0.1,
        max_families: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._db = plane.db
        self._runner = plane.runner
        self._authorizer = plane.authorizer
        self.refresh_interval = refresh_interval
        self.replica_ttl = replica_ttl
        self._replicas: dict[tuple[str, str], tuple[float, JobTarget]] = {}
        self._decisions: dict[int, tuple[Any, CallDecision]] = {}
        self._max_families = max_families
        self._clock = clock
        self._families: dict[str, _Family] = {}
        self._names: tuple[float, frozenset[str]] | None = None
        self.store_reads = 0  # snapshot refreshes (for tests and curiosity)
        self._listeners = _watch_job_changes(self)

    # ---- Registry ---------------------------------------------------------------------------

    def resolve(self, name: str, version: str) -> JobTarget | None:
        if not self._exists(name):
            return None
        family = self._family(name)
        if not family.statuses:
            return None
        resolved = family.resolved
        if version in resolved:
            exact = resolved[version]
        else:
            exact = resolved[version] = _choose(version, family.statuses)
        if exact is None:
            return None
        status = family.statuses[exact]
        if status != _RUNNING:
            return JobTarget(name, exact, (), status)
        return self._running_target(name, exact)

    def authorize(self, token: str | None, name: str, version: str, endpoint: str) -> CallDecision:
        decision = self._authorizer.can_call(token, name, version, endpoint)
        # the authorizer's cache hands out the same object while it is fresh: so do we
        known = self._decisions.get(id(decision))
        if known is not None and known[0] is decision:
            return known[1]
        subject = decision.subject
        converted = CallDecision(
            decision.allowed,
            decision.status,
            decision.caller_name,
            decision.reason,
            f"{subject.type.value}:{subject.id}" if subject is not None else None,
        )
        if len(self._decisions) >= self._max_families:
            self._decisions.clear()
        self._decisions[id(decision)] = (decision, converted)
        return converted

    def record_calls(self, calls: dict[tuple[str, str], datetime]) -> None:
        """pub.registry.CallRecorder: the jobs' `last_call_at` (one transaction per batch)."""
        with self._db.session() as session:
            for (name, version), at in calls.items():
                job_store.record_job_call(session, name, version, at)

    def auth_cache_stats(self) -> tuple[int, int]:
        return self._authorizer.hits, self._authorizer.misses

    # ---- the snapshot -------------------------------------------------------------------------

    def invalidate(self, names: set[str] | None = None) -> None:
        self._names = None
        if names is None:
            self._families.clear()
            self._replicas.clear()
            return
        for name in names:
            self._families.pop(name, None)
        for key in list(self._replicas):  # a copy: the event loop's thread may add keys meanwhile
            if key[0] in names:
                self._replicas.pop(key, None)

    def close(self) -> None:
        """Stop watching the store's sessions (also done when the registry is garbage)."""
        _remove_listeners(self._listeners)

    def _running_target(self, name: str, version: str) -> JobTarget:
        key = (name, version)
        now = self._clock()
        cached = self._replicas.get(key)
        if cached is not None and now - cached[0] < self.replica_ttl:
            return cached[1]
        replicas = tuple(r.address for r in self._runner.serving(name, version))
        target = JobTarget(name, version, replicas, _RUNNING)
        if len(self._replicas) >= self._max_families:
            self._replicas.clear()
        self._replicas[key] = (now, target)
        return target

    def _exists(self, name: str) -> bool:
        """Whether a job of that name may exist: names the store does not know are answered from
        one set of all names (read at most every `refresh_interval`), not one query per name."""
        names = self._names
        if names is not None and name in names[1]:
            return True  # its family snapshot says the rest
        now = self._clock()
        if names is None or now - names[0] >= self.refresh_interval:
            with self._db.session() as session:
                found = frozenset(session.scalars(select(Job.name).distinct()))
            self.store_reads += 1
            names = self._names = (now, found)
        return name in names[1]

    def _family(self, name: str) -> _Family:
        now = self._clock()
        family = self._families.get(name)
        if family is not None and now - family.fetched_at < self.refresh_interval:
            return family
        with self._db.session() as session:
            rows = job_store.list_job_summaries(session, name)
        self.store_reads += 1
        family = _Family(now, {row.version: str(row.status) for row in rows})
        if len(self._families) >= self._max_families:
            self._families.clear()
        self._families[name] = family
        return family

    @property
    def engine(self) -> Any:
        return self._db.engine


def _choose(requested: str, statuses: dict[str, str]) -> str | None:
    """The exact version `requested` designates: itself when it exists (whatever its status);
    for `latest` and wildcards the highest matching running version, else (so that the caller
    hears 503, not 404) the highest matching version that is starting, failing or lost."""
    if versions.is_valid_version(requested):
        return requested if requested in statuses else None
    running = [v for v, status in statuses.items() if status == _RUNNING]
    chosen = versions.resolve(requested, running)
    if chosen is None:
        chosen = versions.resolve(requested, [v for v, status in statuses.items() if status != _STOPPED])
    return chosen


def _watch_job_changes(registry: EmbeddedRegistry) -> list[tuple[Any, str, Any]]:
    """Drop the snapshot of every job name whose row a committed session of this database changed."""
    ref = weakref.ref(registry)
    engine = registry.engine

    def after_flush(session: Session, _context: Any) -> None:
        if session.bind is not engine:
            return
        names = {
            obj.name for obj in chain(session.new, session.dirty, session.deleted) if isinstance(obj, Job)
        }
        if names:
            session.info.setdefault(_CHANGED_KEY, set()).update(names)

    def after_commit(session: Session) -> None:
        names = session.info.pop(_CHANGED_KEY, None)
        target = ref()
        if names and target is not None:
            target.invalidate(names)

    def after_rollback(session: Session) -> None:
        session.info.pop(_CHANGED_KEY, None)

    listeners: list[tuple[Any, str, Any]] = [
        (Session, "after_flush", after_flush),
        (Session, "after_commit", after_commit),
        (Session, "after_soft_rollback", lambda session, _previous: after_rollback(session)),
    ]
    for target, identifier, listener in listeners:
        event.listen(target, identifier, listener)
    weakref.finalize(registry, _remove_listeners, listeners)
    return listeners


def _remove_listeners(listeners: list[tuple[Any, str, Any]]) -> None:
    for target, identifier, listener in listeners:
        if event.contains(target, identifier, listener):
            event.remove(target, identifier, listener)
