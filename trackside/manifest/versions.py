"""Semantic versions (SemVer 2.0.0): parsing, precedence and resolution of version requests.

A version request is what a caller asks for: an exact version (``1.2.3``, ``2.0.0-rc.1``),
``latest`` (the highest stable version), or a wildcard (``1.x``, ``1.2.x``, ``*``; ``*`` and
``X`` may be used for ``x``, e.g. ``2.6.*``). Wildcards resolve to the highest *stable* version
that matches, unless the pattern names a prerelease (``1.30.*-3.9-bullseye``), which then must
match exactly. Nothing matching resolves to ``None``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import total_ordering

__all__ = [
    "LATEST",
    "Version",
    "compare_versions",
    "is_stable",
    "is_valid_version",
    "is_version_pattern",
    "is_version_request",
    "latest",
    "matches",
    "parse_version",
    "resolve",
]

LATEST = "latest"

# https://semver.org/#is-there-a-suggested-regular-expression-regex-to-check-a-semver-string
_NUMBER = r"0|[1-9]\d*"
_PRERELEASE_ID = r"0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*"
_SEMVER = re.compile(
    rf"(?P<major>{_NUMBER})\.(?P<minor>{_NUMBER})\.(?P<patch>{_NUMBER})"
    rf"(?:-(?P<prerelease>(?:{_PRERELEASE_ID})(?:\.(?:{_PRERELEASE_ID}))*))?"
    r"(?:\+(?P<build>[0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?",
    re.ASCII,
)
_WILDCARD = "xX*"
_PATTERN_PART = re.compile(rf"{_NUMBER}|[{re.escape(_WILDCARD)}]", re.ASCII)
_PRERELEASE = re.compile(rf"(?:{_PRERELEASE_ID})(?:\.(?:{_PRERELEASE_ID}))*", re.ASCII)


@total_ordering
@dataclass(frozen=True, eq=False)
class Version:
    """A parsed SemVer 2.0.0 version; ``<`` and ``==`` follow SemVer precedence (build ignored)."""

    major: int
    minor: int
    patch: int
    prerelease: tuple[int | str, ...] = ()
    build: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> Version:
        """Parse ``text``; raise ``ValueError`` when it is not a SemVer 2.0.0 version."""
        match = _SEMVER.fullmatch(text) if isinstance(text, str) else None
        if match is None:
            raise ValueError(f"{text!r} is not a semantic version (MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD])")
        prerelease = match["prerelease"]
        build = match["build"]
        return cls(
            int(match["major"]),
            int(match["minor"]),
            int(match["patch"]),
            tuple(int(p) if p.isdigit() else p for p in prerelease.split(".")) if prerelease else (),
            tuple(build.split(".")) if build else (),
        )

    @property
    def is_stable(self) -> bool:
        """True for a release version (no prerelease part)."""
        return not self.prerelease

    def _key(self) -> tuple[int, int, int, int, tuple[tuple[int, int, str], ...]]:
        # a release sorts after all of its prereleases; numeric identifiers sort before
        # alphanumeric ones; a longer list of identifiers wins when the common part is equal
        ids = tuple((0, p, "") if isinstance(p, int) else (1, 0, p) for p in self.prerelease)
        return (self.major, self.minor, self.patch, 0 if self.prerelease else 1, ids)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._key() == other._key()

    def __lt__(self, other: Version) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._key() < other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __str__(self) -> str:
        text = f"{self.major}.{self.minor}.{self.patch}"
        if self.prerelease:
            text += "-" + ".".join(str(p) for p in self.prerelease)
        if self.build:
            text += "+" + ".".join(self.build)
        return text


def parse_version(text: str) -> Version:
    """Parse a SemVer 2.0.0 version; raise ``ValueError`` when ``text`` is not one."""
    return Version.parse(text)


def is_valid_version(text: object) -> bool:
    """True when ``text`` is a SemVer 2.0.0 version string."""
    return isinstance(text, str) and _SEMVER.fullmatch(text) is not None


def compare_versions(a: str | Version, b: str | Version) -> int:
    """-1, 0 or 1 as ``a`` has lower, equal or higher SemVer precedence than ``b``."""
    va, vb = _as_version(a), _as_version(b)
    return (va > vb) - (va < vb)


def is_stable(version: str | Version) -> bool:
    """True when the version has no prerelease part (``1.0.0``, not ``1.0.0-rc.1``)."""
    return _as_version(version).is_stable


@dataclass(frozen=True)
class _Pattern:
    numbers: tuple[int, ...]  # the fixed leading parts: () for "*", (1,) for "1.x", (1, 2) for "1.2.x"
    prerelease: str | None

    def matches(self, version: Version) -> bool:
        fixed = (version.major, version.minor, version.patch)[: len(self.numbers)]
        if fixed != self.numbers:
            return False
        if self.prerelease is None:
            return version.is_stable
        return ".".join(str(p) for p in version.prerelease) == self.prerelease


def _parse_pattern(text: str) -> _Pattern | None:
    """``1.x`` / ``1.2.x`` / ``1.x.x`` / ``*`` / ``2.6.*`` / ``1.30.*-3.9-bullseye``, or None."""
    if not isinstance(text, str):
        return None
    core, dash, prerelease = text.partition("-")
    if dash and _PRERELEASE.fullmatch(prerelease) is None:
        return None
    parts = core.split(".")
    if not 1 <= len(parts) <= 3 or not all(_PATTERN_PART.fullmatch(p) for p in parts):
        return None
    numbers: list[int] = []
    for part in parts:
        if part in _WILDCARD:
            break
        numbers.append(int(part))
    if len(numbers) == len(parts):
        return None  # no wildcard: "1.2" is not a pattern, "1.2.3" is an exact version
    if not all(p in _WILDCARD for p in parts[len(numbers) :]):
        return None  # "1.x.3": a number after a wildcard
    return _Pattern(tuple(numbers), prerelease if dash else None)


def is_version_pattern(text: object) -> bool:
    """True for a wildcard request such as ``1.x``, ``1.2.x``, ``2.6.*`` or ``*``."""
    return isinstance(text, str) and _parse_pattern(text) is not None


def is_version_request(text: object) -> bool:
    """True for anything ``resolve`` understands: an exact version, ``latest`` or a wildcard."""
    return text == LATEST or is_valid_version(text) or is_version_pattern(text)


def matches(pattern: str, version: str | Version) -> bool:
    """True when ``version`` satisfies the request ``pattern`` (exact, ``latest`` or wildcard).

    ``latest`` and wildcards without a prerelease match stable versions only.
    """
    try:
        candidate = _as_version(version)
    except ValueError:
        return False
    if pattern == LATEST:
        return candidate.is_stable
    if is_valid_version(pattern):
        return str(candidate) == pattern
    parsed = _parse_pattern(pattern)
    return parsed is not None and parsed.matches(candidate)


def latest(available: Iterable[str]) -> str | None:
    """The highest stable version among ``available`` (entries that are not SemVer are skipped)."""
    return _highest(v for v in available if is_valid_version(v) and Version.parse(v).is_stable)


def resolve(requested: str, available: Iterable[str]) -> str | None:
    """The entry of ``available`` that ``requested`` designates, or None.

    - an exact version designates itself (when it is available),
    - ``latest`` the highest stable version,
    - a wildcard the highest stable version it matches (or, for a pattern with a prerelease such as
      ``1.30.*-3.9-bullseye``, the highest version with exactly that prerelease).

    Entries of ``available`` that are not SemVer versions are ignored; so is a ``requested`` that
    is none of the above (the result is None).
    """
    candidates = [v for v in available if is_valid_version(v)]
    if requested == LATEST:
        return latest(candidates)
    if is_valid_version(requested):
        return requested if requested in candidates else None
    pattern = _parse_pattern(requested)
    if pattern is None:
        return None
    return _highest(v for v in candidates if pattern.matches(Version.parse(v)))


def _highest(versions: Iterable[str]) -> str | None:
    best: tuple[Version, str] | None = None
    for text in versions:
        version = Version.parse(text)
        if best is None or version > best[0]:
            best = (version, text)
    return None if best is None else best[1]


def _as_version(version: str | Version) -> Version:
    return version if isinstance(version, Version) else Version.parse(version)
