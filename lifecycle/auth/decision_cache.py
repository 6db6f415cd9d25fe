"""A small in-process TTL cache of authorisation decisions, emptied when auth data changes.

Every DecisionCache in the process registers itself; a change to tokens, permissions, users or
public endpoints calls `invalidate_after_commit(session)`, which empties them all once the change
is committed (emptying earlier would let a concurrent request cache the old state again). Other
processes (a separate gateway) see changes within their TTL.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

from sqlalchemy import event
from sqlalchemy.orm import Session

V = TypeVar("V")

_caches: weakref.WeakSet[DecisionCache[Any]] = weakref.WeakSet()
_caches_lock = threading.Lock()
_PENDING_KEY = "trackside.auth.invalidate_after_commit"


class DecisionCache(Generic[V]):
    def __init__(
        self, ttl: float, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self.hits = 0
        self.misses = 0
        self._clock = clock
        self._entries: dict[Hashable, tuple[float, V]] = {}
        self._lock = threading.Lock()
        with _caches_lock:
            _caches.add(self)

    def get(self, key: Hashable) -> V | None:
        now = self._clock()
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry[0] > now:
                self.hits += 1
                return entry[1]
            self.misses += 1
            return None

    def put(self, key: Hashable, value: V, ttl: float | None = None) -> None:
        lifetime = self.ttl if ttl is None else min(ttl, self.ttl)
        if lifetime <= 0:
            return
        now = self._clock()
        with self._lock:
            if len(self._entries) >= self.max_entries:
                self._evict(now)
            self._entries[key] = (now + lifetime, value)

    def invalidate(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def _evict(self, now: float) -> None:
        live = {key: entry for key, entry in self._entries.items() if entry[0] > now}
        if len(live) >= self.max_entries:
            # still full of live entries: keep the newer half (dicts keep insertion order)
            live = dict(list(live.items())[len(live) // 2 :])
        self._entries = live


def invalidate_all() -> None:
    with _caches_lock:
        caches = list(_caches)
    for cache in caches:
        cache.invalidate()


def invalidate_after_commit(session: Session) -> None:
    if session.info.get(_PENDING_KEY):
        return
    session.info[_PENDING_KEY] = True

    def _after_commit(committed: Session) -> None:
        committed.info.pop(_PENDING_KEY, None)
        invalidate_all()

    event.listen(session, "after_commit", _after_commit, once=True)
