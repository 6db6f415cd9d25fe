"""The dependency fingerprint: what makes two job versions share one environment.

Two builds get the same fingerprint when they would install the same things: the same Python,
the same trackside-wrapper source, the same requirements (with the files they include) and the
same build environment. Code-only changes keep the fingerprint, so they reuse the environment.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

FORMAT = b"trackside-env-v1"
FINGERPRINT_RE = re.compile(r"[0-9a-f]{64}")
_SKIPPED_DIRS = frozenset(
    {".git", "__pycache__", ".venv", "build", "dist", ".mypy_cache", ".pytest_cache", ".ruff_cache"}
)
_INCLUDE_RE = re.compile(r"^\s*(?:-r|--requirement|-c|--constraint)[\s=]+(\S+)")
_LOCAL_PATH_RE = re.compile(r"^\s*(?:(?:-e|--editable)\s+)?(\.{1,2}/\S*|\.|/\S+|file:\S+)")


@dataclass(frozen=True)
class Interpreter:
    path: Path
    implementation: str  # "CPython"
    version: str  # "3.11.7"


def _files(root: Path) -> Iterator[Path]:
    for directory, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIPPED_DIRS and not d.endswith(".egg-info"))
        for name in sorted(filenames):
            if not name.endswith((".pyc", ".pyo")):
                yield Path(directory) / name


def tree_hash(root: Path) -> str:
    """sha256 over the relative paths and contents of the files under root (a file: its content)."""
    digest = hashlib.sha256()
    if root.is_file():
        digest.update(root.read_bytes())
        return digest.hexdigest()
    for path in _files(root):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def requirements_content(requirements: Path, root: Path) -> bytes:
    """The requirements file's bytes plus those of the local files it refers to (-r/-c includes,
    local path requirements), which would change what gets installed without changing the file."""
    seen: set[Path] = set()
    parts: list[bytes] = []

    def visit(path: Path) -> None:
        path = path.resolve()
        if path in seen or not path.is_file() or not path.is_relative_to(root):
            return
        seen.add(path)
        text = path.read_bytes()
        parts.append(path.relative_to(root).as_posix().encode() + b"\0" + text)
        for line in text.decode("utf-8", errors="replace").splitlines():
            include = _INCLUDE_RE.match(line)
            if include:
                visit(path.parent / include.group(1))
                continue
            local = _LOCAL_PATH_RE.match(line)
            if local:
                target = (root / local.group(1).removeprefix("file:").removeprefix("//")).resolve()
                if target.is_relative_to(root) and target.exists():
                    parts.append(b"local\0" + tree_hash(target).encode())

    root = root.resolve()
    visit(requirements)
    return b"\0\0".join(parts)


def load_salt(path: Path) -> bytes:
    """A random key kept beside the cache: build env values enter the fingerprint only through an
    HMAC with it, so a published fingerprint cannot be used to guess a secret value."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        salt = path.read_bytes()
        if len(salt) == 32:
            return salt
        raise RuntimeError(f"{path} is damaged; delete it (the cache will be rebuilt)") from None
    salt = secrets.token_bytes(32)
    with os.fdopen(fd, "wb") as f:
        f.write(salt)
    return salt


def dependency_fingerprint(
    interpreter: Interpreter,
    wrapper_hash: str,
    requirements: bytes | None,
    build_env: Mapping[str, str],
    salt: bytes,
) -> str:
    digest = hashlib.sha256()

    def part(label: str, data: bytes) -> None:
        digest.update(label.encode() + b"\0" + len(data).to_bytes(8, "big") + data)

    part("format", FORMAT)
    part("python", f"{interpreter.implementation} {interpreter.version} {interpreter.path}".encode())
    part("wrapper", wrapper_hash.encode())
    part("requirements", b"none" if requirements is None else b"file\0" + requirements)
    for name, value in sorted(build_env.items()):
        part("env", name.encode() + b"\0" + hmac.new(salt, value.encode(), hashlib.sha256).digest())
    return digest.hexdigest()
