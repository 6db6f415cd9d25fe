"""`build`: a job's container image, built here with docker or podman and optionally saved as a tar.

The image is what the lifecycle's `docker` infrastructure would build: the python3 Dockerfile
template of trackside_wrapper.job_image, the same layers and labels. Nothing is deployed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated

import typer

from .deploy import ExtraVarsOption, load_checked, read_env_file
from .exit_codes import CommandFailed, ExitCode
from .output import TracksideCommand

DEFAULT_REPOSITORY = "localhost/trackside"
SALT_FILE = "image-build-salt"


def build(
    directory: Annotated[
        Path, typer.Argument(help="the job's directory (with job.yaml) or its manifest file", metavar="DIR")
    ] = Path("."),
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="save the image to this tar file (docker load / podman load)"),
    ] = None,
    tag: Annotated[
        str | None,
        typer.Option(help="image tag [default: REPOSITORY/NAME:VERSION-FINGERPRINT]", show_default=False),
    ] = None,
    engine: Annotated[
        str | None,
        typer.Option(
            help="podman, docker or a path [default: $TRACKSIDE_CONTAINER_ENGINE, else podman, else docker]",
            show_default=False,
        ),
    ] = None,
    base_image: Annotated[
        str | None,
        typer.Option(
            help="base image, {python_version} filled in [default: $TRACKSIDE_IMAGE_BASE or "
            "python:{python_version}-slim]",
            show_default=False,
        ),
    ] = None,
    network: Annotated[
        str | None,
        typer.Option(
            help="network of the build's pip steps, e.g. host [default: $TRACKSIDE_BUILD_NETWORK]",
            show_default=False,
        ),
    ] = None,
    extra_vars: ExtraVarsOption = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="rebuild every layer")] = False,
) -> None:
    """Build a job's container image without deploying it (optionally saved as a tar).

    The code is DIR as `trackside deploy` would upload it (honouring .gitignore and
    .tracksideignore; the manifest's secret env files never go in). The build environment
    (build_env and the secret_build_env_file) reaches only the pip steps, through a secret mount:
    no layer, history entry or label of the image holds a value of it.

    Examples:
      trackside build sample-jobs/adder --output adder.tar
      trackside build . --engine docker --tag registry.example.com/team/adder:1.0.0
      trackside build . --base-image localhost/python-base:bookworm --network host
    """
    from trackside_wrapper.job_image import (
        DEFAULT_BASE_IMAGE,
        EngineNotFound,
        ImageRecipe,
        RecipeError,
        base_image_for,
        build_command,
        ca_bundle_from_env,
        env_file,
        find_engine,
        image_tag,
        save_command,
        stage_context,
    )

    from trackside.build_context import BuildContextError, list_included

    manifest = load_checked(directory, extra_vars)
    job_dir = directory if directory.is_dir() else directory.parent
    if manifest.jobtype_name != "python3":
        raise CommandFailed(
            f"jobtype: {manifest.jobtype!r} has no image template (only python3)", ExitCode.USAGE
        )
    try:
        found = find_engine(engine or os.environ.get("TRACKSIDE_CONTAINER_ENGINE") or None)
        ca_bundle = ca_bundle_from_env(os.environ)
    except (EngineNotFound, ValueError) as e:
        raise CommandFailed(str(e)) from None
    extra = manifest.python3
    python_version = (
        extra.python_version if extra else None
    ) or f"{sys.version_info[0]}.{sys.version_info[1]}"
    build_env = dict(manifest.build_env)
    if manifest.secret_build_env_file:
        build_env.update(
            read_env_file(job_dir / str(manifest.secret_build_env_file), "secret_build_env_file")
        )
    left_out = [str(f) for f in (manifest.secret_build_env_file, manifest.secret_runtime_env_file) if f]
    try:
        included = list_included(job_dir)
    except BuildContextError as e:
        raise CommandFailed(str(e)) from None

    workspace = Path(tempfile.mkdtemp(prefix="trackside-build-"))  # mode 700: the secret file lives here
    try:
        try:
            recipe = ImageRecipe(
                job_name=manifest.name,
                job_version=manifest.version,
                base_image=base_image_for(
                    base_image or os.environ.get("TRACKSIDE_IMAGE_BASE") or DEFAULT_BASE_IMAGE, python_version
                ),
                system_dependencies=tuple(manifest.system_dependencies),
                requirements_path=extra.requirements_path if extra else None,
                check_requirements=bool(extra.check_requirements) if extra else False,
                git_commit=_git_commit(job_dir),
                build_env_digest=_build_env_digest(build_env),
            )
            staged = stage_context(recipe, job_dir, workspace / "context", left_out=left_out, only=included)
            secret_file = workspace / "build_env"
            secret_file.touch(mode=0o600)
            secret_file.write_text(env_file(build_env))
        except RecipeError as e:
            raise CommandFailed(str(e), ExitCode.USAGE) from None
        ca_file = workspace / "ca_bundle"
        if ca_bundle is not None:
            shutil.copyfile(ca_bundle, ca_file)
        else:
            ca_file.touch()
        repository = (
            os.environ.get("TRACKSIDE_IMAGE_REPOSITORY", "").strip().rstrip("/") or DEFAULT_REPOSITORY
        )
        image = tag or image_tag(repository, manifest.name, manifest.version, staged.fingerprint)
        command, env = build_command(
            found,
            staged.directory,
            image,
            {"build_env": secret_file, "ca_bundle": ca_file},
            network=network or os.environ.get("TRACKSIDE_BUILD_NETWORK") or None,
            no_cache=no_cache,
        )
        print(f"building {image} with {found.name} (base {recipe.base_image})", file=sys.stderr, flush=True)
        _run(command, env, what="building the image", secrets=build_env.values())
    finally:
        shutil.rmtree(workspace, ignore_errors=True)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.unlink(missing_ok=True)  # podman refuses to overwrite
        _run(save_command(found, image, output), {}, what=f"saving {image} to {output}", secrets=())
        print(f"image {image} saved to {output}")
    else:
        print(f"image {image} built")


def _run(command: list[str], env: dict[str, str], what: str, secrets: Iterable[str]) -> None:
    """Run an engine command, its output passed through (to stderr) with secret values hidden."""
    hidden = sorted({v for v in secrets if len(v) >= 4}, key=len, reverse=True)
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, **env},
        text=True,
        errors="replace",
        bufsize=1,
    )
    assert process.stdout is not None
    with process.stdout:
        for line in process.stdout:
            for value in hidden:
                line = line.replace(value, "****")
            sys.stderr.write(line)
    if process.wait() != 0:
        raise CommandFailed(f"{what} failed ({Path(command[0]).name} exited with {process.returncode})")


def _git_commit(directory: Path) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(directory), "rev-parse", "--verify", "--quiet", "HEAD"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and commit else None


def _build_env_digest(build_env: dict[str, str]) -> str:
    """Changes with the build environment, so its pip steps rebuild; an HMAC with a key kept in
    this user's cache directory, so the image's history reveals nothing of the values."""
    if not build_env:
        return "none"
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "trackside"
    cache.mkdir(parents=True, exist_ok=True)
    salt_path = cache / SALT_FILE
    if not salt_path.exists():
        tmp = cache / f".{SALT_FILE}.{secrets.token_hex(4)}"
        tmp.touch(mode=0o600)
        tmp.write_bytes(secrets.token_bytes(32))
        tmp.replace(salt_path)
    canonical = json.dumps(sorted(build_env.items())).encode()
    return hmac.new(salt_path.read_bytes(), canonical, hashlib.sha256).hexdigest()[:32]


def register(app: typer.Typer) -> None:
    app.command(cls=TracksideCommand)(build)
