"""Encryption of secret values (build/runtime secrets, git credentials) at rest.

The key is TRACKSIDE_SECRET_KEY or the key file generated into the data dir (see LifecycleConfig).
A value that is a Fernet key (url-safe base64 of 32 bytes, as `SecretBox.generate_key()` or
`python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"`
prints) is used as it is; any other value is a passphrase of at least 12 characters, stretched
into a key with scrypt. The salt is fixed because the key must be the same on every start; a
passphrase therefore has to be strong on its own.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterator, Mapping

from cryptography.fernet import Fernet, InvalidToken

from lifecycle.config import LifecycleConfig

MIN_PASSPHRASE_LENGTH = 12
_KDF_SALT = b"trackside/secret-key/v1"


class SecretKeyError(ValueError):
    """The configured secret key cannot be used."""


class SecretDecryptionError(Exception):
    """Stored secrets cannot be read with the configured key."""


class SecretValues(Mapping[str, str]):
    """A read-only mapping of secret values whose repr and str show the names only."""

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, str] | None = None) -> None:
        self._values = dict(values or {})

    def __getitem__(self, name: str) -> str:
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"SecretValues({dict.fromkeys(self._values, '***')!r})"

    __str__ = __repr__

    def reveal(self) -> dict[str, str]:
        """A plain dict of the values, for the one place that needs them (a child's environment)."""
        return dict(self._values)


def fernet_key(secret_key: str) -> bytes:
    """The Fernet key for a configured secret key (a Fernet key itself or a passphrase)."""
    secret_key = secret_key.strip()
    try:
        if len(base64.urlsafe_b64decode(secret_key.encode("ascii"))) == 32 and len(secret_key) == 44:
            return secret_key.encode("ascii")
    except (binascii.Error, UnicodeEncodeError, ValueError):
        pass
    if len(secret_key) < MIN_PASSPHRASE_LENGTH:
        raise SecretKeyError(
            "the secret key (TRACKSIDE_SECRET_KEY) must be a Fernet key or a passphrase of at least "
            f"{MIN_PASSPHRASE_LENGTH} characters"
        )
    derived = hashlib.scrypt(secret_key.encode(), salt=_KDF_SALT, n=2**14, r=8, p=1, dklen=32)
    return base64.urlsafe_b64encode(derived)


class SecretBox:
    """Encrypts and decrypts mappings of secret values with one key."""

    __slots__ = ("_fernet",)

    def __init__(self, secret_key: str) -> None:
        self._fernet = Fernet(fernet_key(secret_key))

    @classmethod
    def from_config(cls, config: LifecycleConfig) -> SecretBox:
        return cls(config.secret_key)

    @staticmethod
    def generate_key() -> str:
        return Fernet.generate_key().decode("ascii")

    def __repr__(self) -> str:
        return "SecretBox(<key hidden>)"

    def encrypt(self, values: Mapping[str, str]) -> str:
        for name, value in values.items():
            if not isinstance(name, str) or not isinstance(value, str):
                raise TypeError(f"secret {name!r}: names and values must be strings")
        plaintext = json.dumps(dict(values), separators=(",", ":")).encode()
        return self._fernet.encrypt(plaintext).decode("ascii")

    def decrypt(self, ciphertext: str) -> SecretValues:
        try:
            plaintext = self._fernet.decrypt(ciphertext.encode("ascii"))
        except (InvalidToken, UnicodeEncodeError):
            # `from None`: the chained error adds nothing and the message must stand alone
            raise SecretDecryptionError(
                "stored secrets cannot be decrypted: the secret key (TRACKSIDE_SECRET_KEY or the data "
                "dir's secret.key) is not the key they were encrypted with, or the data is corrupt"
            ) from None
        return SecretValues(json.loads(plaintext))
