"""The lifecycle's tables (DESIGN §4). A change here needs a migration in lifecycle/store/migrations."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    column,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from lifecycle.store.column_types import StrEnumType, UTCDateTime, utcnow

NAME_LENGTH = 63
VERSION_LENGTH = 128
SUBJECT_NAME_LENGTH = 64
ENDPOINT_LENGTH = 512
ACTOR_LENGTH = 255


class JobStatus(StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    ERROR = "error"
    LOST = "lost"
    STOPPED = "stopped"


class DeploymentStatus(StrEnum):
    IN_PROGRESS = "in_progress"
    DONE = "done"
    FAILED = "failed"


class SubjectType(StrEnum):
    USER = "user"
    ESC = "esc"
    FAMILY = "family"


class Scope(StrEnum):
    READ_JOB = "read_job"
    DEPLOY_JOB = "deploy_job"
    DEPLOY_NEW_FAMILY = "deploy_new_family"
    DELETE_JOB = "delete_job"
    CALL_JOB = "call_job"
    CALL_ADMIN_API = "call_admin_api"
    FULL_ACCESS = "full_access"


class PublicEndpointStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


class AsyncCallStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class SecretKind(StrEnum):
    BUILD_ENV = "build_env"
    RUNTIME_ENV = "runtime_env"
    GIT_CREDENTIALS = "git_credentials"


def one_of(column: str, enum: type[StrEnum]) -> CheckConstraint:
    values = ", ".join(f"'{member.value}'" for member in enum)
    return CheckConstraint(f"{column} IN ({values})", name=column)


def new_uuid() -> str:
    return str(uuid.uuid4())


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class JobFamily(Base):
    __tablename__ = "job_families"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Job(Base):
    """One version of a job. `name` is also its family's name (Racetrack: family = job name)."""

    __tablename__ = "jobs"
    __table_args__ = (UniqueConstraint("name", "version"), one_of("status", JobStatus))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    version: Mapped[str] = mapped_column(String(VERSION_LENGTH))
    family_id: Mapped[int] = mapped_column(ForeignKey("job_families.id", ondelete="RESTRICT"), index=True)
    status: Mapped[JobStatus] = mapped_column(StrEnumType(JobStatus, 16))
    manifest_yaml: Mapped[str] = mapped_column(Text)
    manifest: Mapped[dict[str, Any]] = mapped_column(JSON)
    owner_email: Mapped[str] = mapped_column(String(320))
    deployed_by: Mapped[str | None] = mapped_column(String(ACTOR_LENGTH))
    deployment_id: Mapped[str | None] = mapped_column(
        ForeignKey("deployments.id", ondelete="SET NULL"), index=True
    )
    environment_id: Mapped[str | None] = mapped_column(String(128))
    code_dir: Mapped[str | None] = mapped_column(Text)
    infrastructure_target: Mapped[str | None] = mapped_column(String(64))
    deployment_timestamp: Mapped[int] = mapped_column(BigInteger, default=0)
    replicas: Mapped[int] = mapped_column(Integer, default=1)
    error: Mapped[str | None] = mapped_column(Text)
    labels: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    last_call_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Deployment(Base):
    """One request to deploy a job version; outlives a failed job (which leaves no `jobs` row)."""

    __tablename__ = "deployments"
    __table_args__ = (
        Index("ix_deployments_job", "job_name", "job_version"),
        one_of("status", DeploymentStatus),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    job_name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    job_version: Mapped[str] = mapped_column(String(VERSION_LENGTH))
    status: Mapped[DeploymentStatus] = mapped_column(
        StrEnumType(DeploymentStatus, 16), default=DeploymentStatus.IN_PROGRESS
    )
    phase: Mapped[str | None] = mapped_column(String(64))
    # [{"name": "...", "started_at": "ISO 8601"}], in order; reassign the list to change it
    phases: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    error: Mapped[str | None] = mapped_column(Text)
    warnings: Mapped[list[str]] = mapped_column(JSON, default=list)
    build_log: Mapped[str] = mapped_column(Text, default="")
    manifest_yaml: Mapped[str] = mapped_column(Text)
    deployed_by: Mapped[str | None] = mapped_column(String(ACTOR_LENGTH))
    force: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class User(Base):
    __tablename__ = "users"
    # ids are never reused (SQLite reuses the highest free rowid otherwise): a new subject must not
    # inherit a deleted one's tokens, permissions or audit trail
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(SUBJECT_NAME_LENGTH), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Esc(Base):
    """An external service consumer: a machine caller of jobs."""

    __tablename__ = "escs"
    # ids are never reused (SQLite reuses the highest free rowid otherwise): a new subject must not
    # inherit a deleted one's tokens, permissions or audit trail
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(SUBJECT_NAME_LENGTH), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Token(Base):
    """An API token; only its SHA-256 is stored. The subject is a user, an ESC or a job family."""

    __tablename__ = "tokens"
    __table_args__ = (
        Index("ix_tokens_subject", "subject_type", "subject_id"),
        one_of("subject_type", SubjectType),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    subject_type: Mapped[SubjectType] = mapped_column(StrEnumType(SubjectType, 16))
    subject_id: Mapped[int] = mapped_column(Integer)
    description: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Permission(Base):
    """subject may `scope` on family / version / endpoint; None in a resource column means any."""

    __tablename__ = "permissions"
    __table_args__ = (
        # NULL means "any", and NULLs are distinct in a plain unique constraint, hence the coalesce
        Index(
            "uq_permissions_grant",
            "subject_type",
            "subject_id",
            "scope",
            func.coalesce(column("job_family"), ""),
            func.coalesce(column("job_version"), ""),
            func.coalesce(column("endpoint"), ""),
            unique=True,
        ),
        one_of("subject_type", SubjectType),
        one_of("scope", Scope),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subject_type: Mapped[SubjectType] = mapped_column(StrEnumType(SubjectType, 16))
    subject_id: Mapped[int] = mapped_column(Integer)
    scope: Mapped[Scope] = mapped_column(StrEnumType(Scope, 32))
    job_family: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    job_version: Mapped[str | None] = mapped_column(String(VERSION_LENGTH))
    endpoint: Mapped[str | None] = mapped_column(String(ENDPOINT_LENGTH))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class PublicEndpointRequest(Base):
    __tablename__ = "public_endpoint_requests"
    __table_args__ = (
        UniqueConstraint("job_name", "job_version", "endpoint", name="uq_public_endpoint_requests_endpoint"),
        one_of("status", PublicEndpointStatus),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    job_version: Mapped[str] = mapped_column(String(VERSION_LENGTH))
    endpoint: Mapped[str] = mapped_column(String(ENDPOINT_LENGTH))
    status: Mapped[PublicEndpointStatus] = mapped_column(
        StrEnumType(PublicEndpointStatus, 16), default=PublicEndpointStatus.PENDING
    )
    decided_by: Mapped[str | None] = mapped_column(String(ACTOR_LENGTH))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AuditEvent(Base):
    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(ACTOR_LENGTH))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(ENDPOINT_LENGTH))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class AsyncCall(Base):
    """A call made through `/pub/async`; the result is kept until `expires_at`."""

    __tablename__ = "async_calls"
    __table_args__ = (
        # NULL keys never collide, so calls without an idempotency key are unconstrained
        Index(
            "uq_async_calls_idempotency",
            "subject_type",
            "subject_id",
            "idempotency_key",
            unique=True,
        ),
        one_of("status", AsyncCallStatus),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    job_name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    job_version: Mapped[str] = mapped_column(String(VERSION_LENGTH))
    method: Mapped[str] = mapped_column(String(16))
    path: Mapped[str] = mapped_column(Text)
    status: Mapped[AsyncCallStatus] = mapped_column(
        StrEnumType(AsyncCallStatus, 16), default=AsyncCallStatus.PENDING, index=True
    )
    subject_type: Mapped[SubjectType | None] = mapped_column(StrEnumType(SubjectType, 16))
    subject_id: Mapped[int | None] = mapped_column(Integer)
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    request_body: Mapped[bytes] = mapped_column(LargeBinary, default=b"")
    request_headers: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    result_status: Mapped[int | None] = mapped_column(Integer)
    result_headers: Mapped[dict[str, str] | None] = mapped_column(JSON)
    result_body: Mapped[bytes | None] = mapped_column(LargeBinary)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)


class SecretRecord(Base):
    """Encrypted secret values owned by a job version or by a deployment in progress."""

    __tablename__ = "secrets"
    __table_args__ = (
        UniqueConstraint("job_name", "job_version", "kind", name="uq_secrets_job_kind"),
        UniqueConstraint("deployment_id", "kind", name="uq_secrets_deployment_kind"),
        CheckConstraint(
            "(job_name IS NOT NULL AND job_version IS NOT NULL AND deployment_id IS NULL)"
            " OR (job_name IS NULL AND job_version IS NULL AND deployment_id IS NOT NULL)",
            name="owner",
        ),
        one_of("kind", SecretKind),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_name: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    job_version: Mapped[str | None] = mapped_column(String(VERSION_LENGTH))
    deployment_id: Mapped[str | None] = mapped_column(ForeignKey("deployments.id", ondelete="CASCADE"))
    kind: Mapped[SecretKind] = mapped_column(StrEnumType(SecretKind, 16))
    ciphertext: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
