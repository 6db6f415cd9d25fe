"""Which container engine builds images (the `docker` CLI or `podman`), and its build command line.

Build secrets are passed with `--secret id=NAME,src=FILE` (BuildKit and buildah alike): the
Dockerfile mounts them into the RUN steps that need them, and they never enter a layer.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ENGINES = ("podman", "docker")


class EngineNotFound(RuntimeError):
    """No usable container engine; the message says what was looked for."""


@dataclass(frozen=True)
class ContainerEngine:
    path: str  # the CLI to run
    kind: str  # "podman" or "docker" (a docker CLI that fronts podman counts as docker)

    @property
    def name(self) -> str:
        return Path(self.path).name


def find_engine(configured: str | None = None) -> ContainerEngine:
    """The configured engine (a name on PATH or a path), else podman, else docker."""
    candidates = [configured] if configured else list(ENGINES)
    for candidate in candidates:
        path = shutil.which(candidate)
        if path is None:
            continue
        try:
            probe = subprocess.run(
                [path, "--version"], capture_output=True, text=True, timeout=30, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            raise EngineNotFound(f"the container engine {path} does not run: {e}") from None
        if probe.returncode != 0:
            raise EngineNotFound(
                f"the container engine {path} does not run: {(probe.stderr or probe.stdout).strip()[-300:]}"
            )
        kind = "podman" if probe.stdout.lower().startswith("podman") else "docker"
        return ContainerEngine(path, kind)
    if configured:
        raise EngineNotFound(f"the container engine {configured!r} is not installed (not found on PATH)")
    raise EngineNotFound("no container engine found: install podman or docker")


def ca_bundle_from_env(env: Mapping[str, str]) -> Path | None:
    """The CA certificates pip should trust in builds: TRACKSIDE_BUILD_CA_BUNDLE, else the bundle
    this machine's own pip or Python trusts (PIP_CERT, SSL_CERT_FILE, REQUESTS_CA_BUNDLE) when one
    names a file; None: the base image's own."""
    for name in ("TRACKSIDE_BUILD_CA_BUNDLE", "PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):
        candidate = env.get(name, "").strip()
        if candidate and Path(candidate).expanduser().is_file():
            return Path(candidate).expanduser()
        if candidate and name == "TRACKSIDE_BUILD_CA_BUNDLE":
            raise ValueError(f"TRACKSIDE_BUILD_CA_BUNDLE: {candidate!r} is not a file")
    return None


def build_command(
    engine: ContainerEngine,
    context: Path,
    tag: str,
    secrets: Mapping[str, Path],
    *,
    network: str | None = None,
    no_cache: bool = False,
) -> tuple[list[str], dict[str, str]]:
    """The command line that builds `context` (with its Dockerfile) as `tag`, and the environment
    variables it needs on top of the caller's."""
    args = [engine.path, "build", "--file", str(context / "Dockerfile"), "--tag", tag]
    env: dict[str, str] = {}
    if engine.kind == "podman":
        args.append("--layers")
    else:
        env["DOCKER_BUILDKIT"] = "1"  # secret mounts need BuildKit
    for secret_id, source in sorted(secrets.items()):
        args += ["--secret", f"id={secret_id},src={source}"]
    if network:
        args += ["--network", network]
    if no_cache:
        args.append("--no-cache")
    args.append(str(context))
    return args, env


def save_command(engine: ContainerEngine, image: str, output: Path) -> list[str]:
    """The command line that writes `image` to `output` as a tar `docker load` accepts."""
    args = [engine.path, "save", "--output", str(output)]
    if engine.kind == "podman":
        args += ["--format", "docker-archive"]
    return [*args, image]
