"""CallAuthorizer: the gateway's one question per request, "may this token call this endpoint?".

Decisions are cached per (token hash, job, version, endpoint) for `auth_cache_ttl` seconds, never
beyond the token's expiry, and dropped in this process when tokens, permissions, users or public
endpoints change (see decision_cache).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from lifecycle.auth.decision_cache import DecisionCache
from lifecycle.auth.permissions import check_in, denial_reason
from lifecycle.auth.public_endpoints import is_public_endpoint
from lifecycle.auth.subjects import Subject
from lifecycle.auth.tokens import authenticate_in, hash_token
from lifecycle.config import DEFAULT_AUTH_CACHE_TTL, LifecycleConfig
from lifecycle.store.column_types import utcnow
from lifecycle.store.database import Database
from lifecycle.store.models import Scope

MISSING_TOKEN = "missing auth token (X-Racetrack-Auth header or cookie)"
INVALID_TOKEN = "invalid auth token: unknown, expired or revoked"


@dataclass(frozen=True)
class CallDecision:
    allowed: bool
    status: int  # 200 when allowed, else 401 (no valid token) or 403 (no permission)
    caller_name: str | None  # for X-Caller-Name: "User alice", "ESC billing", "Job family adder"
    reason: str
    subject: Subject | None = None


class CallAuthorizer:
    def __init__(
        self,
        db: Database,
        ttl: float = DEFAULT_AUTH_CACHE_TTL,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = db
        self._cache: DecisionCache[CallDecision] = DecisionCache(ttl, max_entries, clock)

    @classmethod
    def from_config(cls, db: Database, config: LifecycleConfig) -> CallAuthorizer:
        return cls(db, ttl=config.auth_cache_ttl)

    @property
    def hits(self) -> int:
        return self._cache.hits

    @property
    def misses(self) -> int:
        return self._cache.misses

    def invalidate(self) -> None:
        self._cache.invalidate()

    def can_call(self, token: str | None, job_name: str, job_version: str, endpoint: str) -> CallDecision:
        """job_version is exact (the gateway resolves `latest` and wildcards first)."""
        key = (hash_token(token) if token else None, job_name, job_version, endpoint)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        decision = self._decide(token, job_name, job_version, endpoint)
        self._cache.put(key, decision, _seconds_left(decision.subject))
        return decision

    def _decide(self, token: str | None, job_name: str, job_version: str, endpoint: str) -> CallDecision:
        with self.db.session() as session:
            subject = authenticate_in(session, token) if token else None
            if subject is not None and check_in(
                session, subject, Scope.CALL_JOB, job_name, job_version, endpoint
            ):
                return CallDecision(True, 200, subject.description, "permitted", subject)
            if is_public_endpoint(session, job_name, job_version, endpoint):
                caller = subject.description if subject else None
                return CallDecision(True, 200, caller, "public endpoint", subject)
        if subject is None:
            return CallDecision(False, 401, None, INVALID_TOKEN if token else MISSING_TOKEN)
        reason = denial_reason(subject, Scope.CALL_JOB, job_name, job_version, endpoint)
        return CallDecision(False, 403, subject.description, reason, subject)


def _seconds_left(subject: Subject | None, now: datetime | None = None) -> float | None:
    if subject is None or subject.token_expires_at is None:
        return None
    return (subject.token_expires_at - (now or utcnow())).total_seconds()
