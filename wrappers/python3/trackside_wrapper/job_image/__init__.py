"""The image of a python3 job: its Dockerfile template, the build context it is built from and the
container engine command lines that build and save it.

Shared by the lifecycle's container builder and `trackside build`; like the rest of the wrapper it
imports nothing of the platform.
"""

from .engine import (
    ENGINES,
    ContainerEngine,
    EngineNotFound,
    build_command,
    ca_bundle_from_env,
    find_engine,
    save_command,
)
from .recipe import (
    CONTAINER_PORT,
    DEFAULT_BASE_IMAGE,
    JOB_USER_ID,
    LABEL_COMMIT,
    LABEL_FINGERPRINT,
    LABEL_JOB_NAME,
    LABEL_JOB_VERSION,
    ImageRecipe,
    RecipeError,
    StagedContext,
    base_image_for,
    env_file,
    image_tag,
    stage_context,
)
from .wheel import write_wrapper_wheel

__all__ = [
    "CONTAINER_PORT",
    "DEFAULT_BASE_IMAGE",
    "ENGINES",
    "JOB_USER_ID",
    "LABEL_COMMIT",
    "LABEL_FINGERPRINT",
    "LABEL_JOB_NAME",
    "LABEL_JOB_VERSION",
    "ContainerEngine",
    "EngineNotFound",
    "ImageRecipe",
    "RecipeError",
    "StagedContext",
    "base_image_for",
    "build_command",
    "ca_bundle_from_env",
    "env_file",
    "find_engine",
    "image_tag",
    "save_command",
    "stage_context",
    "write_wrapper_wheel",
]
