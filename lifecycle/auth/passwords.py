"""Password hashing with argon2id (memory-hard), verification and transparent rehashing."""

from __future__ import annotations

from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

# argon2-cffi's defaults (RFC 9106 low-memory profile: t=3, m=64 MiB, p=4); tests may swap in
# cheaper parameters, which `check_password` then upgrades on the next login
hasher = PasswordHasher()


def hash_password(password: str) -> str:
    return hasher.hash(password)


def check_password(password_hash: str, password: str) -> tuple[bool, str | None]:
    """(matches, new hash when the stored one uses outdated parameters, else None)."""
    try:
        hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False, None
    return True, hasher.hash(password) if hasher.check_needs_rehash(password_hash) else None


def spend_verification_time(password: str) -> None:
    """As long as a real check: a login for an unknown user must not answer faster than for a known one."""
    check_password(_dummy_hash(), password)


@cache
def _dummy_hash() -> str:
    return hasher.hash("trackside-dummy-password")
