"""Admission control for job calls: a concurrency cap with a bounded FIFO queue.

Everything here runs on the event loop thread, so checking and taking a slot is atomic without a
lock: no await happens between the check and the update.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque


class QueueFull(Exception):
    def __init__(self, limit: int, queue: int) -> None:
        super().__init__(
            f"too many requests: the job handles {limit} request(s) at a time and "
            f"at most {queue} more may wait"
        )


class ConcurrencyLimiter:
    """`limit=None` admits everything (still counting requests in flight)."""

    def __init__(self, limit: int | None, queue: int | None) -> None:
        self.limit = limit
        self.queue_limit = queue
        self.active = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def queued(self) -> int:
        return len(self._waiters)

    def try_acquire(self) -> asyncio.Future[None] | None:
        """Take a slot now (returns None), or return a future to await for a queued slot.

        Raises QueueFull when the queue is at its limit; nothing is taken then.
        """
        if self.limit is None or (self.active < self.limit and not self._waiters):
            self.active += 1
            return None
        if self.queue_limit is not None and len(self._waiters) >= self.queue_limit:
            raise QueueFull(self.limit, self.queue_limit)
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        return waiter

    async def wait(self, waiter: asyncio.Future[None]) -> None:
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # the slot was handed over just as the caller went away
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        # A freed slot passes straight to the oldest waiter, so `active` stays the same.
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.active -= 1
