"""Build contexts handed out once: a builder offers a tar it wrote, and the build pod that holds the
offer's token fetches it from the lifecycle (`GET /build-contexts/{id}`) exactly once.

Only a SHA-256 of each token is kept. A wrong token is refused without using the offer up (the pod
holding the right one can still fetch it); the right one uses it up at once, so a second fetch,
even with that token, finds nothing. Offers nobody took are forgotten once their time is up; a
taken one is remembered as taken until the builder withdraws it, so `was_taken` still answers
after a build that outlasted the offer.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_TTL_S = 1800.0


@dataclass(frozen=True)
class Offer:
    id: str  # goes in the URL: not a secret
    token: str = field(repr=False)


class WrongToken(Exception):
    """The offer exists and the token is not its own (the offer stays on offer)."""


@dataclass
class _Entry:
    archive: Path
    token_hash: bytes
    expires: float
    taken: bool = False


def _hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class ContextHandout:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()

    def offer(self, archive: Path, ttl: float = DEFAULT_TTL_S) -> Offer:
        """Offer `archive` (a tar file the caller owns and deletes) for `ttl` seconds."""
        if ttl <= 0:
            raise ValueError(f"ttl must be positive, got {ttl}")
        if not archive.is_file():
            raise FileNotFoundError(f"no build context archive at {archive}")
        offer = Offer(id=secrets.token_urlsafe(18), token=secrets.token_urlsafe(32))
        with self._lock:
            self._drop_expired()
            self._entries[offer.id] = _Entry(archive, _hash(offer.token), self._clock() + ttl)
        return offer

    def take(self, offer_id: str, token: str) -> Path | None:
        """The archive, once, for the offer's token; None when there is no such offer on offer
        (unknown, expired, withdrawn or taken already). Raises WrongToken for any other token."""
        given = _hash(token)
        with self._lock:
            self._drop_expired()
            entry = self._entries.get(offer_id)
            if entry is None or entry.taken:
                return None
            if not hmac.compare_digest(entry.token_hash, given):
                raise WrongToken(f"wrong token for build context {offer_id}")
            entry.taken = True
            return entry.archive

    def was_taken(self, offer_id: str) -> bool:
        with self._lock:
            entry = self._entries.get(offer_id)
            return entry is not None and entry.taken

    def withdraw(self, offer_id: str) -> None:
        with self._lock:
            self._entries.pop(offer_id, None)

    def _drop_expired(self) -> None:
        now = self._clock()
        for offer_id in [i for i, e in self._entries.items() if not e.taken and e.expires <= now]:
            del self._entries[offer_id]
