"""Wakes the event streams of a deployment when its row changes (a phase, log lines, a warning,
the end), so a watcher sees a phase change at once instead of at its next poll of the store.

Each deployment in progress has a change counter: a stream notes it before reading the store and
then waits for it to move (or for its poll interval, the fallback), so a change made between its
read and its wait is never missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading


class DeploymentChanges:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[str, int] = {}
        self._waiters: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}

    def version(self, deployment_id: str) -> int:
        with self._lock:
            return self._counters.get(deployment_id, 0)

    def changed(self, deployment_id: str, finished: bool = False) -> None:
        """Called after the change is committed; `finished`: the deployment ended (its counter goes)."""
        with self._lock:
            if finished:
                self._counters.pop(deployment_id, None)
            else:
                self._counters[deployment_id] = self._counters.get(deployment_id, 0) + 1
            waiters = list(self._waiters.get(deployment_id, ()))
        for loop, event in waiters:
            with contextlib.suppress(RuntimeError):  # that loop has closed
                loop.call_soon_threadsafe(event.set)

    async def wait(self, deployment_id: str, seen: int, timeout: float) -> None:
        """Returns once the counter is no longer `seen`, or after `timeout` seconds."""
        loop = asyncio.get_running_loop()
        event = asyncio.Event()
        waiter = (loop, event)
        with self._lock:
            if self._counters.get(deployment_id, 0) != seen:
                return
            self._waiters.setdefault(deployment_id, set()).add(waiter)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), timeout)
        finally:
            with self._lock:
                waiting = self._waiters.get(deployment_id)
                if waiting is not None:
                    waiting.discard(waiter)
                    if not waiting:
                        del self._waiters[deployment_id]
