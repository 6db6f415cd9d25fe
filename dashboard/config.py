"""The dashboard's settings: where it is served, where the platform's public addresses are, and the
key its forms' CSRF tokens are signed with."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field

PREFIX = "/dashboard"
SECRET_ENV = "TRACKSIDE_DASHBOARD_SECRET"
PUBLIC_URL_ENV = "TRACKSIDE_PUBLIC_URL"
MIN_SECRET_LENGTH = 16


@dataclass(frozen=True)
class DashboardConfig:
    # signs CSRF tokens; random per process unless given (several dashboard replicas must share one)
    secret_key: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)
    # the platform's root as users reach it (the `trackside login --remote` URL); None: the
    # address the request came to
    public_url: str | None = None
    # the gateway shares the dashboard's origin (`trackside up`): links to jobs are made relative,
    # so the sign-in cookie goes with them whatever host name the user typed
    same_origin_gateway: bool = False
    prefix: str = PREFIX

    @classmethod
    def from_env(cls, env: Mapping[str, str], same_origin_gateway: bool = False) -> DashboardConfig:
        secret = env.get(SECRET_ENV, "")
        if secret and len(secret) < MIN_SECRET_LENGTH:
            raise ValueError(f"{SECRET_ENV} must be at least {MIN_SECRET_LENGTH} characters")
        public_url = env.get(PUBLIC_URL_ENV, "").strip().rstrip("/") or None
        if public_url is not None and not public_url.startswith(("http://", "https://")):
            raise ValueError(f"{PUBLIC_URL_ENV} must be an http(s) URL, got {public_url!r}")
        if secret:
            return cls(secret.encode(), public_url, same_origin_gateway)
        return cls(public_url=public_url, same_origin_gateway=same_origin_gateway)
