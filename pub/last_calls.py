"""When each job version was last called through this gateway, reported to the registry in batches.

A call costs one dict store (`touch`); every `interval` seconds the batch goes to the registry's
`record_calls` (pub.registry.CallRecorder) from a worker thread, or to its `record_calls_async`.
A registry with neither is not told. A report that fails is logged and its calls are kept for the
next one (newer times win); what is pending at shutdown is reported then.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

logger = logging.getLogger(__name__)

Calls = dict[tuple[str, str], datetime]


class LastCalls:
    def __init__(self, registry: Any, interval: float) -> None:
        self.interval = interval
        self._record: Callable[[Calls], None] | None = getattr(registry, "record_calls", None)
        self._record_async: Callable[[Calls], Awaitable[None]] | None = getattr(
            registry, "record_calls_async", None
        )
        self._pending: dict[tuple[str, str], float] = {}  # (job, version) -> time.time()
        self._task: asyncio.Task[None] | None = None
        self.reports = 0  # batches reported (for tests and curiosity)

    @property
    def enabled(self) -> bool:
        return self._record is not None or self._record_async is not None

    def touch(self, job: str, version: str) -> None:
        if self._task is None and self.enabled:
            self.start()
        self._pending[(job, version)] = time.time()

    def start(self) -> None:
        if self._task is None and self.enabled:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="pub-last-calls")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self.flush()

    async def flush(self) -> None:
        if not self._pending or not self.enabled:
            return
        batch, self._pending = self._pending, {}
        calls = {key: datetime.fromtimestamp(at, UTC) for key, at in batch.items()}
        try:
            if self._record_async is not None:
                await self._record_async(calls)
            elif self._record is not None:
                await asyncio.to_thread(self._record, calls)
            self.reports += 1
        except Exception as error:
            logger.warning(
                "could not report %d job(s)' last calls (kept for the next try): %s", len(calls), error
            )
            for key, at in batch.items():
                if self._pending.get(key, 0.0) < at:
                    self._pending[key] = at

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.flush()
