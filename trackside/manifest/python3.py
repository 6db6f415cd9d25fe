"""``jobtype_extra`` of the python3 job type: the keys it knows, validated when ``jobtype`` is python3."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from trackside.manifest.field_types import (
    EndpointPath,
    NonNegativeInt,
    PositiveInt,
    PythonIdentifier,
    PythonVersion,
    RelativePath,
)

__all__ = ["Python3Extra"]


class Python3Extra(BaseModel):
    """What a python3 job says about itself in ``jobtype_extra``."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="python3 jobtype_extra")

    entrypoint_path: RelativePath = Field(
        description="Python file with the entrypoint class, relative to the job's directory (git.directory)."
    )
    entrypoint_class: PythonIdentifier | None = Field(
        default=None,
        description="Name of the entrypoint class; by default the only class with a perform() method.",
    )
    requirements_path: RelativePath | None = Field(
        default=None, description="pip requirements file, relative to the job's directory."
    )
    max_concurrency: PositiveInt | None = Field(
        default=None, description="Most perform/auxiliary calls served at once; unlimited by default."
    )
    max_concurrency_queue: NonNegativeInt | None = Field(
        default=None, description="Calls that may wait beyond max_concurrency; further calls get 429 at once."
    )
    home_page: EndpointPath | None = Field(
        default=None,
        description="Path the job's root redirects to (default: the Swagger UI), e.g. /api/v1/webview.",
    )
    python_version: PythonVersion | None = Field(
        default=None,
        description="Python version of the job's environment, e.g. '3.11'; default: the platform's.",
    )
    check_requirements: bool | None = Field(
        default=None,
        description="Check that the installed requirements are consistent (pip check) after building.",
    )
