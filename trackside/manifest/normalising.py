"""Racetrack's other spellings of a manifest, turned into the canonical one before validation.

Racetrack (2.x, ``racetrack_client.manifest.Manifest``) still accepts these, so a Racetrack job
deploys here unchanged; each one used gives a deprecation warning:

- ``lang``: the former name of ``jobtype``;
- ``python``, ``golang``, ``docker``, ``wrapper_properties``: former places of ``jobtype_extra``
  (Racetrack 2.15 deprecated them in favour of ``jobtype_extra``).

Using both a name and its alias (or two aliases of ``jobtype_extra``) is an error, as in
Racetrack's schema. Racetrack's client also sends two fields that carry no meaning here:
``image_type`` (only ``docker`` exists; dropped) and ``deprecated_fields`` (an internal
attribute of its model that its serialiser includes; dropped).

A null value means "not set": it is dropped at the top level and inside ``git``,
``resources`` and ``jobtype_extra``, like Racetrack's client drops nulls before sending.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from trackside.manifest.errors import FieldError

__all__ = ["JOBTYPE_ALIASES", "JOBTYPE_EXTRA_ALIASES", "Normalised", "normalise"]

JOBTYPE_ALIASES = ("lang",)
JOBTYPE_EXTRA_ALIASES = ("python", "golang", "docker", "wrapper_properties")
_IMAGE_TYPES = ("docker",)
_NULLS_DROPPED_IN = ("git", "resources", "jobtype_extra")


@dataclass
class Normalised:
    data: dict[Any, Any]
    errors: list[FieldError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def normalise(data: Mapping[Any, Any], drop_nulls: bool = True) -> Normalised:
    """A copy of ``data`` with canonical field names, plus the errors and warnings that found.

    ``drop_nulls=False`` keeps nulls (an overlay's null must still remove its base's value).
    """
    result = Normalised(dict(data))
    _rename(result, "jobtype", JOBTYPE_ALIASES)
    _rename(result, "jobtype_extra", JOBTYPE_EXTRA_ALIASES)
    out = result.data
    if drop_nulls:
        result.data = out = {k: v for k, v in out.items() if v is not None}
        for key in _NULLS_DROPPED_IN:
            if isinstance(out.get(key), Mapping):
                out[key] = {k: v for k, v in out[key].items() if v is not None}

    if "image_type" in out:
        image_type = out.pop("image_type")
        if image_type not in _IMAGE_TYPES:
            result.errors.append(
                FieldError("image_type", image_type, "'docker' (Racetrack's only image type) or nothing")
            )
    if "deprecated_fields" in out:
        value = out.pop("deprecated_fields")
        if not isinstance(value, Mapping):
            result.errors.append(
                FieldError("deprecated_fields", value, "nothing (or the mapping Racetrack's client sends)")
            )
    return result


def _rename(result: Normalised, canonical: str, aliases: tuple[str, ...]) -> None:
    out = result.data
    for alias in aliases:  # an alias set to null just means "not set"
        if alias in out and out[alias] is None:
            del out[alias]
            out.setdefault(canonical, None)
    used = [alias for alias in aliases if alias in out]
    if not used:
        return
    if out.get(canonical) is None:
        # the first alias takes the canonical name; any further one conflicts with it
        alias = used.pop(0)
        out[canonical] = out.pop(alias)
        result.warnings.append(f"'{alias}' is deprecated (as in Racetrack); use '{canonical}' instead")
        given = alias
    else:
        given = canonical
    for alias in used:
        result.errors.append(
            FieldError(alias, out.pop(alias), f"no {alias} next to {given}; use {canonical} alone")
        )
