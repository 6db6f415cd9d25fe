"""Round-robin over a job version's ready replicas: the order in which one request tries them."""

from __future__ import annotations

from collections.abc import Sequence


class RoundRobin:
    def __init__(self, max_keys: int = 10_000) -> None:
        self._next: dict[tuple[str, str], int] = {}
        self._max_keys = max_keys

    def order(self, name: str, version: str, replicas: Sequence[str]) -> Sequence[str]:
        """All replicas, starting with the next one in turn (the others follow as fallbacks)."""
        count = len(replicas)
        if count < 2:
            return replicas
        key = (name, version)
        turn = self._next.get(key, 0)
        if turn == 0 and len(self._next) >= self._max_keys:
            self._next.clear()
        self._next[key] = turn + 1
        start = turn % count
        return replicas if start == 0 else (*replicas[start:], *replicas[:start])
