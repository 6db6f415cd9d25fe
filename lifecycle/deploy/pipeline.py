"""The phases of a deployment, driving a Builder and a Runner it knows only by their protocols.

The pipeline owns what it creates: on failure it stops the replicas it started and releases the
build it made, so a failed deploy leaves nothing half-made and never touches the version that
was serving before.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from .builder import Builder, BuildError, BuildRequest, BuildResult
from .examples import check_examples
from .runner import ReplicaState, Resources, Runner, RunnerError, RunSpec
from .source import GitCredentials, SourceError, fetch_git, unpack_build_context

FETCHING = "fetching the source code"
BUILDING = "building the environment"
STARTING = "starting the job"
INITIALISING = "initialising the entrypoint"
VERIFYING = "checking the input examples"
DONE = "done"
PHASES = (FETCHING, BUILDING, STARTING, INITIALISING, VERIFYING, DONE)


class DeployFailed(Exception):
    """The deployment failed; the message is shown to the user as the deployment's error."""

    def __init__(self, message: str, phase: str) -> None:
        super().__init__(message)
        self.phase = phase


class Reporter(Protocol):
    def phase(self, name: str) -> None: ...
    def log(self, line: str) -> None: ...
    def warn(self, message: str) -> None: ...


@dataclass(frozen=True)
class DeploySpec:
    deployment_id: str
    job_name: str
    job_version: str
    manifest_yaml: str
    git_remote: str | None = None
    git_branch: str | None = None
    git_directory: str | None = None
    build_context: str | None = None
    git_credentials: GitCredentials | None = None
    requirements_path: str | None = None
    python_version: str | None = None
    check_requirements: bool = False
    build_env: dict[str, str] = field(default_factory=dict)
    runtime_env: dict[str, str] = field(default_factory=dict)
    replicas: int = 1
    no_cache: bool = False
    infrastructure: str = "embedded"  # the target that builds and runs it
    system_dependencies: tuple[str, ...] = ()
    resources: Resources = field(default_factory=Resources)


@dataclass(frozen=True)
class DeployOutcome:
    build: BuildResult
    deployment_timestamp: int
    commit: str | None
    addresses: list[str]


@dataclass
class PipelineSettings:
    workspace_root: Path
    allow_file_remotes: bool = True
    init_timeout: float = 900.0
    # a replica that failed this many times while starting makes the deploy fail with its error
    max_start_failures: int = 3
    poll_interval: float = 0.1
    git_env: dict[str, str] = field(default_factory=dict)


class Pipeline:
    def __init__(
        self,
        builder: Builder,
        runner: Runner,
        settings: PipelineSettings,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.builder = builder
        self.runner = runner
        self.settings = settings
        self.clock = clock

    def run(self, spec: DeploySpec, reporter: Reporter) -> DeployOutcome:
        workspace = self.settings.workspace_root / spec.deployment_id
        build: BuildResult | None = None
        timestamp: int | None = None
        phase = FETCHING
        try:
            reporter.phase(FETCHING)
            source_root, commit = self._fetch(spec, workspace, reporter)

            phase = BUILDING
            reporter.phase(BUILDING)
            build = self._build(spec, source_root, commit, reporter)

            phase = STARTING
            reporter.phase(STARTING)
            timestamp = self._unique_timestamp()
            self.runner.start(
                RunSpec(
                    job_name=spec.job_name,
                    job_version=spec.job_version,
                    deployment_timestamp=timestamp,
                    replicas=spec.replicas,
                    build=build,
                    env=dict(spec.runtime_env),
                    manifest_yaml=spec.manifest_yaml,
                    resources=spec.resources,
                )
            )

            phase = INITIALISING
            reporter.phase(INITIALISING)
            replicas = self._wait_ready(spec, timestamp, reporter)

            phase = VERIFYING
            reporter.phase(VERIFYING)
            failures = check_examples(replicas[0].address, reporter.log)
            if failures:
                raise DeployFailed("; ".join(f.describe() for f in failures), VERIFYING)

            reporter.phase(DONE)
            # the new replicas serve; those of an earlier deployment of this version go, in the
            # background: waiting for them to exit would only delay `done`
            threading.Thread(
                target=self.runner.retire_others,
                args=(spec.job_name, spec.job_version),
                kwargs={"keep": timestamp},
                name=f"retire-{spec.job_name}-{spec.job_version}",
                daemon=True,
            ).start()
            return DeployOutcome(build, timestamp, commit, [r.address for r in replicas])
        except DeployFailed:
            self._undo(spec, build, timestamp)
            raise
        except (SourceError, BuildError, RunnerError) as e:
            self._undo(spec, build, timestamp)
            raise DeployFailed(str(e), phase) from e
        except Exception as e:
            self._undo(spec, build, timestamp)
            raise DeployFailed(f"internal error while {phase}: {e.__class__.__name__}: {e}", phase) from e
        finally:
            shutil.rmtree(workspace, ignore_errors=True)

    def _fetch(self, spec: DeploySpec, workspace: Path, reporter: Reporter) -> tuple[Path, str | None]:
        workspace.mkdir(parents=True, exist_ok=True)
        if spec.build_context is not None:
            reporter.log("using the build context uploaded with the request")
            root = unpack_build_context(spec.build_context, workspace / "context")
            return root, None
        if not spec.git_remote:
            raise DeployFailed("git.remote is required when no build context is uploaded", FETCHING)
        fetched = fetch_git(
            spec.git_remote,
            spec.git_branch,
            spec.git_directory,
            workspace / "repo",
            spec.git_credentials,
            reporter.log,
            allow_file_remotes=self.settings.allow_file_remotes,
            extra_env=self.settings.git_env or None,
        )
        return fetched.root, fetched.commit

    def _build(
        self, spec: DeploySpec, source_root: Path, commit: str | None, reporter: Reporter
    ) -> BuildResult:
        request = BuildRequest(
            job_name=spec.job_name,
            job_version=spec.job_version,
            source_dir=source_root,
            python_version=spec.python_version,
            requirements_path=spec.requirements_path,
            build_env=dict(spec.build_env),
            check_requirements=spec.check_requirements,
            no_cache=spec.no_cache,
            infrastructure=spec.infrastructure,
            system_dependencies=spec.system_dependencies,
            git_commit=commit,
            git_remote=spec.git_remote if commit else None,
            git_directory=spec.git_directory if commit else None,
            git_credentials=(
                (spec.git_credentials.username, spec.git_credentials.password)
                if commit and spec.git_credentials
                else None
            ),
        )
        result = self.builder.build(request, reporter.log)
        reporter.log("environment reused from cache" if result.cached else "environment built")
        return result

    def _unique_timestamp(self) -> int:
        # /live reports it, so a replica of an earlier deployment can never pass for a new one
        return int(self.clock() * 1000)

    def _wait_ready(self, spec: DeploySpec, timestamp: int, reporter: Reporter) -> list[ReplicaState]:
        deadline = time.monotonic() + self.settings.init_timeout
        reported_failures = 0
        waiting_on: str | None = None
        while True:
            replicas = self.runner.replicas(spec.job_name, spec.job_version)
            if len(replicas) >= spec.replicas and all(r.ready for r in replicas):
                return replicas
            failing = max((max(r.restarts, r.failures) for r in replicas), default=0)
            error = next((r.last_error for r in replicas if r.last_error), None)
            if failing > reported_failures:
                reported_failures = failing
                reporter.log(f"the job failed to start ({failing} time(s)): {error or 'no detail'}")
                if failing >= self.settings.max_start_failures:
                    raise DeployFailed(
                        f"the job failed to start: {error or 'the process keeps exiting'}", INITIALISING
                    )
            elif failing == 0 and error and error != waiting_on:
                # e.g. no node can take the replica yet: said once, not a failure
                reporter.log(f"the job is not ready yet: {error}")
            waiting_on = error or waiting_on
            if time.monotonic() > deadline:
                raise DeployFailed(
                    f"the job was not ready within {self.settings.init_timeout:.0f} s"
                    + (f": {waiting_on}" if waiting_on else ""),
                    INITIALISING,
                )
            time.sleep(self.settings.poll_interval)

    def _undo(self, spec: DeploySpec, build: BuildResult | None, timestamp: int | None) -> None:
        if timestamp is not None:
            self.runner.stop_generation(spec.job_name, spec.job_version, timestamp)
        if build is not None:
            self.builder.release(build)
