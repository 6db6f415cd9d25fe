"""The Builder contract: turn a job's source into something a Runner can start.

One implementation per infrastructure (embedded: `venv_builder.VenvBuilder`, containers:
`image_builder.ImageBuilder`); the deploy pipeline only knows this protocol, and
`infrastructures.RoutingBuilder` hands each request to the builder of its target.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


class BuildError(Exception):
    """The build failed. The message is shown to the user and names what failed; it never holds
    a secret value."""


@dataclass(frozen=True)
class BuildRequest:
    job_name: str
    job_version: str
    source_dir: Path  # the job's root (after git.directory), read-only for the builder
    python_version: str | None  # jobtype_extra.python_version, None = the lifecycle's own
    requirements_path: str | None  # jobtype_extra.requirements_path, relative to source_dir
    # manifest build_env + secret build env (secrets win); kept out of repr so it never lands in a log
    build_env: dict[str, str] = field(repr=False)
    check_requirements: bool  # jobtype_extra.check_requirements
    no_cache: bool = False
    infrastructure: str = "embedded"  # the target the build is for (config.TARGET_ALIASES' values)
    system_dependencies: tuple[str, ...] = ()  # apt packages (images only)
    git_commit: str | None = None  # of the fetched source, None for an uploaded build context
    # where that commit came from, for builders that fetch it again elsewhere (a build pod)
    git_remote: str | None = None
    git_directory: str | None = None
    git_credentials: tuple[str, str] | None = field(default=None, repr=False)  # username, password


@dataclass(frozen=True)
class BuildResult:
    environment_id: str  # dependency fingerprint; the cache key of the environment
    python: (
        Path  # interpreter that runs the job (has trackside_wrapper installed; in an image: its path there)
    )
    code_dir: Path  # this version's private copy of the source (an image build: its record directory)
    cached: bool  # True when the environment was reused
    infrastructure: str = "embedded"  # the target that can run it
    image: str | None = None  # the image id, for builds of container images


class Builder(Protocol):
    def build(self, request: BuildRequest, log: Callable[[str], None]) -> BuildResult:
        """Build (or reuse) the environment and copy the code; output goes to `log` line by line.
        Raises BuildError."""
        ...

    def release(self, result: BuildResult) -> None:
        """Drop the code copy of `result`; prune environments nothing uses any more."""
        ...

    def restore(self, environment_id: str, code_dir: Path) -> BuildResult | None:
        """A build made earlier (to restart its version), None when its files are gone."""
        ...
