"""lifecycle.secrets: Fernet round trip, passphrase keys, wrong keys, values never in reprs."""

from __future__ import annotations

import logging

import pytest

from lifecycle.secrets import SecretBox, SecretDecryptionError, SecretKeyError, SecretValues, fernet_key

VALUES = {"DB_PASSWORD": "s3cr3t-value"}


def test_round_trip_with_a_fernet_key() -> None:
    key = SecretBox.generate_key()
    assert fernet_key(key) == key.encode()
    box = SecretBox(key)
    ciphertext = box.encrypt(VALUES)
    assert "s3cr3t" not in ciphertext
    assert box.decrypt(ciphertext).reveal() == VALUES
    assert SecretBox(key).decrypt(ciphertext)["DB_PASSWORD"] == "s3cr3t-value"


def test_a_passphrase_derives_a_stable_key() -> None:
    passphrase = "correct horse battery staple"
    ciphertext = SecretBox(passphrase).encrypt(VALUES)
    assert SecretBox(passphrase).decrypt(ciphertext).reveal() == VALUES
    with pytest.raises(SecretDecryptionError):
        SecretBox(passphrase + "!").decrypt(ciphertext)


def test_a_short_passphrase_is_refused() -> None:
    with pytest.raises(SecretKeyError, match="at least 12 characters"):
        SecretBox("short")


def test_a_wrong_key_is_a_clear_error_without_the_values(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    ciphertext = SecretBox(SecretBox.generate_key()).encrypt(VALUES)
    with pytest.raises(SecretDecryptionError) as error:
        SecretBox(SecretBox.generate_key()).decrypt(ciphertext)
    message = str(error.value)
    assert "TRACKSIDE_SECRET_KEY" in message and "s3cr3t" not in message
    assert error.value.__cause__ is None and error.value.__suppress_context__
    assert "s3cr3t" not in caplog.text
    with pytest.raises(SecretDecryptionError):
        SecretBox(SecretBox.generate_key()).decrypt("not a fernet token at all é")


def test_values_never_show_in_repr_or_str() -> None:
    values = SecretValues(VALUES)
    for text in (repr(values), str(values), f"{values}", repr([values]), repr(SecretBox("x" * 20))):
        assert "s3cr3t" not in text
    assert repr(values) == "SecretValues({'DB_PASSWORD': '***'})"
    assert dict(values) == VALUES and len(values) == 1


def test_only_strings_are_encrypted() -> None:
    with pytest.raises(TypeError):
        SecretBox(SecretBox.generate_key()).encrypt({"A": 1})  # type: ignore[dict-item]
