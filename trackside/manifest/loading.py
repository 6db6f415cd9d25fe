"""Reading a manifest: YAML -> canonical names -> ``extends`` -> ``-e`` overrides -> validation.

Every problem ends as one ``ManifestError`` listing all of them; nothing else escapes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from trackside.manifest.errors import FieldError, ManifestError
from trackside.manifest.limits import limit_errors
from trackside.manifest.merging import deep_merge, plain_copy
from trackside.manifest.model import Manifest, attach_warnings, manifest_error_from_validation, sort_by_field
from trackside.manifest.normalising import normalise
from trackside.manifest.overrides import apply_overrides
from trackside.manifest.yaml_text import YamlSyntaxError, load_yaml

__all__ = ["FORMER_MANIFEST_FILENAME", "MANIFEST_FILENAME", "load_manifest", "parse_manifest"]

MANIFEST_FILENAME = "job.yaml"
FORMER_MANIFEST_FILENAME = "fatman.yaml"  # Racetrack's name before 2.0, still read by its client
_EXPECTED_DOCUMENT = "a YAML mapping of manifest fields (name, owner_email, jobtype, git, ...)"


def load_manifest(path: Path | str, overrides: Iterable[str] = ()) -> Manifest:
    """Load and validate the manifest file at ``path`` (or ``path/job.yaml`` for a directory).

    ``extends`` is resolved relative to the file; ``overrides`` (``key.path=yaml``) are applied
    after it, before validation. Raises ``ManifestError``.
    """
    file = Path(path)
    warnings: list[str] = []
    if file.is_dir():
        file, warnings = _manifest_in(file)
    text = _read(file, "", str(file), str(file))
    return _build(text, file.parent, overrides, source=str(file), warnings=warnings)


def parse_manifest(
    data: Mapping[str, Any] | str,
    base_dir: Path | str | None = None,
    overrides: Iterable[str] = (),
) -> Manifest:
    """Validate a manifest given as a mapping or as YAML text. Raises ``ManifestError``.

    ``base_dir`` is the directory ``extends`` is relative to; a manifest that extends another
    cannot be parsed without it. ``overrides`` (``key.path=yaml``) apply after ``extends``.
    """
    return _build(data, None if base_dir is None else Path(base_dir), overrides, source=None, warnings=[])


def _build(
    data: Mapping[str, Any] | str,
    base_dir: Path | None,
    overrides: Iterable[str],
    source: str | None,
    warnings: list[str],
) -> Manifest:
    if isinstance(overrides, str):
        overrides = [overrides]
    document = _document(data, source)
    normalised = normalise(document, drop_nulls=False)
    errors = list(normalised.errors)
    warnings = [*warnings, *normalised.warnings]
    merged = normalised.data
    if merged.get("extends") is not None:
        try:
            merged = _extend(merged, base_dir, source, warnings)
        except ManifestError as exc:
            raise ManifestError([*errors, *exc.errors], source) from None
    errors += apply_overrides(merged, overrides)
    try:
        manifest = Manifest.model_validate(merged)
    except ValidationError as exc:
        errors += manifest_error_from_validation(exc).errors
        raise ManifestError(sort_by_field(errors), source) from None
    if errors:
        raise ManifestError(sort_by_field(errors), source)
    attach_warnings(manifest, warnings)
    return manifest


def _document(data: Mapping[str, Any] | str, source: str | None, origin: str | None = None) -> dict[Any, Any]:
    if isinstance(data, str):
        try:
            data = load_yaml(data)
        except YamlSyntaxError as exc:
            raise ManifestError(
                [FieldError("", None, f"valid YAML ({exc})", "invalid YAML", origin)], source
            ) from None
    if not isinstance(data, Mapping):
        raise ManifestError([FieldError("", data, _EXPECTED_DOCUMENT, origin=origin)], source)
    beyond_limits = limit_errors(data)  # before anything walks it recursively
    if beyond_limits:
        raise ManifestError(sort_by_field(beyond_limits), source)
    copied: dict[Any, Any] = plain_copy(data)
    return copied


def _extend(
    overlay: dict[Any, Any], base_dir: Path | None, source: str | None, warnings: list[str]
) -> dict[Any, Any]:
    """The overlay merged onto the base manifest it ``extends`` (one level only)."""
    extends = overlay.pop("extends")
    expected = "a relative path to the base manifest (YAML file), relative to this manifest"
    if not isinstance(extends, str) or not extends.strip() or "\x00" in extends:
        raise ManifestError([FieldError("extends", extends, expected)], source)
    if Path(extends).is_absolute():
        raise ManifestError([FieldError("extends", extends, f"{expected}, not an absolute path")], source)
    if base_dir is None:
        raise ManifestError(
            [
                FieldError(
                    "extends", extends, f"{expected}; it cannot be resolved without the manifest's directory"
                )
            ],
            source,
        )
    base_file = base_dir / extends
    text = _read(base_file, "extends", extends, source)
    base = normalise(_document(text, source, origin=f"base manifest {extends}"), drop_nulls=False)
    if base.errors:
        raise ManifestError([_from_base(e, extends) for e in base.errors], source)
    if base.data.get("extends") is not None:
        raise ManifestError(
            [
                FieldError(
                    "extends",
                    base.data["extends"],
                    "a base manifest that extends nothing (only one level of extends is supported)",
                    origin=f"base manifest {extends}",
                )
            ],
            source,
        )
    base.data.pop("extends", None)
    warnings[:0] = [f"{w} (in base manifest {extends})" for w in base.warnings]
    return deep_merge(base.data, overlay)


def _from_base(error: FieldError, extends: str) -> FieldError:
    return FieldError(error.path, error.value, error.expected, error.problem, f"base manifest {extends}")


def _read(file: Path, path: str, shown: str, source: str | None) -> str:
    try:
        return file.read_text(encoding="utf-8")
    except FileNotFoundError:
        problem, expected = "no such file", f"an existing manifest file (looked for {file})"
    except IsADirectoryError:
        problem, expected = "a directory", f"a manifest file, not a directory ({file})"
    except (OSError, UnicodeDecodeError) as exc:
        problem, expected = "unreadable", f"a readable UTF-8 manifest file ({file}: {exc})"
    raise ManifestError([FieldError(path, shown, expected, problem=problem)], source)


def _manifest_in(directory: Path) -> tuple[Path, list[str]]:
    file = directory / MANIFEST_FILENAME
    former = directory / FORMER_MANIFEST_FILENAME
    if not file.is_file() and former.is_file():
        return former, [f"'{FORMER_MANIFEST_FILENAME}' is a former name; rename it to '{MANIFEST_FILENAME}'"]
    return file, []
