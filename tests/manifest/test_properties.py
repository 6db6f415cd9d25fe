"""Property tests: whatever the input, the only failure is a ManifestError; valid ones round-trip."""

from __future__ import annotations

import copy
import string
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.manifest.examples import VALID
from trackside.manifest import (
    RESERVED_RUNTIME_ENV,
    Manifest,
    ManifestError,
    manifest_to_dict,
    manifest_to_yaml,
    parse_manifest,
)

SETTINGS = settings(
    max_examples=int(__import__("os").environ.get("MANIFEST_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(["", "/", "0", "-1", "1.0", "python3:latest", "1Gi", "100m", "https://x/y", "a@b.cd"])
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)
FIELD_NAMES = [
    *Manifest.model_fields,
    "lang",
    "python",
    "golang",
    "docker",
    "wrapper_properties",
    "image_type",
    "deprecated_fields",
]
keys = st.sampled_from(FIELD_NAMES) | st.text(max_size=8)


def _paths(data: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [prefix] if prefix else []
    if isinstance(data, dict):
        for key, value in data.items():
            found += _paths(value, (*prefix, key))
    return found


EXTRA_PATHS = [
    ("jobtype_extra", "max_concurrency"),
    ("jobtype_extra", "max_concurrency_queue"),
    ("jobtype_extra", "python_version"),
    ("jobtype_extra", "home_page"),
    ("jobtype_extra", "check_requirements"),
    ("runtime_env", "PUB_URL"),
    ("extends",),
    ("lang",),
    ("python",),
    ("image_type",),
    ("unknown",),
    ("git", "unknown"),
]
PATHS = _paths(VALID) + EXTRA_PATHS


@st.composite
def mutated_manifests(draw: st.DrawFn) -> dict[str, Any]:
    data = copy.deepcopy(VALID)
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(PATHS))
        target: Any = data
        for part in path[:-1]:
            if not isinstance(target, dict):
                break
            target = target.setdefault(part, {})
        if not isinstance(target, dict):
            continue
        if draw(st.booleans()):
            target.pop(path[-1], None)
        else:
            target[path[-1]] = draw(json_values)
    return data


def _check(data: Any, overrides: list[str] | None = None) -> None:
    try:
        manifest = parse_manifest(data, overrides=overrides or ())
    except ManifestError as exc:
        assert exc.errors
        assert all(isinstance(e.path, str) and e.expected for e in exc.errors)
        assert str(exc).count("\n") == len(exc.errors)
        return
    _assert_round_trips(manifest)


def _assert_round_trips(manifest: Manifest) -> None:
    as_dict = manifest_to_dict(manifest)
    assert parse_manifest(as_dict) == manifest
    assert Manifest.model_validate(as_dict) == manifest
    assert parse_manifest(manifest_to_yaml(manifest)) == manifest


@SETTINGS
@given(st.dictionaries(keys, json_values, max_size=10) | json_values)
def test_arbitrary_data_fails_only_with_manifest_error(data: Any) -> None:
    _check(data)


@SETTINGS
@given(mutated_manifests())
def test_mutations_of_a_valid_manifest_fail_only_with_manifest_error(data: dict[str, Any]) -> None:
    _check(data)


@SETTINGS
@given(st.text(max_size=200))
def test_arbitrary_yaml_text_fails_only_with_manifest_error(text: str) -> None:
    _check(text)


@SETTINGS
@given(
    st.lists(
        st.text(max_size=30)
        | st.builds(
            lambda p, v: f"{p}={v}", st.sampled_from([".".join(p) for p in PATHS]), st.text(max_size=15)
        ),
        max_size=4,
    )
)
def test_arbitrary_overrides_fail_only_with_manifest_error(overrides: list[str]) -> None:
    _check(VALID, overrides)


# ---- generated valid manifests ----

dns_labels = st.from_regex(r"\A[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?\Z")
env_names = st.from_regex(r"\A[A-Za-z_][A-Za-z0-9_]{0,10}\Z").filter(lambda n: n not in RESERVED_RUNTIME_ENV)
# text a manifest can carry: no NUL, no lone surrogates (see trackside/manifest/limits.py)
_carried = st.characters(exclude_categories=["Cs"], exclude_characters="\x00")


def carried_text(min_size: int = 0, max_size: int = 20) -> st.SearchStrategy[str]:
    return st.text(alphabet=_carried, min_size=min_size, max_size=max_size)


env_values = carried_text()
semvers = st.builds(
    lambda a, b, c, pre: f"{a}.{b}.{c}" + (f"-{pre}" if pre else ""),
    st.integers(0, 99),
    st.integers(0, 99),
    st.integers(0, 99),
    st.sampled_from(["", "alpha", "rc.1", "beta.2.x-y"]),
)
quantities_cpu = st.sampled_from(["10m", "100m", "250m", "0.5", "1", "2", "1500m", "4"])
quantities_memory = st.sampled_from(["64Mi", "128M", "256Mi", "500M", "1G", "1Gi", "2Gi", "4e9"])


@st.composite
def valid_manifests(draw: st.DrawFn) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": draw(dns_labels),
        "owner_email": draw(st.from_regex(r"\A[a-z0-9._+-]{1,10}@[a-z0-9-]{1,10}\.[a-z]{2,6}\Z")),
        "jobtype": draw(st.sampled_from(["python3:latest", "python3:2.4.0", "python3:2.x", "python3:*"])),
        "git": {"remote": "https://github.com/example/" + draw(dns_labels)},
        "jobtype_extra": {
            "entrypoint_path": draw(st.sampled_from(["entrypoint.py", "src/job.py", "a b/c.py"]))
        },
    }
    if draw(st.booleans()):
        data["version"] = draw(semvers)
    if draw(st.booleans()):
        data["git"]["branch"] = draw(st.sampled_from(["main", "feature/x", "release-1.2", "v1.0"]))
        data["git"]["directory"] = draw(st.sampled_from([".", "jobs/adder", "a/../b"]))
    if draw(st.booleans()):
        data["jobtype_extra"].update(
            {
                "max_concurrency": draw(st.integers(1, 100)),
                "max_concurrency_queue": draw(st.integers(0, 100)),
                "python_version": draw(st.sampled_from(["3.11", "3.12", "3.10.4"])),
                "check_requirements": draw(st.booleans()),
                "home_page": "/api/v1/webview",
            }
        )
    if draw(st.booleans()):
        data["runtime_env"] = draw(st.dictionaries(env_names, env_values, max_size=4))
        data["build_env"] = draw(st.dictionaries(env_names, env_values, max_size=4))
    if draw(st.booleans()):
        data["labels"] = draw(
            st.dictionaries(
                carried_text(1, 10),
                carried_text(),
                max_size=4,
            )
        )
    if draw(st.booleans()):
        cpu = sorted(
            draw(st.lists(quantities_cpu, min_size=2, max_size=2)),
            key=lambda q: float(q[:-1]) / 1000 if q.endswith("m") else float(q),
        )
        memory = draw(st.lists(quantities_memory, min_size=2, max_size=2))
        memory.sort(key=lambda q: _memory_value(q))
        data["resources"] = {
            "cpu_min": cpu[0],
            "cpu_max": cpu[1],
            "memory_min": memory[0],
            "memory_max": memory[1],
        }
    if draw(st.booleans()):
        data["public_endpoints"] = draw(
            st.lists(st.sampled_from(["/api/v1/perform", "/api/v1/webview", "/x"]), max_size=3)
        )
        data["system_dependencies"] = draw(st.lists(st.sampled_from(["libgomp1", "g++", "curl"]), max_size=3))
        data["replicas"] = draw(st.integers(1, 20))
        data["infrastructure_target"] = draw(st.sampled_from(["kubernetes", "docker"]))
    return data


def _memory_value(text: str) -> float:
    units = {"Mi": 2**20, "Gi": 2**30, "M": 10**6, "G": 10**9}
    for suffix, factor in units.items():
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


@SETTINGS
@given(valid_manifests())
def test_valid_manifests_parse_and_round_trip(data: dict[str, Any]) -> None:
    manifest = parse_manifest(data)
    _assert_round_trips(manifest)
    assert manifest_to_dict(manifest)["name"] == data["name"]
    assert set(string.ascii_lowercase) >= set(manifest.name) - set(string.digits + "-")
