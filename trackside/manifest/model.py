"""The job manifest (``job.yaml``): one pydantic model, used by the CLI and by the lifecycle.

Field names and meanings are Racetrack's. ``Manifest.model_validate(data)`` accepts Racetrack's
deprecated spellings (see ``normalising``), checks every field and reports every problem in one
``pydantic.ValidationError``; ``parse_manifest`` / ``load_manifest`` (module ``loading``) turn
that into a ``ManifestError`` with field paths and add ``extends`` and ``-e`` overrides.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails

from trackside.manifest.errors import (
    MANIFEST_ERROR_TYPE,
    FieldError,
    Loc,
    ManifestError,
    field_errors_from_validation,
    invalid,
)
from trackside.manifest.field_types import (
    EXPECTED_EMAIL,
    EXPECTED_GIT_REMOTE,
    EXPECTED_NAME,
    ClientPath,
    Cpu,
    Email,
    EndpointPath,
    EnvName,
    EnvValue,
    GitBranch,
    GitRemote,
    JobName,
    JobTypeText,
    LabelKey,
    LabelValue,
    Memory,
    PackageName,
    PositiveInt,
    RelativePath,
    RuntimeEnvName,
    SemVerText,
    TargetName,
)
from trackside.manifest.jobtypes import EXPECTED_JOBTYPE, PYTHON3, jobtype_name
from trackside.manifest.normalising import JOBTYPE_ALIASES, JOBTYPE_EXTRA_ALIASES, normalise
from trackside.manifest.python3 import Python3Extra

__all__ = [
    "DEFAULT_VERSION",
    "GitSpec",
    "Manifest",
    "Resources",
    "manifest_error_from_validation",
    "sort_by_field",
]

DEFAULT_VERSION = "0.0.1"


class GitSpec(BaseModel):
    """Where the job's source code lives."""

    model_config = ConfigDict(extra="forbid", title="git")

    remote: GitRemote = Field(
        description="HTTPS URL of the git repository (file:// for a local one, where the lifecycle allows it)."
    )
    branch: GitBranch | None = Field(
        default=None, description="Branch to build; the repository's default if unset."
    )
    directory: RelativePath = Field(default=".", description="The job's directory inside the repository.")


class Resources(BaseModel):
    """Resources for each replica, as Kubernetes quantities (``100m``, ``512Mi``)."""

    model_config = ConfigDict(extra="forbid", title="resources")

    memory_min: Memory | None = Field(default=None, description="Memory reserved, e.g. 256Mi.")
    memory_max: Memory | None = Field(default=None, description="Memory limit, e.g. 1Gi.")
    cpu_min: Cpu | None = Field(default=None, description="CPU reserved in cores, e.g. 10m or 0.5.")
    cpu_max: Cpu | None = Field(default=None, description="CPU limit in cores, e.g. 1000m or 2.")

    @model_validator(mode="after")
    def _min_not_above_max(self) -> Resources:
        problems: list[InitErrorDetails] = []
        if self.memory_min and self.memory_max and self.memory_min.bytes > self.memory_max.bytes:
            problems.append(
                _detail(("memory_min",), self.memory_min.text, f"at most memory_max ({self.memory_max.text})")
            )
        if self.cpu_min and self.cpu_max and self.cpu_min.cores > self.cpu_max.cores:
            problems.append(
                _detail(("cpu_min",), self.cpu_min.text, f"at most cpu_max ({self.cpu_max.text})")
            )
        if problems:
            raise ValidationError.from_exception_data(type(self).__name__, problems)
        return self


class Manifest(BaseModel):
    """A job's manifest (``job.yaml``), Racetrack-compatible."""

    model_config = ConfigDict(extra="forbid", title="Trackside job manifest (job.yaml)")

    name: JobName = Field(description="Name of the job: a DNS label (lowercase letters, digits, '-').")
    owner_email: Email = Field(description="Email address of the job's owner.")
    jobtype: JobTypeText = Field(
        description="Job type and version: python3:latest, python3:2.4.0, python3:2.x or python3:*."
    )
    version: SemVerText = Field(default=DEFAULT_VERSION, description="Version of the job (SemVer 2.0).")
    git: GitSpec = Field(description="Where the source code is.")
    extends: RelativePath | None = Field(
        default=None, description="Base manifest this one overlays, relative to this file (one level)."
    )
    jobtype_extra: dict[str, Any] = Field(
        default_factory=dict, description="Settings for the job type (for python3: entrypoint_path, ...)."
    )
    build_env: dict[EnvName, EnvValue] = Field(
        default_factory=dict, description="Environment variables while building."
    )
    runtime_env: dict[RuntimeEnvName, EnvValue] = Field(
        default_factory=dict, description="Environment variables of the running job."
    )
    secret_build_env_file: ClientPath | None = Field(
        default=None, description="Env file on the deploying machine with secret build variables."
    )
    secret_runtime_env_file: ClientPath | None = Field(
        default=None, description="Env file on the deploying machine with secret runtime variables."
    )
    public_endpoints: list[EndpointPath] = Field(
        default_factory=list, description="Paths callable without a token (after an admin's approval)."
    )
    replicas: PositiveInt = Field(default=1, description="Number of running instances.")
    resources: Resources | None = Field(default=None, description="CPU and memory per replica.")
    labels: dict[LabelKey, LabelValue] = Field(default_factory=dict, description="Metadata for humans.")
    system_dependencies: list[PackageName] = Field(
        default_factory=list, description="System packages to install (apt)."
    )
    infrastructure_target: TargetName | None = Field(default=None, description="Where to run the job.")

    _warnings: list[str] = PrivateAttr(default_factory=list)

    @field_validator("resources", mode="before")
    @classmethod
    def _no_resources_is_none(cls, value: Any) -> Any:
        return None if isinstance(value, Mapping) and not value else value

    @model_validator(mode="wrap")
    @classmethod
    def _validate_whole(cls, data: Any, handler: ModelWrapValidatorHandler[Manifest]) -> Manifest:
        if not isinstance(data, Mapping):
            return handler(data)
        normalised = normalise(data)
        problems = [_detail(_loc(e.path), e.value, e.expected) for e in normalised.errors]
        problems += _python3_problems(normalised.data)
        try:
            manifest = handler(normalised.data)
        except ValidationError as exc:
            raise _combined(cls.__name__, exc, problems) from None
        if problems:
            raise ValidationError.from_exception_data(cls.__name__, problems)
        manifest._warnings = list(normalised.warnings)
        return manifest

    def __eq__(self, other: object) -> bool:
        # the fields only: warnings about how the manifest was written do not make it different
        if not isinstance(other, Manifest):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in type(self).model_fields)

    __hash__ = None  # type: ignore[assignment]

    @property
    def warnings(self) -> list[str]:
        """Deprecations found while reading the manifest (e.g. ``lang`` instead of ``jobtype``)."""
        return list(self._warnings)

    @property
    def jobtype_name(self) -> str:
        """``python3`` of ``python3:latest``."""
        return self.jobtype.partition(":")[0]

    @property
    def jobtype_version(self) -> str:
        """``latest`` of ``python3:latest`` (a version request: exact, latest or a wildcard)."""
        return self.jobtype.partition(":")[2]

    @property
    def python3(self) -> Python3Extra | None:
        """``jobtype_extra`` as python3 settings, for a python3 job (None for another job type)."""
        if self.jobtype_name != PYTHON3:
            return None
        return Python3Extra.model_validate(self.jobtype_extra)


def attach_warnings(manifest: Manifest, warnings: Iterable[str]) -> None:
    """Add warnings found before validation (in a base manifest, in overrides) to ``manifest``."""
    manifest._warnings = [*warnings, *manifest._warnings]


def manifest_error_from_validation(exc: ValidationError, source: str | None = None) -> ManifestError:
    """The ``ManifestError`` for pydantic's errors about a ``Manifest``, in the order of the fields."""
    errors = field_errors_from_validation(exc, known_fields, required_expected)
    return ManifestError(sort_by_field(errors), source)


def sort_by_field(errors: list[FieldError]) -> list[FieldError]:
    """``errors`` in the order of the manifest's fields (stable within a field)."""
    order = list(Manifest.model_fields)
    return sorted(errors, key=lambda e: _field_rank(e.path, order))


def _field_rank(path: str, order: Sequence[str]) -> int:
    head = path.split(".", 1)[0].split("[", 1)[0]
    head = _CANONICAL.get(head, head)
    return order.index(head) if head in order else len(order)


_CANONICAL = {
    **dict.fromkeys(JOBTYPE_ALIASES, "jobtype"),
    **dict.fromkeys(JOBTYPE_EXTRA_ALIASES, "jobtype_extra"),
}


def _python3_problems(data: Mapping[Any, Any]) -> list[InitErrorDetails]:
    """python3's ``jobtype_extra`` keys, checked even when the rest of the manifest is invalid."""
    if jobtype_name(data.get("jobtype")) != PYTHON3:
        return []
    extra = data.get("jobtype_extra", {})
    if not isinstance(extra, Mapping):
        return []  # reported as "expected a mapping" by the model itself
    try:
        Python3Extra.model_validate(extra)
    except ValidationError as exc:
        return _reraisable(exc, prefix=("jobtype_extra",))
    return []


def _combined(title: str, exc: ValidationError, problems: list[InitErrorDetails]) -> ValidationError:
    return ValidationError.from_exception_data(title, [*_reraisable(exc), *problems])


def _reraisable(exc: ValidationError, prefix: Loc = ()) -> list[InitErrorDetails]:
    details: list[InitErrorDetails] = []
    for d in exc.errors():
        loc = (*prefix, *d["loc"])
        ctx = d.get("ctx")
        if d["type"] == MANIFEST_ERROR_TYPE and ctx and "expected" in ctx:
            details.append(_detail(loc, d["input"], str(ctx["expected"])))
            continue
        item = InitErrorDetails(type=d["type"], loc=loc, input=d["input"])
        if ctx:
            item["ctx"] = ctx
        try:
            ValidationError.from_exception_data("check", [item])
        except Exception:  # a type pydantic cannot rebuild: keep its message as the expectation
            item = _detail(loc, d["input"], d["msg"])
        details.append(item)
    return details


def _detail(loc: Loc, value: Any, expected: str) -> InitErrorDetails:
    return InitErrorDetails(type=invalid(expected), loc=loc, input=value)


def _loc(path: str) -> Loc:
    return tuple(path.split(".")) if path else ()


def _model_at(loc: Loc) -> type[BaseModel] | None:
    """The model class that validates the mapping at ``loc`` (None for free-form mappings)."""
    model: type[BaseModel] = Manifest
    for part in loc:
        if model is Manifest and part == "jobtype_extra":
            model = Python3Extra
            continue
        info = model.model_fields.get(part) if isinstance(part, str) else None
        if info is None:
            return None
        nested = _model_in(info.annotation)
        if nested is None:
            return None
        model = nested
    return model


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) in (Union, type(int | None)):
        for arg in get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None


def known_fields(parent: Loc) -> list[str] | None:
    """The field names allowed at ``parent`` (used to explain an unknown field)."""
    model = _model_at(parent)
    if model is None:
        return None
    names = list(model.model_fields)
    if model is Manifest:
        names += [*JOBTYPE_ALIASES, *JOBTYPE_EXTRA_ALIASES]
    return names


_REQUIRED: dict[Loc, str] = {
    ("name",): EXPECTED_NAME,
    ("owner_email",): EXPECTED_EMAIL,
    ("jobtype",): EXPECTED_JOBTYPE,
    ("git",): "a mapping with remote (and optionally branch and directory)",
    ("git", "remote"): EXPECTED_GIT_REMOTE,
    ("jobtype_extra", "entrypoint_path"): (
        "the path of the Python file with the entrypoint class (required for python3 jobs)"
    ),
}


def required_expected(loc: Loc) -> str | None:
    """What a missing required field at ``loc`` should hold."""
    return _REQUIRED.get(tuple(loc))
