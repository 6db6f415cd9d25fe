"""The wrapper as a wheel, written from the installed package (editable or not), so an image can
install the very wrapper the platform runs without a build backend or a network.

The wheel is reproducible: entries sorted, fixed timestamps and modes, so the same source always
gives the same bytes (and the image layer that installs it stays cached).
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import zipfile
from pathlib import Path

import trackside_wrapper

DISTRIBUTION = "trackside-wrapper"
_WHEEL_NAME = "trackside_wrapper"
_FIXED_TIME = (1980, 1, 2, 0, 0, 0)


def package_dir() -> Path:
    """The trackside_wrapper package this process imports."""
    return Path(trackside_wrapper.__file__).resolve().parent


def wrapper_requirements() -> list[str]:
    """The wrapper's own dependencies (extras left out), as requirement lines."""
    requires = importlib.metadata.requires(DISTRIBUTION) or []
    return [r for r in requires if "extra ==" not in r]


def _files(root: Path) -> list[Path]:
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and not p.name.endswith((".pyc", ".pyo"))
    )


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def write_wrapper_wheel(directory: Path) -> Path:
    """Write `trackside_wrapper-VERSION-py3-none-any.whl` into `directory`; its path."""
    version = trackside_wrapper.__version__
    info = f"{_WHEEL_NAME}-{version}.dist-info"
    metadata = importlib.metadata.metadata(DISTRIBUTION)
    lines = [
        "Metadata-Version: 2.1",
        f"Name: {DISTRIBUTION}",
        f"Version: {version}",
        f"Summary: {metadata['Summary'] or ''}",
        f"Requires-Python: {metadata['Requires-Python'] or '>=3.11'}",
        *(f"Requires-Dist: {r}" for r in wrapper_requirements()),
    ]
    entries: list[tuple[str, bytes, int]] = []
    root = package_dir()
    for path in _files(root):
        name = f"trackside_wrapper/{path.relative_to(root).as_posix()}"
        entries.append((name, path.read_bytes(), 0o644))
    entries.append((f"{info}/METADATA", ("\n".join(lines) + "\n").encode(), 0o644))
    entries.append(
        (
            f"{info}/WHEEL",
            b"Wheel-Version: 1.0\nGenerator: trackside\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
            0o644,
        )
    )
    entries.append(
        (
            f"{info}/entry_points.txt",
            b"[console_scripts]\ntrackside-wrapper = trackside_wrapper.cli:main\n",
            0o644,
        )
    )
    record = "".join(f"{name},{_record_hash(data)},{len(data)}\n" for name, data, _ in entries)
    record += f"{info}/RECORD,,\n"
    entries.append((f"{info}/RECORD", record.encode(), 0o644))

    directory.mkdir(parents=True, exist_ok=True)
    wheel = directory / f"{_WHEEL_NAME}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data, mode in entries:
            entry = zipfile.ZipInfo(name, date_time=_FIXED_TIME)
            entry.external_attr = (0o100000 | mode) << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(entry, data)
    return wheel
