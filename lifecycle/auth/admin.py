"""First start: the `admin` user and a token for it, handed over once through a file."""

from __future__ import annotations

import secrets
from pathlib import Path

from lifecycle.auth.subjects import user_subject
from lifecycle.auth.tokens import issue_token
from lifecycle.auth.users import create_user, get_user
from lifecycle.config import ensure_private_dir, write_private_file
from lifecycle.store.audit import SYSTEM_ACTOR
from lifecycle.store.database import Database
from lifecycle.store.errors import AlreadyExists

ADMIN_USERNAME = "admin"
ADMIN_TOKEN_FILE = "admin-token"


def ensure_admin(db: Database, data_dir: Path) -> str | None:
    """Create user `admin` (random password, admin) and a token on first start.

    Returns the token and writes it to DATA_DIR/admin-token (mode 600) the first time; None
    afterwards. The password is never shown: the admin logs in with the token and sets one.
    """
    with db.session() as session:
        if get_user(session, ADMIN_USERNAME) is not None:
            return None
    ensure_private_dir(data_dir)
    path = data_dir / ADMIN_TOKEN_FILE
    try:
        with db.session() as session:
            admin = create_user(
                session, ADMIN_USERNAME, secrets.token_urlsafe(24), actor=SYSTEM_ACTOR, is_admin=True
            )
            token = issue_token(
                session, user_subject(admin), actor=SYSTEM_ACTOR, description="created on first start"
            ).token
            # written before the commit: a crash in between leaves no admin, so the next start retries
            path.unlink(missing_ok=True)
            write_private_file(path, token + "\n")
    except AlreadyExists:
        return None  # another process created it between the check and the insert
    return token
