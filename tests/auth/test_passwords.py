"""Passwords are hashed with argon2id (the real parameters here) and rehashed when outdated."""

from __future__ import annotations

from argon2 import PasswordHasher

from lifecycle.auth import passwords
from lifecycle.auth.passwords import check_password, hash_password


def test_argon2id_hash_verify_and_wrong_password() -> None:
    password_hash = hash_password("correct horse")
    assert password_hash.startswith("$argon2id$")
    assert "correct horse" not in password_hash
    assert check_password(password_hash, "correct horse") == (True, None)
    assert check_password(password_hash, "wrong horse") == (False, None)
    assert check_password("not a hash", "correct horse") == (False, None)
    assert hash_password("correct horse") != password_hash  # salted


def test_an_outdated_hash_is_replaced_on_success() -> None:
    weak = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash("correct horse")
    matches, new_hash = check_password(weak, "correct horse")
    assert matches and new_hash is not None
    assert new_hash.startswith("$argon2id$") and not passwords.hasher.check_needs_rehash(new_hash)
    assert check_password(new_hash, "correct horse") == (True, None)
    assert check_password(weak, "wrong") == (False, None)
