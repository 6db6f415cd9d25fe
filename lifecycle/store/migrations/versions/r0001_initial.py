"""Initial schema: jobs, deployments, auth (users, ESCs, tokens, permissions), audit, async calls, secrets

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

NAME = 63
VERSION = 128
SUBJECT_NAME = 64
ENDPOINT = 512
ACTOR = 255


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _one_of(table: str, column: str, values: tuple[str, ...]) -> sa.CheckConstraint:
    listed = ", ".join(f"'{value}'" for value in values)
    return sa.CheckConstraint(f"{column} IN ({listed})", name=op.f(f"ck_{table}_{column}"))


SUBJECT_TYPES = ("user", "esc", "family")


def upgrade() -> None:
    op.create_table(
        "job_families",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(NAME), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_families")),
        sa.UniqueConstraint("name", name=op.f("uq_job_families_name")),
    )

    op.create_table(
        "deployments",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("job_name", sa.String(NAME), nullable=False),
        sa.Column("job_version", sa.String(VERSION), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("phase", sa.String(64), nullable=True),
        sa.Column("phases", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("warnings", sa.JSON(), nullable=False),
        sa.Column("build_log", sa.Text(), nullable=False),
        sa.Column("manifest_yaml", sa.Text(), nullable=False),
        sa.Column("deployed_by", sa.String(ACTOR), nullable=True),
        sa.Column("force", sa.Boolean(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.Column("finished_at", _utc(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deployments")),
        _one_of("deployments", "status", ("in_progress", "done", "failed")),
    )
    op.create_index("ix_deployments_job", "deployments", ["job_name", "job_version"])

    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(NAME), nullable=False),
        sa.Column("version", sa.String(VERSION), nullable=False),
        sa.Column("family_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("manifest_yaml", sa.Text(), nullable=False),
        sa.Column("manifest", sa.JSON(), nullable=False),
        sa.Column("owner_email", sa.String(320), nullable=False),
        sa.Column("deployed_by", sa.String(ACTOR), nullable=True),
        sa.Column("deployment_id", sa.String(36), nullable=True),
        sa.Column("environment_id", sa.String(128), nullable=True),
        sa.Column("code_dir", sa.Text(), nullable=True),
        sa.Column("infrastructure_target", sa.String(64), nullable=True),
        sa.Column("deployment_timestamp", sa.BigInteger(), nullable=False),
        sa.Column("replicas", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.Column("last_call_at", _utc(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
        sa.ForeignKeyConstraint(
            ["family_id"],
            ["job_families.id"],
            name=op.f("fk_jobs_family_id_job_families"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["deployment_id"],
            ["deployments.id"],
            name=op.f("fk_jobs_deployment_id_deployments"),
            ondelete="SET NULL",
        ),
        sa.UniqueConstraint("name", "version", name=op.f("uq_jobs_name_version")),
        _one_of("jobs", "status", ("starting", "running", "error", "lost", "stopped")),
    )
    op.create_index(op.f("ix_jobs_family_id"), "jobs", ["family_id"])
    op.create_index(op.f("ix_jobs_deployment_id"), "jobs", ["deployment_id"])

    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(SUBJECT_NAME), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("is_admin", sa.Boolean(), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("last_login_at", _utc(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("username", name=op.f("uq_users_username")),
    )

    op.create_table(
        "escs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(SUBJECT_NAME), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_escs")),
        sa.UniqueConstraint("name", name=op.f("uq_escs_name")),
    )

    op.create_table(
        "tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("subject_type", sa.String(16), nullable=False),
        sa.Column("subject_id", sa.Integer(), nullable=False),
        sa.Column("description", sa.String(255), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("expires_at", _utc(), nullable=True),
        sa.Column("revoked_at", _utc(), nullable=True),
        sa.Column("last_used_at", _utc(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_tokens_token_hash")),
        _one_of("tokens", "subject_type", SUBJECT_TYPES),
    )
    op.create_index("ix_tokens_subject", "tokens", ["subject_type", "subject_id"])

    op.create_table(
        "permissions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subject_type", sa.String(16), nullable=False),
        sa.Column("subject_id", sa.Integer(), nullable=False),
        sa.Column("scope", sa.String(32), nullable=False),
        sa.Column("job_family", sa.String(NAME), nullable=True),
        sa.Column("job_version", sa.String(VERSION), nullable=True),
        sa.Column("endpoint", sa.String(ENDPOINT), nullable=True),
        sa.Column("created_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_permissions")),
        _one_of("permissions", "subject_type", SUBJECT_TYPES),
        _one_of(
            "permissions",
            "scope",
            (
                "read_job",
                "deploy_job",
                "deploy_new_family",
                "delete_job",
                "call_job",
                "call_admin_api",
                "full_access",
            ),
        ),
    )
    op.create_index(
        "uq_permissions_grant",
        "permissions",
        [
            "subject_type",
            "subject_id",
            "scope",
            sa.func.coalesce(sa.column("job_family"), ""),
            sa.func.coalesce(sa.column("job_version"), ""),
            sa.func.coalesce(sa.column("endpoint"), ""),
        ],
        unique=True,
    )

    op.create_table(
        "public_endpoint_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_name", sa.String(NAME), nullable=False),
        sa.Column("job_version", sa.String(VERSION), nullable=False),
        sa.Column("endpoint", sa.String(ENDPOINT), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("decided_by", sa.String(ACTOR), nullable=True),
        sa.Column("decided_at", _utc(), nullable=True),
        sa.Column("created_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_public_endpoint_requests")),
        sa.UniqueConstraint(
            "job_name", "job_version", "endpoint", name="uq_public_endpoint_requests_endpoint"
        ),
        _one_of("public_endpoint_requests", "status", ("pending", "approved", "rejected")),
    )

    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("time", _utc(), nullable=False),
        sa.Column("actor", sa.String(ACTOR), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(ENDPOINT), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
    )
    op.create_index(op.f("ix_audit_events_time"), "audit_events", ["time"])

    op.create_table(
        "async_calls",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("job_name", sa.String(NAME), nullable=False),
        sa.Column("job_version", sa.String(VERSION), nullable=False),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("subject_type", sa.String(16), nullable=True),
        sa.Column("subject_id", sa.Integer(), nullable=True),
        sa.Column("idempotency_key", sa.String(255), nullable=True),
        sa.Column("request_body", sa.LargeBinary(), nullable=False),
        sa.Column("request_headers", sa.JSON(), nullable=False),
        sa.Column("result_status", sa.Integer(), nullable=True),
        sa.Column("result_headers", sa.JSON(), nullable=True),
        sa.Column("result_body", sa.LargeBinary(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("started_at", _utc(), nullable=True),
        sa.Column("finished_at", _utc(), nullable=True),
        sa.Column("expires_at", _utc(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_async_calls")),
        _one_of("async_calls", "status", ("pending", "running", "done", "failed")),
    )
    op.create_index(
        "uq_async_calls_idempotency",
        "async_calls",
        ["subject_type", "subject_id", "idempotency_key"],
        unique=True,
    )
    op.create_index(op.f("ix_async_calls_status"), "async_calls", ["status"])
    op.create_index(op.f("ix_async_calls_expires_at"), "async_calls", ["expires_at"])

    op.create_table(
        "secrets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_name", sa.String(NAME), nullable=True),
        sa.Column("job_version", sa.String(VERSION), nullable=True),
        sa.Column("deployment_id", sa.String(36), nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("ciphertext", sa.Text(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_secrets")),
        sa.ForeignKeyConstraint(
            ["deployment_id"],
            ["deployments.id"],
            name=op.f("fk_secrets_deployment_id_deployments"),
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("job_name", "job_version", "kind", name="uq_secrets_job_kind"),
        sa.UniqueConstraint("deployment_id", "kind", name="uq_secrets_deployment_kind"),
        sa.CheckConstraint(
            "(job_name IS NOT NULL AND job_version IS NOT NULL AND deployment_id IS NULL)"
            " OR (job_name IS NULL AND job_version IS NULL AND deployment_id IS NOT NULL)",
            name=op.f("ck_secrets_owner"),
        ),
        _one_of("secrets", "kind", ("build_env", "runtime_env", "git_credentials")),
    )


def downgrade() -> None:
    for table in (
        "secrets",
        "async_calls",
        "audit_events",
        "public_endpoint_requests",
        "permissions",
        "tokens",
        "escs",
        "users",
        "jobs",
        "deployments",
        "job_families",
    ):
        op.drop_table(table)
