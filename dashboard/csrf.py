"""CSRF tokens: every form carries one, an HMAC bound to the signed-in session's token (or, on the
sign-in form, to a random value in a cookie of its own), so a page of another site cannot post
a form for the user."""

from __future__ import annotations

import hashlib
import hmac
import secrets

FIELD = "csrf_token"
SIGN_IN_COOKIE = "trackside_sign_in"


class CsrfGuard:
    def __init__(self, key: bytes) -> None:
        self._key = key

    def token(self, bound_to: str, purpose: str = "session") -> str:
        return hmac.new(self._key, f"{purpose}:{bound_to}".encode(), hashlib.sha256).hexdigest()

    def valid(self, given: str | None, bound_to: str | None, purpose: str = "session") -> bool:
        if not given or not bound_to:
            return False
        return hmac.compare_digest(given, self.token(bound_to, purpose))

    @staticmethod
    def new_nonce() -> str:
        return secrets.token_urlsafe(24)


class CsrfRejected(Exception):
    """A form came without a valid CSRF token."""
