"""The ImageRecipe (trackside_wrapper.job_image) of a build request: what both image builders, the
container engine's and Kaniko's, build from the python3 Dockerfile template."""

from __future__ import annotations

import hashlib
import hmac
import json
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from trackside_wrapper.job_image import ImageRecipe, RecipeError, base_image_for

from .builder import BuildError, BuildRequest

IMAGE_PYTHON = Path("/opt/trackside/venv/bin/python")  # the job's interpreter in every job image


def build_env_digest(build_env: Mapping[str, str], key: bytes) -> str:
    """Changes whenever the build environment does; reveals nothing of it (an HMAC with `key`)."""
    if not build_env:
        return "none"
    canonical = json.dumps(sorted(build_env.items())).encode()
    return hmac.new(key, canonical, hashlib.sha256).hexdigest()[:32]


def image_recipe(
    request: BuildRequest, base_image: str, build_env_key: bytes, log: Callable[[str], None]
) -> ImageRecipe:
    """`base_image` may hold `{python_version}`: the job's, else the lifecycle's own. Says which
    build variables the build gets (never their values)."""
    python_version = request.python_version or f"{sys.version_info.major}.{sys.version_info.minor}"
    try:
        base = base_image_for(base_image, python_version)
    except RecipeError as e:
        raise BuildError(str(e)) from None
    if request.build_env:
        log(f"build environment variables: {', '.join(sorted(request.build_env))} (values hidden)")
    return ImageRecipe(
        job_name=request.job_name,
        job_version=request.job_version,
        base_image=base,
        system_dependencies=tuple(request.system_dependencies),
        requirements_path=request.requirements_path,
        check_requirements=request.check_requirements,
        git_commit=request.git_commit,
        build_env_digest=build_env_digest(request.build_env, build_env_key),
    )
