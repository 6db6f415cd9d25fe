"""Job family tokens: the `AUTH_TOKEN` every job of a family runs with (DESIGN §2.2, chain calls).

Each family has one token, issued the first time one of its jobs needs it (`issue_token` for the
family's subject) and handed to every job of the family on deploy and on restart. Unlike other
tokens, its plaintext must be recoverable, so it is also kept encrypted (SecretBox) in the secrets
table: as the runtime secret `AUTH_TOKEN` owned by the family itself, i.e. under the reserved
version `FAMILY_VERSION`, which is not SemVer and so never the version of a job. That record
outlives the deletion of any version (deleting a version removes that version's secrets only) and
its unique key (name, version, kind) makes "one token per family" hold across processes too.

A stored token that was revoked or has expired is replaced by a new one on the next deploy or
restart of a job of the family. The token is never logged: the audit log gets its id and prefix.

What the family may call is granted like any permission: `call_job` for the family's subject
(`POST /families/{caller}/can-call/{target}` in lifecycle.api.gateway).
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from lifecycle.auth.subjects import Subject, family_subject
from lifecycle.auth.tokens import hash_token, issue_token
from lifecycle.secrets import SecretBox
from lifecycle.store import secret_records
from lifecycle.store.audit import SYSTEM_ACTOR
from lifecycle.store.column_types import utcnow
from lifecycle.store.database import Database
from lifecycle.store.errors import AlreadyExists, flush_new
from lifecycle.store.jobs import ensure_family
from lifecycle.store.models import SecretKind, SecretRecord, Token

AUTH_TOKEN = "AUTH_TOKEN"
# the owner "version" of secrets that belong to a whole family; not SemVer, so no job version clashes
FAMILY_VERSION = "(family)"
TOKEN_DESCRIPTION = "AUTH_TOKEN of the family's jobs"
_ATTEMPTS = 3


def family_token_in(session: Session, box: SecretBox, family: str, *, actor: str = SYSTEM_ACTOR) -> str:
    """The family's token in the caller's unit of work: the stored one while it is valid, else a
    new one, issued and stored (the family is created when it does not exist yet).

    Two processes issuing at once: the second one's flush raises AlreadyExists, which ends its unit
    of work (use `family_token`, which starts again and then finds the winner's token).
    """
    subject = family_subject(ensure_family(session, family))
    owner = (family, FAMILY_VERSION)
    stored = secret_records.load_secrets(session, box, SecretKind.RUNTIME_ENV, job=owner).get(AUTH_TOKEN)
    if stored is not None and _is_valid(session, stored, subject):
        return stored
    issued = issue_token(session, subject, actor=actor, description=TOKEN_DESCRIPTION)
    values = {AUTH_TOKEN: issued.token}
    if stored is None:
        # a plain insert, so that a concurrent first issue clashes on the unique key instead of
        # replacing the other's record (save_secrets deletes before it inserts)
        session.add(
            SecretRecord(
                job_name=family,
                job_version=FAMILY_VERSION,
                kind=SecretKind.RUNTIME_ENV,
                ciphertext=box.encrypt(values),
            )
        )
        flush_new(session, f"the token of job family {family}")
    else:
        secret_records.save_secrets(session, box, SecretKind.RUNTIME_ENV, values, job=owner)
    return issued.token


def family_token(db: Database, box: SecretBox, family: str, *, actor: str = SYSTEM_ACTOR) -> str:
    """`family_token_in` in a unit of work of its own (retried when another process issued first)."""
    attempt = 1
    while True:
        try:
            with db.session() as session:
                return family_token_in(session, box, family, actor=actor)
        except AlreadyExists:
            if attempt >= _ATTEMPTS:
                raise
            attempt += 1


def _is_valid(session: Session, token: str, subject: Subject) -> bool:
    """Whether the stored token still speaks for the family (read-only: no last-use update)."""
    record = session.scalar(select(Token).where(Token.token_hash == hash_token(token)))
    return (
        record is not None
        and record.subject_type == subject.type
        and record.subject_id == subject.id
        and record.revoked_at is None
        and (record.expires_at is None or record.expires_at > utcnow())
    )
