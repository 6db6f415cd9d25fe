"""The credential of gateways running in processes of their own (`trackside serve pub`).

The operator chooses one secret value and gives it to both sides (TRACKSIDE_GATEWAY_TOKEN, e.g.
from one Kubernetes Secret). On start the lifecycle makes sure it is a token of the ESC `gateway`,
which holds `call_admin_api` (what lifecycle/api/gateway.py asks of a gateway; narrower than
`full_access`, which would also let the gateway's token call every job). Only its hash is stored.
"""

from __future__ import annotations

from sqlalchemy import select

from lifecycle.auth.escs import create_esc, get_esc
from lifecycle.auth.permissions import grant
from lifecycle.auth.subjects import esc_subject
from lifecycle.auth.tokens import MAX_TOKEN_LENGTH, TOKEN_PREFIX, hash_token, issue_token
from lifecycle.store.audit import SYSTEM_ACTOR
from lifecycle.store.database import Database
from lifecycle.store.models import Scope, Token

GATEWAY_ESC = "gateway"
MIN_SECRET_LENGTH = 32  # after the prefix


class BadGatewayToken(ValueError):
    pass


def ensure_gateway_credential(db: Database, token: str) -> bool:
    """Make `token` a valid credential of ESC `gateway`; True when anything had to be created."""
    secret = token.removeprefix(TOKEN_PREFIX)
    if (
        not token.startswith(TOKEN_PREFIX)
        or len(secret) < MIN_SECRET_LENGTH
        or len(token) > MAX_TOKEN_LENGTH
        or not secret.isascii()
        or any(c.isspace() or not c.isprintable() for c in secret)
    ):
        raise BadGatewayToken(
            f"TRACKSIDE_GATEWAY_TOKEN must be {TOKEN_PREFIX!r} followed by at least {MIN_SECRET_LENGTH} "
            f"printable characters without spaces, at most {MAX_TOKEN_LENGTH} in all "
            f'(e.g. TRACKSIDE_GATEWAY_TOKEN="{TOKEN_PREFIX}$(openssl rand -hex 32)")'
        )
    changed = False
    with db.session() as session:
        esc = get_esc(session, GATEWAY_ESC)
        if esc is None:
            esc = create_esc(session, GATEWAY_ESC, actor=SYSTEM_ACTOR)
            changed = True
        subject = esc_subject(esc)
        grant(session, subject, Scope.CALL_ADMIN_API, actor=SYSTEM_ACTOR)
        known = session.scalar(select(Token).where(Token.token_hash == hash_token(token)))
        if known is not None and (known.subject_type, known.subject_id) != (subject.type, subject.id):
            raise BadGatewayToken("TRACKSIDE_GATEWAY_TOKEN is already the token of another subject")
        if known is not None and known.revoked_at is not None:
            raise BadGatewayToken("TRACKSIDE_GATEWAY_TOKEN was revoked: choose a new value for both sides")
        if known is None:
            issue_token(
                session,
                subject,
                actor=SYSTEM_ACTOR,
                description="gateway credential (TRACKSIDE_GATEWAY_TOKEN)",
                value=token,
            )
            changed = True
    return changed
