"""SemVer precedence and the resolution of version requests (exact, latest, wildcards)."""

from __future__ import annotations

import itertools

import pytest

from trackside.manifest import (
    Version,
    compare_versions,
    is_stable,
    is_valid_version,
    is_version_pattern,
    latest,
    matches,
    parse_version,
    resolve,
)

# https://semver.org/#spec-item-11, in increasing precedence
ORDERED = [
    "0.0.1",
    "0.9.0",
    "1.0.0-alpha",
    "1.0.0-alpha.1",
    "1.0.0-alpha.beta",
    "1.0.0-beta",
    "1.0.0-beta.2",
    "1.0.0-beta.11",
    "1.0.0-rc.1",
    "1.0.0",
    "1.0.1",
    "1.2.0",
    "1.10.0",
    "2.0.0",
    "10.0.0",
]


def test_precedence_follows_semver() -> None:
    versions = [parse_version(v) for v in ORDERED]
    assert sorted(reversed(versions)) == versions
    for lower, higher in itertools.pairwise(ORDERED):
        assert compare_versions(lower, higher) == -1
        assert compare_versions(higher, lower) == 1


def test_build_metadata_does_not_count_for_precedence() -> None:
    assert compare_versions("1.0.0+build.1", "1.0.0+build.2") == 0
    assert parse_version("1.0.0+x") == parse_version("1.0.0")
    assert str(parse_version("1.0.0-rc.1+build.5")) == "1.0.0-rc.1+build.5"


def test_parse() -> None:
    version = parse_version("1.2.3-rc.10+sha.abc")
    assert version == Version(1, 2, 3, ("rc", 10), ("sha", "abc"))
    assert (version.major, version.minor, version.patch) == (1, 2, 3)
    assert not version.is_stable


@pytest.mark.parametrize(
    "text",
    ["1", "1.2", "01.2.3", "1.2.3-", "1.2.3-01", "1.2.3+", "v1.2.3", "1.2.3.4", " 1.2.3", "latest", ""],
)
def test_not_versions(text: str) -> None:
    assert not is_valid_version(text)
    with pytest.raises(ValueError):
        parse_version(text)


def test_is_stable() -> None:
    assert is_stable("1.0.0") and is_stable("1.0.0+build")
    assert not is_stable("1.0.0-rc.1")


AVAILABLE = ["0.9.0", "1.0.0", "1.2.0", "1.2.5", "1.3.0-rc.1", "2.0.0-beta", "1.10.1", "not-a-version"]


@pytest.mark.parametrize(
    ("requested", "available", "expected"),
    [
        ("latest", AVAILABLE, "1.10.1"),  # 2.0.0-beta is a prerelease: not latest
        ("latest", ["1.0.0-rc.1"], None),
        ("latest", [], None),
        ("1.2.0", AVAILABLE, "1.2.0"),
        ("1.3.0-rc.1", AVAILABLE, "1.3.0-rc.1"),  # asked for exactly: a prerelease resolves
        ("1.2.1", AVAILABLE, None),
        ("1.x", AVAILABLE, "1.10.1"),
        ("1.2.x", AVAILABLE, "1.2.5"),
        ("1.3.x", AVAILABLE, None),  # only a prerelease there
        ("1.x.x", AVAILABLE, "1.10.1"),
        ("0.x", AVAILABLE, "0.9.0"),
        ("2.x", AVAILABLE, None),
        ("3.x", AVAILABLE, None),
        ("*", AVAILABLE, "1.10.1"),
        ("x", AVAILABLE, "1.10.1"),
        ("1.2.*", AVAILABLE, "1.2.5"),
        ("1.*", AVAILABLE, "1.10.1"),
        (
            "1.30.*-3.9-bullseye",
            ["1.30.1-3.9-bullseye", "1.30.9-3.8-bullseye", "1.31.0-3.9-bullseye"],
            "1.30.1-3.9-bullseye",
        ),
        ("1.x.3", AVAILABLE, None),  # not a pattern
        ("1.2", AVAILABLE, None),
        ("garbage", AVAILABLE, None),
    ],
)
def test_resolve(requested: str, available: list[str], expected: str | None) -> None:
    assert resolve(requested, available) == expected


def test_latest_ignores_prereleases_and_junk() -> None:
    assert latest(["1.0.0", "1.1.0-rc.1", "junk", "0.5.0"]) == "1.0.0"
    assert latest(["1.1.0-rc.1"]) is None


def test_resolve_returns_the_entry_as_given() -> None:
    assert resolve("latest", ["1.0.0+build.7"]) == "1.0.0+build.7"


def test_matches_and_patterns() -> None:
    assert matches("1.x", "1.4.2") and not matches("1.x", "2.0.0") and not matches("1.x", "1.5.0-rc.1")
    assert matches("latest", "3.0.0") and not matches("latest", "3.0.0-rc.1")
    assert matches("1.2.3", "1.2.3") and not matches("1.2.3", "1.2.4")
    assert not matches("1.x", "junk")
    assert is_version_pattern("1.x") and is_version_pattern("*") and is_version_pattern("2.6.*")
    assert (
        not is_version_pattern("1.2.3")
        and not is_version_pattern("latest")
        and not is_version_pattern("1.x.3")
    )
