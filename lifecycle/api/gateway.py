"""What a gateway running in a process of its own asks the lifecycle (pub.lifecycle_client), and
the grants that let one job family call another.

- `GET /gateway/resolve/{name}/{version}`: the job version a call goes to (pub.registry.JobTarget
  as JSON) or 404 `{error, type, job, version}`.
- `POST /gateway/calls` `{calls: [{job_name, job_version, at}]}` → 204: when versions were last
  called (the jobs' `last_call_time`), reported in batches.
- `POST /gateway/authorize` `{token, job_name, job_version, endpoint}`: may this token call this
  endpoint (pub.registry.CallDecision as JSON, plus `expires_in`: seconds until the token expires,
  so that no cache keeps an allowed decision past it). Decided from the store every time (the
  gateway caches), so a revocation reaches the gateway within its own TTL whichever lifecycle
  process handled it. The token travels in the body, never in a URL, and nothing here logs it.

Both are for gateways only. There is no scope of their own (DESIGN §2.5 fixes the list), so the
gateway's credential is a token of a subject that may call the admin API: an ESC (say `gateway`)
granted `call_admin_api` without a job filter (or an admin user, or `full_access`). `call_admin_api`
is the narrower of the two: `full_access` would also let the gateway's token call every job.
Accepted credentials are cached for `auth_cache_ttl` and forgotten as soon as tokens or
permissions change in this process.

- `POST /families/{caller}/can-call/{target}` grants job family `caller` `call_job` on every
  version of family `target` (201, or 200 when granted already), also before either is deployed
  (the families are created); `DELETE` the same path takes it back. Allowed to admins, and to a deployer of `caller` (`deploy_job` on it) who may call
  `target` (`call_job` on the whole family): nobody can give a job more than they have.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from lifecycle.auth import permissions as permission_store
from lifecycle.auth.call_authorizer import CallAuthorizer, CallDecision
from lifecycle.auth.decision_cache import DecisionCache
from lifecycle.auth.public_endpoints import list_public_endpoint_requests
from lifecycle.auth.subjects import Subject, family_subject
from lifecycle.auth.tokens import authenticate, hash_token
from lifecycle.control_plane import ControlPlane
from lifecycle.store import jobs as job_store
from lifecycle.store.column_types import utcnow
from lifecycle.store.models import NAME_LENGTH, VERSION_LENGTH, JobStatus, PublicEndpointStatus, Scope
from trackside.manifest import is_valid_version, resolve

from .dependencies import AUTH_HEADER, CurrentSubject, admin_denied, control_plane, is_admin, token_of
from .errors import Forbidden, NotFound, Unauthenticated
from .permissions import PermissionOut, permission_out

router = APIRouter(tags=["gateway"])

GATEWAY_RESOURCE = "the gateway API"


# ---- the gateway's credential -----------------------------------------------------------------


def _credentials(request: Request) -> DecisionCache[Subject]:
    cache: DecisionCache[Subject] | None = getattr(request.app.state, "gateway_credentials", None)
    if cache is None:
        cache = DecisionCache(control_plane(request).config.auth_cache_ttl, max_entries=100)
        request.app.state.gateway_credentials = cache
    return cache


def gateway_subject(request: Request) -> Subject:
    """The caller, when it may use the gateway API (see the module's doc); 401/403 otherwise."""
    token = token_of(request)
    if not token:
        raise Unauthenticated(f"no gateway credential: send its token in the {AUTH_HEADER} header")
    cache = _credentials(request)
    key = hash_token(token)
    subject = cache.get(key)
    if subject is not None:
        return subject
    subject = authenticate(control_plane(request).db, token)
    if subject is None:
        raise Unauthenticated("the gateway credential is invalid, expired or revoked")
    if not is_admin(request, subject):
        raise admin_denied(subject, GATEWAY_RESOURCE)
    expires_in = _seconds_left(subject)
    cache.put(key, subject, expires_in)
    return subject


Gateway = Annotated[Subject, Depends(gateway_subject)]


def _seconds_left(subject: Subject | None) -> float | None:
    if subject is None or subject.token_expires_at is None:
        return None
    return (subject.token_expires_at - utcnow()).total_seconds()


# ---- resolve ------------------------------------------------------------------------------------


class JobTargetOut(BaseModel):
    """pub.registry.JobTarget."""

    name: str
    version: str  # the exact version the request resolved to
    replicas: list[str]  # base URLs of the ready replicas
    status: JobStatus
    public_endpoints: list[str]  # approved for this version


def pick_version(requested: str, statuses: dict[str, JobStatus]) -> str | None:
    """The version a request designates among a family's versions.

    Exact: that version whatever its status (the gateway answers 503 for one that is not running).
    `latest` and wildcards: the highest stable running version that matches; when none that
    matches is running, the highest that matches and is not stopped (starting, error, lost), so
    that the gateway says "not ready" (503) rather than "no such version" (404). A `starting`
    version is therefore never chosen while a running one matches. (The embedded registry,
    trackside/embedded_registry.py, chooses alike.)
    """
    if requested in statuses:
        return requested
    if is_valid_version(requested):
        return None
    running = [version for version, status in statuses.items() if status is JobStatus.RUNNING]
    not_stopped = [version for version, status in statuses.items() if status is not JobStatus.STOPPED]
    return resolve(requested, running) or resolve(requested, not_stopped)


def job_target(plane: ControlPlane, name: str, version: str) -> JobTargetOut | None:
    with plane.db.session() as session:
        statuses = {job.version: job.status for job in job_store.list_job_summaries(session, name)}
        exact = pick_version(version, statuses)
        if exact is None:
            return None
        approved = list_public_endpoint_requests(session, PublicEndpointStatus.APPROVED, name, exact)
        public_endpoints = [row.endpoint for row in approved]
    status = statuses[exact]
    # a version that is not running gets no calls, even while replicas of it answer (a first
    # deploy checking its input examples, a failed one being stopped)
    serving = plane.runner.serving(name, exact) if status is JobStatus.RUNNING else []
    return JobTargetOut(
        name=name,
        version=exact,
        replicas=[replica.address for replica in serving],
        status=status,
        public_endpoints=public_endpoints,
    )


@router.get("/gateway/resolve/{name}/{version}")
def resolve_job(name: str, version: str, request: Request, _: Gateway) -> JobTargetOut:
    target = job_target(control_plane(request), name, version)
    if target is None:
        # `job` tells the gateway the lifecycle looked the job up (not a route missing on an old one)
        raise NotFound(f"job {name} has no version {version}", job=name, version=version)
    return target


# ---- authorize ----------------------------------------------------------------------------------


class AuthorizeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # no length limits on what the caller sent: an overlong token or path gets a decision (401),
    # not a 400 the gateway would have to tell apart from a broken lifecycle
    token: str | None = Field(default=None, repr=False)
    job_name: str = Field(min_length=1, max_length=NAME_LENGTH)
    job_version: str = Field(min_length=1, max_length=VERSION_LENGTH)
    endpoint: str


class CallDecisionOut(BaseModel):
    """pub.registry.CallDecision, plus `expires_in`."""

    allowed: bool
    status: int
    caller_name: str | None
    reason: str
    subject_key: str | None  # "user:3", "esc:1", "family:2"
    expires_in: float | None  # seconds until the token expires; None: it does not


def subject_key(subject: Subject | None) -> str | None:
    return None if subject is None else f"{subject.type.value}:{subject.id}"


def decision_out(decision: CallDecision) -> CallDecisionOut:
    return CallDecisionOut(
        allowed=decision.allowed,
        status=decision.status,
        caller_name=decision.caller_name,
        reason=decision.reason,
        subject_key=subject_key(decision.subject),
        expires_in=_seconds_left(decision.subject),
    )


def _uncached_authorizer(request: Request) -> CallAuthorizer:
    """The gateway caches decisions itself: answered from the store every time, a revocation is
    seen within the gateway's TTL even when another lifecycle process handled it (an in-process
    cache here would add its own TTL, as it hears only of this process's changes)."""
    authorizer: CallAuthorizer | None = getattr(request.app.state, "gateway_authorizer", None)
    if authorizer is None:
        authorizer = CallAuthorizer(control_plane(request).db, ttl=0)
        request.app.state.gateway_authorizer = authorizer
    return authorizer


@router.post("/gateway/authorize")
def authorize_call(body: AuthorizeBody, request: Request, _: Gateway) -> CallDecisionOut:
    decision = _uncached_authorizer(request).can_call(
        body.token, body.job_name, body.job_version, body.endpoint
    )
    return decision_out(decision)


# ---- last calls ---------------------------------------------------------------------------------


class CallOut(BaseModel):
    job_name: str = Field(min_length=1, max_length=NAME_LENGTH)
    job_version: str = Field(min_length=1, max_length=VERSION_LENGTH)
    at: AwareDatetime


class CallsBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    calls: list[CallOut] = Field(max_length=10_000)


@router.post("/gateway/calls", status_code=204)
def record_calls(body: CallsBody, request: Request, _: Gateway) -> None:
    """When job versions were last called through a gateway (their `last_call_time`); a batch
    every few seconds. A version deleted meanwhile is skipped."""
    with control_plane(request).db.session() as session:
        for call in body.calls:
            job_store.record_job_call(session, call.job_name, call.job_version, call.at)


# ---- family → family call_job -------------------------------------------------------------------


def _require_granter(request: Request, subject: Subject, caller: str, target: str) -> None:
    if is_admin(request, subject):
        return
    with control_plane(request).db.session() as session:
        deployer = permission_store.check_in(session, subject, Scope.DEPLOY_JOB, family=caller)
        may_call = permission_store.check_in(session, subject, Scope.CALL_JOB, family=target)
    if not (deployer and may_call):
        raise Forbidden(
            f"{subject.description} may not let job family {caller} call {target}: that takes "
            f"{Scope.CALL_ADMIN_API.value}, or {Scope.DEPLOY_JOB.value} on job family {caller} and "
            f"{Scope.CALL_JOB.value} on job family {target}",
            subject=subject.description,
            scope=Scope.CALL_JOB.value,
            resource=f"job family {target}",
        )


def _family_subject(request: Request, name: str, create: bool = False) -> Subject:
    with control_plane(request).db.session() as session:
        family = job_store.ensure_family(session, name) if create else job_store.get_family(session, name)
        if family is None:
            raise NotFound(f"job family {name} not found")
        return family_subject(family)


@router.post("/families/{caller}/can-call/{target}", status_code=201)
def grant_family_call(
    caller: str, target: str, request: Request, response: Response, subject: CurrentSubject
) -> PermissionOut:
    """Let the jobs of family `caller` (with their AUTH_TOKEN) call every version of `target`."""
    _require_granter(request, subject, caller, target)
    # families that have no version yet are created: a job whose input example calls another
    # job (sample-jobs/chain) needs the grant before its first deploy can pass its checks
    grantee = _family_subject(request, caller, create=True)
    _family_subject(request, target, create=True)
    with control_plane(request).db.session() as session:
        existing = permission_store.find_permission(
            session, grantee.type, grantee.id, Scope.CALL_JOB, family=target
        )
        if existing is not None:
            response.status_code = 200
            return permission_out(existing, grantee.name)
        permission = permission_store.grant(
            session, grantee, Scope.CALL_JOB, actor=subject.description, family=target
        )
        return permission_out(permission, grantee.name)


@router.delete("/families/{caller}/can-call/{target}")
def revoke_family_call(
    caller: str, target: str, request: Request, subject: CurrentSubject
) -> dict[str, object]:
    _require_granter(request, subject, caller, target)
    grantee = _family_subject(request, caller)
    with control_plane(request).db.session() as session:
        existing = permission_store.find_permission(
            session, grantee.type, grantee.id, Scope.CALL_JOB, family=target
        )
        if existing is None:
            raise NotFound(
                f"job family {caller} has no {Scope.CALL_JOB.value} permission for job family {target}"
            )
        permission_store.revoke_permission(session, existing.id, actor=subject.description)
        return {"id": existing.id, "revoked": True}
