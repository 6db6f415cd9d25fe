"""Deploy requests: validated and authorised up front, then run by the pipeline in the background.

Nothing is stored for a request that is invalid or not allowed. A deployment's progress (phase,
build log, warnings, error) is written to the store as it happens, so any lifecycle process, or
the same one after a restart, can report it.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from lifecycle import family_tokens
from lifecycle.auth import permissions, public_endpoints
from lifecycle.auth.subjects import Subject
from lifecycle.config import EMBEDDED
from lifecycle.deploy.builder import BuildResult
from lifecycle.deploy.infrastructures import Infrastructures, UnknownTarget
from lifecycle.deploy.pipeline import STARTING, DeployFailed, DeploySpec, Pipeline
from lifecycle.deploy.runner import Resources, Runner, RunnerError, RunSpec
from lifecycle.deploy.source import GitCredentials
from lifecycle.deployment_changes import DeploymentChanges
from lifecycle.secrets import SecretBox
from lifecycle.store import deployments as deployment_store
from lifecycle.store import jobs as job_store
from lifecycle.store import secret_records
from lifecycle.store.audit import record_event
from lifecycle.store.database import Database
from lifecycle.store.errors import AlreadyExists
from lifecycle.store.models import DeploymentStatus, JobStatus, Scope, SecretKind
from trackside.manifest import Manifest, ManifestError, manifest_to_dict, manifest_to_yaml, parse_manifest

logger = logging.getLogger("trackside.lifecycle.deployments")


def resources_of(manifest: Manifest) -> Resources:
    """The manifest's `resources` as the runner takes them."""
    r = manifest.resources
    if r is None:
        return Resources()
    return Resources(
        memory_min=r.memory_min.bytes if r.memory_min else None,
        memory_max=r.memory_max.bytes if r.memory_max else None,
        cpu_min=float(r.cpu_min.cores) if r.cpu_min else None,
        cpu_max=float(r.cpu_max.cores) if r.cpu_max else None,
    )


class DeployRejected(Exception):
    """The request cannot be accepted; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.errors = errors or []


@dataclass
class DeployRequest:
    manifest: dict[str, Any]
    git_credentials: dict[str, str] | None = None
    build_env_secrets: dict[str, str] = field(default_factory=dict)
    runtime_env_secrets: dict[str, str] = field(default_factory=dict)
    build_context: str | None = None
    force: bool = False
    no_cache: bool = False


class _StoreReporter:
    """The pipeline's progress, written to the deployment's row as it happens."""

    def __init__(
        self, service: DeploymentService, deployment_id: str, manifest: Manifest, actor: str
    ) -> None:
        self.service = service
        self.deployment_id = deployment_id
        self.manifest = manifest
        self.actor = actor

    def phase(self, name: str) -> None:
        with self.service.db.session() as session:
            deployment_store.start_phase(session, self.deployment_id, name)
            if name == STARTING:
                self.service._register_starting_job(session, self.manifest, self.deployment_id, self.actor)
        self.service.changes.changed(self.deployment_id)

    def log(self, line: str) -> None:
        with self.service.db.session() as session:
            deployment_store.append_build_log(session, self.deployment_id, line.rstrip("\n") + "\n")
        self.service.changes.changed(self.deployment_id)

    def warn(self, message: str) -> None:
        with self.service.db.session() as session:
            deployment_store.add_warning(session, self.deployment_id, message)
        self.service.changes.changed(self.deployment_id)


class DeploymentService:
    def __init__(
        self,
        db: Database,
        pipeline: Pipeline,
        runner: Runner,
        secrets: SecretBox,
        pub_url: str,
        workers: int = 2,
        targets: Infrastructures | None = None,
    ) -> None:
        self.db = db
        self.pipeline = pipeline
        self.runner = runner
        self.secrets = secrets
        self.pub_url = pub_url.rstrip("/")
        self.targets = targets
        self.changes = DeploymentChanges()  # wakes the deployments' event streams
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="deploy")
        self._lock = threading.Lock()
        self._active: set[tuple[str, str]] = set()

    # ---- accepting a request ---------------------------------------------------------------

    def submit(self, request: DeployRequest, subject: Subject) -> str:
        try:
            manifest = parse_manifest(request.manifest)
        except ManifestError as e:
            errors = [{"field": err.path, "message": err.message} for err in e.errors]
            raise DeployRejected(400, str(e), errors) from None
        if manifest.jobtype_name != "python3":
            raise DeployRejected(400, f"jobtype: unknown job type {manifest.jobtype!r}; supported: python3")
        if (
            request.build_context is None
            and manifest.git.remote.startswith("file://")
            and not self.pipeline.settings.allow_file_remotes
        ):
            raise DeployRejected(400, "git.remote: file:// remotes are not allowed by this lifecycle")
        try:
            self.target(manifest)
        except UnknownTarget as e:
            raise DeployRejected(400, str(e)) from None
        self._authorise(subject, manifest)
        key = (manifest.name, manifest.version)
        with self._lock:
            if key in self._active:
                raise DeployRejected(
                    409,
                    f"job {manifest.name} {manifest.version} is being deployed right now; wait for it to finish",
                )
            with self.db.session() as session:
                # another lifecycle process sharing the database may be deploying it
                if any(
                    d.job_name == manifest.name and d.job_version == manifest.version
                    for d in deployment_store.in_progress_deployments(session)
                ):
                    raise DeployRejected(
                        409,
                        f"job {manifest.name} {manifest.version} is being deployed right now; wait for it to finish",
                    )
                existing = job_store.get_job(session, manifest.name, manifest.version)
                if existing is not None and not request.force:
                    raise DeployRejected(
                        409,
                        f"job {manifest.name} {manifest.version} already exists; deploy with force to replace it",
                    )
                deployment = deployment_store.create_deployment(
                    session,
                    job_name=manifest.name,
                    job_version=manifest.version,
                    manifest_yaml=manifest_to_yaml(manifest),
                    deployed_by=subject.description,
                    force=request.force,
                )
                deployment_id = deployment.id
                for kind, values in (
                    (SecretKind.BUILD_ENV, request.build_env_secrets),
                    (SecretKind.RUNTIME_ENV, request.runtime_env_secrets),
                    (SecretKind.GIT_CREDENTIALS, request.git_credentials or {}),
                ):
                    if values:
                        secret_records.save_secrets(
                            session, self.secrets, kind, dict(values), deployment_id=deployment_id
                        )
                for warning in [*manifest.warnings, *self._target_warnings(manifest)]:
                    deployment_store.add_warning(session, deployment_id, warning)
                record_event(
                    session,
                    actor=subject.description,
                    action="deploy",
                    target=f"{manifest.name} {manifest.version}",
                    details={"deployment": deployment_id},
                )
            self._active.add(key)
        self._executor.submit(self._run, deployment_id, manifest, request, subject)
        return deployment_id

    def target(self, manifest: Manifest) -> str:
        """The infrastructure target the manifest's job runs on (its own or the default)."""
        if self.targets is None:
            if manifest.infrastructure_target not in (None, EMBEDDED, "local"):
                raise UnknownTarget(
                    f"infrastructure_target: unknown target {manifest.infrastructure_target!r}; "
                    f"this lifecycle has {EMBEDDED}"
                )
            return EMBEDDED
        return self.targets.resolve(manifest.infrastructure_target)

    def _target_warnings(self, manifest: Manifest) -> list[str]:
        """What the manifest asks for that its target does not do."""
        if self.target(manifest) != EMBEDDED:
            return []
        warnings = []
        if manifest.system_dependencies:
            warnings.append(
                "system_dependencies are installed only in container images (infrastructure_target: "
                "docker); this job runs on the embedded target and uses the machine's packages"
            )
        if manifest.resources is not None:
            warnings.append(
                "resources are enforced only in containers (infrastructure_target: docker); "
                "on the embedded target they are not"
            )
        return warnings

    def _authorise(self, subject: Subject, manifest: Manifest) -> None:
        with self.db.session() as session:
            family_exists = job_store.get_family(session, manifest.name) is not None
            scope = Scope.DEPLOY_JOB if family_exists else Scope.DEPLOY_NEW_FAMILY
            if not permissions.check_in(
                session, subject, scope, family=manifest.name, version=manifest.version
            ):
                raise DeployRejected(
                    403,
                    permissions.denial_reason(subject, scope, family=manifest.name, version=manifest.version),
                )

    # ---- running it ------------------------------------------------------------------------

    def _run(self, deployment_id: str, manifest: Manifest, request: DeployRequest, subject: Subject) -> None:
        key = (manifest.name, manifest.version)
        actor = subject.description
        try:
            spec = self._spec(deployment_id, manifest, request)
            reporter = _StoreReporter(self, deployment_id, manifest, actor)
            try:
                outcome = self.pipeline.run(spec, reporter)
            except DeployFailed as e:
                self._failed(deployment_id, manifest, str(e))
                return
            self._succeeded(deployment_id, manifest, outcome.build, outcome.deployment_timestamp, subject)
        except Exception as e:  # a bug must still end the deployment, never leave it in progress
            logger.exception("deployment %s crashed", deployment_id)
            self._failed(deployment_id, manifest, f"internal error: {e.__class__.__name__}: {e}")
        finally:
            with self._lock:
                self._active.discard(key)

    def _spec(self, deployment_id: str, manifest: Manifest, request: DeployRequest) -> DeploySpec:
        extra = manifest.python3
        credentials = None
        if request.git_credentials:
            credentials = GitCredentials(
                request.git_credentials.get("username", ""), request.git_credentials.get("password", "")
            )
        return DeploySpec(
            deployment_id=deployment_id,
            job_name=manifest.name,
            job_version=manifest.version,
            manifest_yaml=manifest_to_yaml(manifest),
            git_remote=manifest.git.remote,
            git_branch=manifest.git.branch,
            git_directory=None if manifest.git.directory in ("", ".") else manifest.git.directory,
            build_context=request.build_context,
            git_credentials=credentials,
            requirements_path=extra.requirements_path if extra else None,
            python_version=extra.python_version if extra else None,
            check_requirements=bool(extra.check_requirements) if extra else False,
            build_env={**manifest.build_env, **request.build_env_secrets},
            runtime_env=self.runtime_env(manifest, request.runtime_env_secrets),
            replicas=manifest.replicas,
            no_cache=request.no_cache,
            infrastructure=self.target(manifest),
            system_dependencies=tuple(manifest.system_dependencies),
            resources=resources_of(manifest),
        )

    def runtime_env(
        self, manifest: Manifest, secrets: dict[str, str], session: Session | None = None
    ) -> dict[str, str]:
        """The job's environment: its runtime env and secrets, the gateway's URL and its family's
        token for chain calls (`session`: the caller's open unit of work, if any)."""
        auth_token = (
            family_tokens.family_token(self.db, self.secrets, manifest.name)
            if session is None
            else family_tokens.family_token_in(session, self.secrets, manifest.name)
        )
        return {**manifest.runtime_env, **secrets, "PUB_URL": self.pub_url, "AUTH_TOKEN": auth_token}

    def _register_starting_job(
        self, session: Any, manifest: Manifest, deployment_id: str, actor: str
    ) -> None:
        if job_store.get_job(session, manifest.name, manifest.version) is not None:
            return  # a redeploy: the serving version keeps its row and status until the swap
        job_store.create_job(
            session,
            name=manifest.name,
            version=manifest.version,
            manifest_yaml=manifest_to_yaml(manifest),
            manifest=manifest_to_dict(manifest),
            owner_email=manifest.owner_email,
            deployed_by=actor,
            deployment_id=deployment_id,
            status=JobStatus.STARTING,
            replicas=manifest.replicas,
            labels=dict(manifest.labels),
            infrastructure_target=self.target(manifest),
        )

    def _succeeded(
        self, deployment_id: str, manifest: Manifest, build: BuildResult, timestamp: int, subject: Subject
    ) -> None:
        previous: BuildResult | None = None
        actor = subject.description
        self._grant_ownership(subject, manifest.name)
        with self.db.session() as session:
            job = job_store.require_job(session, manifest.name, manifest.version)
            if job.code_dir and job.environment_id and job.code_dir != str(build.code_dir):
                previous = self.pipeline.builder.restore(job.environment_id, Path(job.code_dir))
            job.status = JobStatus.RUNNING
            job.error = None
            job.deployment_id = deployment_id
            job.environment_id = build.environment_id
            job.code_dir = str(build.code_dir)
            job.deployment_timestamp = timestamp
            job.manifest_yaml = manifest_to_yaml(manifest)
            job.manifest = manifest_to_dict(manifest)
            job.replicas = manifest.replicas
            job.infrastructure_target = build.infrastructure
            job.deployed_by = actor
            secret_records.move_secrets_to_job(session, deployment_id, manifest.name, manifest.version)
            # the manifest's public endpoints wait for an admin's approval (POST /public-endpoints/{id}/approve)
            requested = public_endpoints.request_public_endpoints(
                session, manifest.name, manifest.version, manifest.public_endpoints
            )
            if requested:
                record_event(
                    session,
                    actor=actor,
                    action="public_endpoint.request",
                    target=f"{manifest.name} {manifest.version}",
                    details={
                        "request_ids": [r.id for r in requested],
                        "endpoints": [r.endpoint for r in requested],
                    },
                )
            deployment_store.finish_deployment(session, deployment_id, DeploymentStatus.DONE)
            self._release(manifest)
        self.changes.changed(deployment_id, finished=True)
        if previous is not None:
            self.pipeline.builder.release(previous)
        logger.info("deployment %s: %s %s is running", deployment_id, manifest.name, manifest.version)

    def _release(self, manifest: Manifest) -> None:
        """Let the next deploy of the version in, before the unit of work that finishes this one
        commits: until it does, the store still shows this deployment in progress (and `submit`
        refuses on that), and once it has, a client that saw `done` may deploy again at once.
        Without `_lock`: `submit` holds it while it waits for the store, which this unit of work
        holds (one discard is atomic)."""
        self._active.discard((manifest.name, manifest.version))

    def _grant_ownership(self, subject: Subject, family: str) -> None:
        """Racetrack's default: whoever deploys a family may delete its versions. In a unit of work
        of its own: two first deploys of one family finishing together race to grant it, and the
        loser's clash must not fail its deployment (the retry finds the permission granted)."""
        for attempt in range(2):
            try:
                with self.db.session() as session:
                    permissions.grant_family_owner(session, subject, family, actor=subject.description)
                return
            except AlreadyExists:
                if attempt:
                    raise

    def _failed(self, deployment_id: str, manifest: Manifest, error: str) -> None:
        with self.db.session() as session:
            job = job_store.get_job(session, manifest.name, manifest.version)
            if job is not None and job.deployment_id == deployment_id and job.status == JobStatus.STARTING:
                job_store.delete_job(session, manifest.name, manifest.version)  # a new job: nothing stays
            secret_records.delete_secrets(session, deployment_id=deployment_id)
            deployment_store.finish_deployment(session, deployment_id, DeploymentStatus.FAILED, error=error)
            self._release(manifest)
        self.changes.changed(deployment_id, finished=True)
        logger.info(
            "deployment %s of %s %s failed: %s", deployment_id, manifest.name, manifest.version, error
        )

    # ---- restarts --------------------------------------------------------------------------

    def interrupt_unfinished(self) -> int:
        """Deployments left in progress by a lifecycle that died: failed, with what is known."""
        with self.db.session() as session:
            unfinished = deployment_store.in_progress_deployments(session)
            for deployment in unfinished:
                job = job_store.get_job(session, deployment.job_name, deployment.job_version)
                if (
                    job is not None
                    and job.deployment_id == deployment.id
                    and job.status == JobStatus.STARTING
                ):
                    job_store.delete_job(session, deployment.job_name, deployment.job_version)
                secret_records.delete_secrets(session, deployment_id=deployment.id)
                deployment_store.finish_deployment(
                    session,
                    deployment.id,
                    DeploymentStatus.FAILED,
                    error=f"interrupted: the lifecycle stopped during '{deployment.phase or 'the start'}'",
                )
            return len(unfinished)

    def restart_jobs(self) -> list[str]:
        """Start every job that should run from its stored build; the names of those that cannot."""
        lost: list[str] = []
        with self.db.session() as session:
            for job in job_store.list_jobs(session):
                if job.status == JobStatus.STOPPED or not job.environment_id or not job.code_dir:
                    continue
                build = self.pipeline.builder.restore(job.environment_id, Path(job.code_dir))
                if build is None:
                    job.status, job.error = JobStatus.LOST, "its environment or code is gone; deploy it again"
                    lost.append(f"{job.name} {job.version}")
                    continue
                job.status, job.error = JobStatus.STARTING, None  # the monitor reports it running once ready
                runtime_secrets = secret_records.load_secrets(
                    session, self.secrets, SecretKind.RUNTIME_ENV, job=(job.name, job.version)
                )
                manifest = parse_manifest(job.manifest_yaml)
                try:
                    self.runner.start(
                        RunSpec(
                            job_name=job.name,
                            job_version=job.version,
                            deployment_timestamp=job.deployment_timestamp,
                            replicas=job.replicas,
                            build=build,
                            env=self.runtime_env(
                                manifest, dict(runtime_secrets.reveal()) if runtime_secrets else {}, session
                            ),
                            manifest_yaml=job.manifest_yaml,
                            resources=resources_of(manifest),
                        )
                    )
                except RunnerError as e:
                    # e.g. the cluster's API is down: the lifecycle starts anyway; the monitor
                    # reports the job running again once its replicas are seen
                    job.status, job.error = JobStatus.ERROR, f"cannot be restarted: {e}"
                    logger.warning("job %s %s cannot be restarted: %s", job.name, job.version, e)
        return lost

    def is_deploying(self, name: str, version: str) -> bool:
        with self._lock:
            return (name, version) in self._active

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
