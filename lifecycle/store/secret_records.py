"""Encrypted secrets in the `secrets` table, owned by a deployment in progress or by a job version.

A deploy request's secrets are saved under its deployment; once the version is deployed they move
to the job version, so a restarted lifecycle can start it again with the same runtime secrets.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import ColumnElement, and_, delete, select
from sqlalchemy.orm import Session

from lifecycle.secrets import SecretBox, SecretValues
from lifecycle.store.models import SecretKind, SecretRecord


def _owned_by(job: tuple[str, str] | None, deployment_id: str | None) -> ColumnElement[bool]:
    if (job is None) == (deployment_id is None):
        raise ValueError("secrets belong to exactly one of a job version or a deployment")
    if job is not None:
        return and_(SecretRecord.job_name == job[0], SecretRecord.job_version == job[1])
    return SecretRecord.deployment_id == deployment_id


def save_secrets(
    session: Session,
    box: SecretBox,
    kind: SecretKind,
    values: Mapping[str, str],
    *,
    job: tuple[str, str] | None = None,
    deployment_id: str | None = None,
) -> None:
    """Replace the owner's secrets of this kind (an empty mapping removes them)."""
    owner = _owned_by(job, deployment_id)
    session.execute(delete(SecretRecord).where(owner, SecretRecord.kind == kind))
    if not values:
        return
    session.add(
        SecretRecord(
            job_name=job[0] if job else None,
            job_version=job[1] if job else None,
            deployment_id=deployment_id,
            kind=kind,
            ciphertext=box.encrypt(values),
        )
    )
    session.flush()


def load_secrets(
    session: Session,
    box: SecretBox,
    kind: SecretKind,
    *,
    job: tuple[str, str] | None = None,
    deployment_id: str | None = None,
) -> SecretValues:
    """The owner's secrets of this kind (empty when none); SecretDecryptionError on a wrong key."""
    ciphertext = session.scalar(
        select(SecretRecord.ciphertext).where(_owned_by(job, deployment_id), SecretRecord.kind == kind)
    )
    return SecretValues() if ciphertext is None else box.decrypt(ciphertext)


def move_secrets_to_job(session: Session, deployment_id: str, job_name: str, job_version: str) -> None:
    """Hand a deployment's secrets to the job version, replacing the version's secrets of those kinds."""
    records = list(session.scalars(select(SecretRecord).where(SecretRecord.deployment_id == deployment_id)))
    kinds = [record.kind for record in records]
    if kinds:
        session.execute(
            delete(SecretRecord).where(
                SecretRecord.job_name == job_name,
                SecretRecord.job_version == job_version,
                SecretRecord.kind.in_(kinds),
            )
        )
    for record in records:
        record.deployment_id = None
        record.job_name = job_name
        record.job_version = job_version
    session.flush()


def delete_secrets(
    session: Session, *, job: tuple[str, str] | None = None, deployment_id: str | None = None
) -> None:
    session.execute(delete(SecretRecord).where(_owned_by(job, deployment_id)))
