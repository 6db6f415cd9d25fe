"""Secrets stored encrypted, owned by a deployment, then by the job version."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from lifecycle.secrets import SecretBox, SecretDecryptionError
from lifecycle.store import Database
from lifecycle.store.deployments import create_deployment
from lifecycle.store.models import SecretKind, SecretRecord
from lifecycle.store.secret_records import delete_secrets, load_secrets, move_secrets_to_job, save_secrets

BOX = SecretBox(SecretBox.generate_key())
VALUES = {"DB_PASSWORD": "s3cr3t-value", "API_KEY": "k-123"}


def _deployment(db: Database) -> str:
    with db.session() as session:
        return create_deployment(session, job_name="adder", job_version="1.0.0", manifest_yaml="").id


def test_secrets_are_encrypted_at_rest(database: Database) -> None:
    deployment_id = _deployment(database)
    with database.session() as session:
        save_secrets(session, BOX, SecretKind.RUNTIME_ENV, VALUES, deployment_id=deployment_id)
    with database.session() as session:
        ciphertext = session.scalar(select(SecretRecord.ciphertext))
        assert ciphertext is not None and "s3cr3t" not in ciphertext and "DB_PASSWORD" not in ciphertext
        loaded = load_secrets(session, BOX, SecretKind.RUNTIME_ENV, deployment_id=deployment_id)
        assert loaded.reveal() == VALUES
        assert dict(load_secrets(session, BOX, SecretKind.BUILD_ENV, deployment_id=deployment_id)) == {}


def test_saving_again_replaces_and_empty_removes(database: Database) -> None:
    with database.session() as session:
        save_secrets(session, BOX, SecretKind.BUILD_ENV, {"A": "1"}, job=("adder", "1.0.0"))
    with database.session() as session:
        save_secrets(session, BOX, SecretKind.BUILD_ENV, {"B": "2"}, job=("adder", "1.0.0"))
    with database.session() as session:
        assert load_secrets(session, BOX, SecretKind.BUILD_ENV, job=("adder", "1.0.0")).reveal() == {"B": "2"}
        save_secrets(session, BOX, SecretKind.BUILD_ENV, {}, job=("adder", "1.0.0"))
    with database.session() as session:
        assert session.scalar(select(SecretRecord)) is None


def test_a_deployments_secrets_move_to_the_job_version(database: Database) -> None:
    deployment_id = _deployment(database)
    with database.session() as session:
        save_secrets(session, BOX, SecretKind.RUNTIME_ENV, {"OLD": "x"}, job=("adder", "1.0.0"))
        save_secrets(session, BOX, SecretKind.RUNTIME_ENV, VALUES, deployment_id=deployment_id)
        save_secrets(session, BOX, SecretKind.GIT_CREDENTIALS, {"username": "u"}, deployment_id=deployment_id)
    with database.session() as session:
        move_secrets_to_job(session, deployment_id, "adder", "1.0.0")
    with database.session() as session:
        job = ("adder", "1.0.0")
        assert load_secrets(session, BOX, SecretKind.RUNTIME_ENV, job=job).reveal() == VALUES
        assert load_secrets(session, BOX, SecretKind.GIT_CREDENTIALS, job=job).reveal() == {"username": "u"}
        assert dict(load_secrets(session, BOX, SecretKind.RUNTIME_ENV, deployment_id=deployment_id)) == {}
        delete_secrets(session, job=job)
    with database.session() as session:
        assert session.scalar(select(SecretRecord)) is None


def test_a_wrong_key_is_a_clear_error(database: Database) -> None:
    with database.session() as session:
        save_secrets(session, BOX, SecretKind.RUNTIME_ENV, VALUES, job=("adder", "1.0.0"))
    other = SecretBox(SecretBox.generate_key())
    with database.session() as session, pytest.raises(SecretDecryptionError, match="not the key") as error:
        load_secrets(session, other, SecretKind.RUNTIME_ENV, job=("adder", "1.0.0"))
    assert error.value.__cause__ is None and error.value.__suppress_context__


def test_an_owner_is_exactly_one_of_job_or_deployment(database: Database) -> None:
    with database.session() as session, pytest.raises(ValueError):
        save_secrets(session, BOX, SecretKind.RUNTIME_ENV, VALUES)
