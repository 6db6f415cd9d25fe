"""The value types of manifest fields: each checks its format and says what it expected.

Every check raises ``invalid(expected)`` so that the error names what a valid value looks like.
"""

from __future__ import annotations

import keyword
import posixpath
import re
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import BeforeValidator, PlainSerializer, PlainValidator, WithJsonSchema

from trackside.manifest.errors import invalid
from trackside.manifest.jobtypes import EXPECTED_JOBTYPE, JOBTYPE_PATTERN, parse_jobtype
from trackside.manifest.quantities import CpuQuantity, MemoryQuantity, parse_cpu, parse_memory
from trackside.manifest.versions import is_valid_version

__all__ = [
    "RESERVED_RUNTIME_ENV",
    "ClientPath",
    "Cpu",
    "Email",
    "EndpointPath",
    "EnvName",
    "EnvValue",
    "GitBranch",
    "GitRemote",
    "JobName",
    "JobTypeText",
    "LabelKey",
    "LabelValue",
    "Memory",
    "NonNegativeInt",
    "PackageName",
    "PositiveInt",
    "PythonIdentifier",
    "PythonVersion",
    "RelativePath",
    "RuntimeEnvName",
    "SemVerText",
    "TargetName",
]

# set by the platform for every job (DESIGN §2.2); a manifest may not set them
RESERVED_RUNTIME_ENV = (
    "PUB_URL",
    "JOB_NAME",
    "JOB_VERSION",
    "JOB_MANIFEST_YAML",
    "AUTH_TOKEN",
    "JOB_DEPLOYMENT_TIMESTAMP",
    "REQUEST_TRACING_HEADER",
)

_JOB_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?", re.ASCII)
_EMAIL = re.compile(r"[^@\s]+@[^@\s.]+(?:\.[^@\s.]+)+", re.ASCII)
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*", re.ASCII)
_PYTHON_VERSION = re.compile(r"3\.(?:0|[1-9]\d*)(?:\.(?:0|[1-9]\d*))?", re.ASCII)
_PACKAGE = re.compile(r"[a-z0-9][a-z0-9+._-]*(?:=[A-Za-z0-9.+:~_-]+)?", re.ASCII)
_TARGET = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,252}", re.ASCII)
_REF_FORBIDDEN = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]|\.\.|@\{|//")

EXPECTED_NAME = (
    "a DNS label: lowercase letters, digits and '-', starting and ending with a letter or digit, "
    "at most 63 characters (e.g. 'my-job')"
)
EXPECTED_EMAIL = "an email address such as 'someone@example.com'"
EXPECTED_VERSION = "a semantic version such as '1.2.3' or '2.0.0-rc.1' (SemVer 2.0; quote it in YAML)"
EXPECTED_ENV_NAME = "an environment variable name (letters, digits and '_', not starting with a digit)"
EXPECTED_UNRESERVED_NAME = (
    f"a name other than those Trackside sets for every job ({', '.join(RESERVED_RUNTIME_ENV)})"
)
EXPECTED_ENV_VALUE = "a string (quote numbers and booleans in YAML, e.g. '8080' or 'true')"
EXPECTED_GIT_REMOTE = (
    "an https:// URL of a git repository (file:// for a local one); SSH and http:// remotes are not supported"
)
EXPECTED_GIT_BRANCH = "a git branch name (no spaces, '..', '~^:?*[\\', not starting with '-' or '/')"
EXPECTED_RELATIVE_PATH = "a relative path inside the job's directory (not absolute, no '..' leading outside)"
EXPECTED_CLIENT_PATH = "a path to a file on the deploying machine"
EXPECTED_ENDPOINT = "a URL path starting with '/' (e.g. '/api/v1/perform'), without '..', '?' or '#'"
EXPECTED_PACKAGE = "a system package name such as 'libgomp1' (optionally 'name=version')"
EXPECTED_TARGET = "an infrastructure target name such as 'kubernetes' or 'docker'"
EXPECTED_LABEL_VALUE = "a string (or a number or boolean, kept as text)"
EXPECTED_LABEL_KEY = "a non-empty string"
EXPECTED_IDENTIFIER = "a Python class name (an identifier such as 'JobEntrypoint')"
EXPECTED_PYTHON_VERSION = "a Python version such as '3.11' or '3.12.4' (quote it in YAML: 3.10 is a number)"
EXPECTED_CPU = "a positive CPU quantity such as '100m', '0.5' or '2' (Kubernetes notation)"
EXPECTED_MEMORY = (
    "a positive memory quantity in whole bytes such as '256Mi', '1Gi' or '512M' (Kubernetes notation)"
)


def _text(value: Any, expected: str) -> str:
    if not isinstance(value, str):
        raise invalid(expected)
    return value


def _job_name(value: Any) -> str:
    text = _text(value, EXPECTED_NAME)
    if _JOB_NAME.fullmatch(text) is None:
        raise invalid(EXPECTED_NAME)
    return text


def _email(value: Any) -> str:
    text = _text(value, EXPECTED_EMAIL)
    if len(text) > 254 or _EMAIL.fullmatch(text) is None:
        raise invalid(EXPECTED_EMAIL)
    return text


def _semver(value: Any) -> str:
    if not is_valid_version(value):
        raise invalid(EXPECTED_VERSION)
    return str(value)


def _jobtype(value: Any) -> str:
    text = _text(value, EXPECTED_JOBTYPE)
    if parse_jobtype(text) is None:
        raise invalid(EXPECTED_JOBTYPE)
    return text


def _env_name(value: Any) -> str:
    text = _text(value, EXPECTED_ENV_NAME)
    if _ENV_NAME.fullmatch(text) is None:
        raise invalid(EXPECTED_ENV_NAME)
    return text


def _runtime_env_name(value: Any) -> str:
    text = _env_name(value)
    if text in RESERVED_RUNTIME_ENV:
        raise invalid(EXPECTED_UNRESERVED_NAME)
    return text


def _env_value(value: Any) -> str:
    text = _text(value, EXPECTED_ENV_VALUE)
    if "\x00" in text:
        raise invalid("a string without NUL characters")
    return text


def _git_remote(value: Any) -> str:
    text = _text(value, EXPECTED_GIT_REMOTE)
    if text != text.strip() or any(c.isspace() or ord(c) < 32 for c in text):
        raise invalid(EXPECTED_GIT_REMOTE)
    try:
        url = urlsplit(text)
        host = url.hostname
    except ValueError:
        raise invalid(EXPECTED_GIT_REMOTE) from None
    if url.scheme == "https" and host and url.path not in ("", "/"):
        return text
    if url.scheme == "file" and url.path not in ("", "/") and not url.netloc:
        return text
    raise invalid(EXPECTED_GIT_REMOTE)


def _git_branch(value: Any) -> str:
    # the rules of `git check-ref-format --branch`, and never an option-like leading '-'
    text = _text(value, EXPECTED_GIT_BRANCH)
    if (
        not text
        or text.startswith(("-", "/", "."))
        or text.endswith(("/", ".", ".lock"))
        or "/." in text
        or text == "@"
        or _REF_FORBIDDEN.search(text)
    ):
        raise invalid(EXPECTED_GIT_BRANCH)
    return text


def _relative_path(value: Any) -> str:
    text = _text(value, EXPECTED_RELATIVE_PATH)
    if not text or "\x00" in text or text.startswith(("/", "\\")) or re.match(r"[A-Za-z]:[\\/]", text):
        raise invalid(EXPECTED_RELATIVE_PATH)
    normal = posixpath.normpath(text.replace("\\", "/"))
    if normal == ".." or normal.startswith("../"):
        raise invalid(EXPECTED_RELATIVE_PATH)
    return text


def _client_path(value: Any) -> str:
    text = _text(value, EXPECTED_CLIENT_PATH)
    if not text.strip() or "\x00" in text:
        raise invalid(EXPECTED_CLIENT_PATH)
    return text


def _endpoint(value: Any) -> str:
    text = _text(value, EXPECTED_ENDPOINT)
    if (
        not text.startswith("/")
        or any(c.isspace() or ord(c) < 32 or c in "?#" for c in text)
        or ".." in text.split("/")
    ):
        raise invalid(EXPECTED_ENDPOINT)
    return text


def _package(value: Any) -> str:
    text = _text(value, EXPECTED_PACKAGE)
    if _PACKAGE.fullmatch(text) is None:
        raise invalid(EXPECTED_PACKAGE)
    return text


def _target(value: Any) -> str:
    text = _text(value, EXPECTED_TARGET)
    if _TARGET.fullmatch(text) is None:
        raise invalid(EXPECTED_TARGET)
    return text


def _label_key(value: Any) -> str:
    text = _text(value, EXPECTED_LABEL_KEY)
    if not text:
        raise invalid(EXPECTED_LABEL_KEY)
    return text


def _label_value(value: Any) -> str:
    # Racetrack documents labels as strings but accepts any value; scalars are kept as their text
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return _text(value, EXPECTED_LABEL_VALUE)


def _identifier(value: Any) -> str:
    text = _text(value, EXPECTED_IDENTIFIER)
    if not text.isidentifier() or keyword.iskeyword(text):
        raise invalid(EXPECTED_IDENTIFIER)
    return text


def _python_version(value: Any) -> str:
    text = _text(value, EXPECTED_PYTHON_VERSION)
    if _PYTHON_VERSION.fullmatch(text) is None:
        raise invalid(EXPECTED_PYTHON_VERSION)
    return text


def _int_at_least(minimum: int) -> Any:
    expected = f"an integer >= {minimum}"

    def check(value: Any) -> int:
        # digit strings are accepted like Racetrack's python3 job type does ("2" == 2)
        digits = isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d{1,18}\s*", value, re.ASCII)
        whole = isinstance(value, float) and value.is_integer() and abs(value) < 2**53
        if digits or whole:
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise invalid(expected)
        return value

    return check


def _cpu(value: Any) -> CpuQuantity:
    if isinstance(value, CpuQuantity):
        return value
    try:
        return parse_cpu(value)
    except ValueError:
        raise invalid(EXPECTED_CPU) from None


def _memory(value: Any) -> MemoryQuantity:
    if isinstance(value, MemoryQuantity):
        return value
    try:
        return parse_memory(value)
    except ValueError:
        raise invalid(EXPECTED_MEMORY) from None


def _schema(pattern: str | None = None, **extra: Any) -> WithJsonSchema:
    schema: dict[str, Any] = {"type": "string", **extra}
    if pattern:
        schema["pattern"] = pattern
    return WithJsonSchema(schema)


_QUANTITY_SCHEMA = {
    "type": ["string", "number"],
    "pattern": r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?[0-9]+)?$",
}

JobName = Annotated[str, BeforeValidator(_job_name), _schema(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")]
Email = Annotated[str, BeforeValidator(_email), _schema(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]
SemVerText = Annotated[
    str,
    BeforeValidator(_semver),
    _schema(
        r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
        r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
        r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
    ),
]
JobTypeText = Annotated[str, BeforeValidator(_jobtype), _schema(JOBTYPE_PATTERN)]
EnvName = Annotated[str, BeforeValidator(_env_name), _schema(r"^[A-Za-z_][A-Za-z0-9_]*$")]
RuntimeEnvName = Annotated[
    str,
    BeforeValidator(_runtime_env_name),
    _schema(
        r"^[A-Za-z_][A-Za-z0-9_]*$",
        **{"not": {"enum": list(RESERVED_RUNTIME_ENV)}},
    ),
]
EnvValue = Annotated[str, BeforeValidator(_env_value), _schema()]
GitRemote = Annotated[str, BeforeValidator(_git_remote), _schema(r"^(https|file)://", format="uri")]
GitBranch = Annotated[str, BeforeValidator(_git_branch), _schema()]
RelativePath = Annotated[str, BeforeValidator(_relative_path), _schema(r"^[^/]")]
ClientPath = Annotated[str, BeforeValidator(_client_path), _schema()]
EndpointPath = Annotated[str, BeforeValidator(_endpoint), _schema(r"^/")]
PackageName = Annotated[
    str, BeforeValidator(_package), _schema(r"^[a-z0-9][a-z0-9+._-]*(=[A-Za-z0-9.+:~_-]+)?$")
]
TargetName = Annotated[str, BeforeValidator(_target), _schema(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
LabelKey = Annotated[str, BeforeValidator(_label_key), _schema()]
LabelValue = Annotated[
    str, BeforeValidator(_label_value), WithJsonSchema({"type": ["string", "number", "boolean"]})
]
PythonIdentifier = Annotated[str, BeforeValidator(_identifier), _schema(r"^[A-Za-z_][A-Za-z0-9_]*$")]
PythonVersion = Annotated[str, BeforeValidator(_python_version), _schema(r"^3\.[0-9]+(\.[0-9]+)?$")]
PositiveInt = Annotated[
    int, BeforeValidator(_int_at_least(1)), WithJsonSchema({"type": "integer", "minimum": 1})
]
NonNegativeInt = Annotated[
    int, BeforeValidator(_int_at_least(0)), WithJsonSchema({"type": "integer", "minimum": 0})
]
Cpu = Annotated[
    CpuQuantity,
    PlainValidator(_cpu),
    PlainSerializer(lambda q: q.text, return_type=str),
    WithJsonSchema(_QUANTITY_SCHEMA),
]
Memory = Annotated[
    MemoryQuantity,
    PlainValidator(_memory),
    PlainSerializer(lambda q: q.text, return_type=str),
    WithJsonSchema(_QUANTITY_SCHEMA),
]
