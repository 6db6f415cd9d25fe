"""What goes into a job's image: the rendered Dockerfile and the build context beside it.

The context is staged into a fresh directory:

    Dockerfile
    support/                 start.sh (the container's command) and pip-install.sh
    wrapper-requirements.txt the wrapper's own dependencies
    requirements/            the job's requirements file and the files it includes (-r/-c)
    wheels/                  the wrapper as a wheel (reproducible: same source, same bytes)
    code/                    the job's source

Every file that reaches a layer before `code/` depends only on the dependencies, never on the
code, so the engine's layer cache rebuilds only the last layer when only the code changed. The
dependency fingerprint hashes exactly those inputs (plus an HMAC of the build environment), and
it is part of the image's tag and labels.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import os
import re
import shlex
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .wheel import wrapper_requirements, write_wrapper_wheel

DEFAULT_BASE_IMAGE = "python:{python_version}-slim"
CONTAINER_PORT = 7000
JOB_USER_ID = 10001
LABEL_JOB_NAME = "trackside.job.name"
LABEL_JOB_VERSION = "trackside.job.version"
LABEL_COMMIT = "trackside.git.commit"
LABEL_FINGERPRINT = "trackside.dependency.fingerprint"

FORMAT = "trackside-image-v1"
_CODE_LEFT_OUT = frozenset({".git", "__pycache__", ".venv"})
_PACKAGE_RE = re.compile(r"[a-z0-9][a-z0-9+._-]*(=[A-Za-z0-9.+:~_-]+)?")
_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_INCLUDE_RE = re.compile(r"^\s*(?:-r|--requirement|-c|--constraint)[\s=]+(\S+)")
_TAG_UNSAFE_RE = re.compile(r"[^A-Za-z0-9_.-]")
_REFERENCE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:@-]*")
_SUPPORT_FILES = ("start.sh", "pip-install.sh")


class RecipeError(ValueError):
    """The job cannot be turned into an image as asked; the message names what is wrong."""


@dataclass(frozen=True)
class ImageRecipe:
    job_name: str
    job_version: str
    base_image: str  # a full image reference (see base_image_for)
    system_dependencies: tuple[str, ...] = ()
    requirements_path: str | None = None  # relative to the job's source directory
    check_requirements: bool = False
    git_commit: str | None = None
    # changes whenever the build environment does, reveals nothing of it (an HMAC with a local key)
    build_env_digest: str = "none"


@dataclass(frozen=True)
class StagedContext:
    directory: Path
    dockerfile: str
    fingerprint: str  # hex sha256 of everything the layers below the code depend on


def base_image_for(template: str, python_version: str) -> str:
    """The base image reference: `template` with `{python_version}` filled in."""
    try:
        image = template.format(python_version=python_version)
    except (KeyError, IndexError, ValueError):
        raise RecipeError(
            f"base image {template!r}: only the placeholder {{python_version}} may be used"
        ) from None
    if not _REFERENCE_RE.fullmatch(image):
        raise RecipeError(f"base image {image!r} is not an image reference")
    return image


def image_tag(repository: str, job_name: str, job_version: str, fingerprint: str) -> str:
    """`repository/name:version-fingerprint12`, the same for the same job, version and dependencies."""
    tag = _TAG_UNSAFE_RE.sub("_", f"{job_version}-{fingerprint[:12]}")[:128]
    return f"{repository.rstrip('/')}/{job_name}:{tag}"


def env_file(values: Mapping[str, str], what: str = "build_env") -> str:
    """Environment variables as POSIX shell assignments: the build environment sourced by
    pip-install.sh in a build, the runtime environment sourced by start.sh in a container."""
    lines = []
    for name, value in sorted(values.items()):
        if not _ENV_NAME_RE.fullmatch(name):
            raise RecipeError(f"{what}: {name!r} is not an environment variable name")
        if "\0" in value:
            raise RecipeError(f"{what}: the value of {name} contains a NUL character")
        lines.append(f"{name}={shlex.quote(value)}\n")
    return "".join(lines)


def stage_context(
    recipe: ImageRecipe,
    source_dir: Path,
    destination: Path,
    left_out: Iterable[str] = (),
    only: Iterable[PurePosixPath] | None = None,
) -> StagedContext:
    """Write the build context of `recipe` for the job in `source_dir` into `destination` (a new
    directory). `left_out`: paths relative to `source_dir` that must not reach the image (secret
    env files); `only`: when given, the code is these paths (files, links and directories relative
    to `source_dir`, e.g. what its ignore files let through) and nothing else."""
    _check(recipe)
    if not source_dir.is_dir():
        raise RecipeError(f"the job's source directory {source_dir} does not exist")
    destination.mkdir(parents=True)
    support = destination / "support"
    support.mkdir()
    package = importlib.resources.files(__package__)
    for name in _SUPPORT_FILES:
        (support / name).write_bytes(package.joinpath(name).read_bytes())
    (destination / "wrapper-requirements.txt").write_text("".join(f"{r}\n" for r in wrapper_requirements()))
    wheel = write_wrapper_wheel(destination / "wheels")
    requirements = _stage_requirements(recipe, source_dir, destination / "requirements")
    _copy_code(
        source_dir,
        destination / "code",
        {PurePosixPath(p) for p in left_out},
        None if only is None else {p.as_posix() for p in only},
    )

    digest = hashlib.sha256()

    def part(label: str, data: bytes) -> None:
        digest.update(label.encode() + b"\0" + len(data).to_bytes(8, "big") + data)

    part("format", FORMAT.encode())
    part("base", recipe.base_image.encode())
    part("system", "\n".join(recipe.system_dependencies).encode())
    for name in _SUPPORT_FILES:
        part("support", (support / name).read_bytes())
    part("wrapper-requirements", (destination / "wrapper-requirements.txt").read_bytes())
    part("wheel", wheel.read_bytes())
    part("requirements", json.dumps(recipe.requirements_path).encode())
    for path in sorted(p for p in (destination / "requirements").rglob("*") if p.is_file()):
        part("file", path.relative_to(destination).as_posix().encode() + b"\0" + path.read_bytes())
    part("check", b"1" if recipe.check_requirements else b"0")
    part("build-env", recipe.build_env_digest.encode())
    fingerprint = digest.hexdigest()

    dockerfile = render_dockerfile(recipe, requirements, fingerprint)
    (destination / "Dockerfile").write_text(dockerfile)
    return StagedContext(destination, dockerfile, fingerprint)


def render_dockerfile(recipe: ImageRecipe, requirements: str | None, fingerprint: str) -> str:
    """The Dockerfile of `recipe`; `requirements`: the requirements file's path under requirements/."""
    _check(recipe)
    template = importlib.resources.files(__package__).joinpath("Dockerfile.template").read_text()
    mounts = (
        "--mount=type=secret,id=build_env --mount=type=secret,id=ca_bundle "
        "--mount=type=cache,id=trackside-pip,target=/root/.cache/pip"
    )
    system = ""
    if recipe.system_dependencies:
        system = (
            "RUN apt-get update \\\n"
            " && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "
            + " ".join(recipe.system_dependencies)
            + " \\\n && rm -rf /var/lib/apt/lists/*\n"
        )
    requirements_block = ""
    if requirements is not None:
        requirements_block = (
            "COPY requirements/ /opt/trackside/requirements/\n"
            f"RUN {mounts} \\\n"
            f"    cd /opt/trackside/requirements && BUILD_ENV_DIGEST={recipe.build_env_digest} "
            f"/bin/sh /opt/trackside/bin/pip-install.sh -r {shlex.quote(requirements)}\n"
        )
    labels = {
        LABEL_JOB_NAME: recipe.job_name,
        LABEL_JOB_VERSION: recipe.job_version,
        LABEL_COMMIT: recipe.git_commit or "",
        LABEL_FINGERPRINT: fingerprint,
    }
    return template.format(
        base_image=recipe.base_image,
        system_packages=system,
        build_env_digest=recipe.build_env_digest,
        requirements=requirements_block,
        pip_check=" \\\n && /opt/trackside/venv/bin/pip check" if recipe.check_requirements else "",
        labels=" \\\n      ".join(f"{key}={json.dumps(value)}" for key, value in labels.items()),
    )


def _check(recipe: ImageRecipe) -> None:
    for package in recipe.system_dependencies:
        if not _PACKAGE_RE.fullmatch(package):
            raise RecipeError(f"system_dependencies: {package!r} is not a Debian package name")
    if not _REFERENCE_RE.fullmatch(recipe.base_image):
        raise RecipeError(f"base image {recipe.base_image!r} is not an image reference")
    if not re.fullmatch(r"[A-Za-z0-9]+", recipe.build_env_digest):
        raise RecipeError("the build environment digest must be alphanumeric")
    for what, value in (("job name", recipe.job_name), ("job version", recipe.job_version)):
        if not value or any(c in value for c in "\n\r\0"):
            raise RecipeError(f"{what} {value!r} cannot label an image")
    if recipe.git_commit and not re.fullmatch(r"[0-9a-fA-F]{4,64}", recipe.git_commit):
        raise RecipeError(f"git commit {recipe.git_commit!r} is not a commit id")


def _inside(root: Path, relative: str, what: str) -> Path:
    path = (root / relative).resolve()
    if not path.is_relative_to(root):
        raise RecipeError(f"{what} {relative!r} points outside the job's directory")
    return path


def _stage_requirements(recipe: ImageRecipe, source_dir: Path, destination: Path) -> str | None:
    """Copy the requirements file and those it includes; its path relative to `destination`."""
    destination.mkdir()
    if not recipe.requirements_path:
        return None
    root = source_dir.resolve()
    first = _inside(root, recipe.requirements_path, "requirements_path")
    if not first.is_file():
        raise RecipeError(f"requirements file {recipe.requirements_path!r} not found in the job's source")
    pending, seen = [first], set[Path]()
    while pending:
        path = pending.pop()
        if path in seen or not path.is_file() or not path.is_relative_to(root):
            continue
        seen.add(path)
        target = destination / path.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        for line in path.read_text(errors="replace").splitlines():
            include = _INCLUDE_RE.match(line)
            if include:
                pending.append((path.parent / include.group(1)).resolve())
    return first.relative_to(root).as_posix()


def _copy_code(source: Path, destination: Path, left_out: set[PurePosixPath], only: set[str] | None) -> None:
    root = source.resolve()
    skipped = {p.as_posix().removeprefix("./") for p in left_out}
    destination.mkdir()
    for directory, dirnames, filenames in os.walk(root):
        rel_dir = PurePosixPath(Path(directory).relative_to(root).as_posix())
        entries = [(d, True) for d in dirnames] + [(f, False) for f in filenames]
        dirnames[:] = []
        for name, is_dir in sorted(entries):
            rel = rel_dir / name
            src = Path(directory) / name
            dst = destination / rel
            if rel.as_posix() in skipped or name in _CODE_LEFT_OUT or name.endswith((".pyc", ".pyo")):
                continue
            if only is not None and rel.as_posix() not in only:
                continue
            if src.is_symlink():
                if not src.resolve().is_relative_to(root):
                    raise RecipeError(f"{rel} links outside the job's directory")
                os.symlink(os.readlink(src), dst)
            elif is_dir:
                dst.mkdir()
                dirnames.append(name)
            else:
                shutil.copy2(src, dst)
