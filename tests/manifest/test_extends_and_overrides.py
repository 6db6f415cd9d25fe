"""``extends`` (one-level overlay, deep merge) and ``-e key.path=yaml`` overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.manifest.examples import VALID, changed
from trackside.manifest import ManifestError, load_manifest, manifest_to_yaml, parse_manifest, parse_override
from trackside.manifest.merging import deep_merge

BASE = """\
name: overlays-base
owner_email: sample@example.com
lang: python3:latest

git:
  remote: https://github.com/TheRacetrack/racetrack
  directory: sample/overlays

python:
  entrypoint_path: 'entrypoint.py'
  entrypoint_class: 'JobEntrypoint'

resources:
  cpu_min: 10m
  cpu_max: 1000m

runtime_env:
  A: base
  B: base

public_endpoints: [/base]
"""


def _write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_racetracks_overlay_sample(tmp_path: Path) -> None:
    _write(tmp_path, "job-base.yaml", BASE)
    overlay = _write(
        tmp_path,
        "job.yaml",
        "extends: job-base.yaml\n\nname: overlays-dev\n\nreplicas: 2\nresources:\n  cpu_min: 100m\n  memory_min: 500M\n",
    )
    manifest = load_manifest(overlay)
    assert manifest.name == "overlays-dev"
    assert manifest.replicas == 2
    assert manifest.jobtype == "python3:latest"
    assert manifest.jobtype_extra == {"entrypoint_path": "entrypoint.py", "entrypoint_class": "JobEntrypoint"}
    assert manifest.resources is not None
    assert [str(q) for q in (manifest.resources.cpu_min, manifest.resources.cpu_max)] == ["100m", "1000m"]
    assert str(manifest.resources.memory_min) == "500M"
    assert manifest.extends is None
    assert any("base manifest job-base.yaml" in w for w in manifest.warnings)


def test_deep_merge_semantics(tmp_path: Path) -> None:
    _write(tmp_path, "bases/base.yaml", BASE)
    overlay = _write(
        tmp_path,
        "job.yaml",
        "extends: bases/base.yaml\n"
        "runtime_env: {B: overlay, C: overlay}\n"  # mappings merge key by key
        "public_endpoints: [/overlay]\n"  # lists are replaced
        "git: {branch: dev}\n"
        "resources: {cpu_max: null}\n",  # null removes the base's value
    )
    manifest = load_manifest(overlay)
    assert manifest.runtime_env == {"A": "base", "B": "overlay", "C": "overlay"}
    assert manifest.public_endpoints == ["/overlay"]
    assert (manifest.git.remote, manifest.git.branch) == ("https://github.com/TheRacetrack/racetrack", "dev")
    assert manifest.resources is not None and manifest.resources.cpu_max is None
    assert manifest.name == "overlays-base"


def test_deep_merge_leaves_its_inputs_alone() -> None:
    base = {"a": {"b": 1, "c": [1]}, "d": 1}
    overlay = {"a": {"c": [2]}, "d": None, "e": {"f": 1}}
    assert deep_merge(base, overlay) == {"a": {"b": 1, "c": [2]}, "e": {"f": 1}}
    assert base == {"a": {"b": 1, "c": [1]}, "d": 1}
    assert overlay == {"a": {"c": [2]}, "d": None, "e": {"f": 1}}


def test_extends_is_relative_to_the_manifest_file(tmp_path: Path) -> None:
    _write(tmp_path, "base.yaml", BASE)
    overlay = _write(tmp_path, "deploy/dev/job.yaml", "extends: ../../base.yaml\nname: dev\n")
    assert load_manifest(overlay).name == "dev"
    assert parse_manifest("extends: base.yaml\nname: dev2\n", base_dir=tmp_path).name == "dev2"


def test_nested_extends_is_refused(tmp_path: Path) -> None:
    _write(tmp_path, "root.yaml", BASE)
    _write(tmp_path, "middle.yaml", "extends: root.yaml\nreplicas: 3\n")
    overlay = _write(tmp_path, "job.yaml", "extends: middle.yaml\nname: top\n")
    with pytest.raises(ManifestError) as caught:
        load_manifest(overlay)
    [error] = caught.value.errors
    assert error.path == "extends" and error.value == "root.yaml"
    assert "only one level" in error.expected
    assert error.origin == "base manifest middle.yaml"


def test_missing_base_names_the_path(tmp_path: Path) -> None:
    overlay = _write(tmp_path, "job.yaml", "extends: base/job.yaml\nname: top\n")
    with pytest.raises(ManifestError) as caught:
        load_manifest(overlay)
    [error] = caught.value.errors
    assert error.path == "extends" and error.value == "base/job.yaml" and error.problem == "no such file"
    assert str(tmp_path / "base" / "job.yaml") in error.expected
    assert str(overlay) in str(caught.value)


def test_base_errors_say_where_they_come_from(tmp_path: Path) -> None:
    _write(tmp_path, "base.yaml", "name: [broken\n")
    with pytest.raises(ManifestError) as caught:
        parse_manifest("extends: base.yaml\n", base_dir=tmp_path)
    assert caught.value.errors[0].origin == "base manifest base.yaml"
    _write(tmp_path, "list.yaml", "- a\n- b\n")
    with pytest.raises(ManifestError) as caught:
        parse_manifest("extends: list.yaml\n", base_dir=tmp_path)
    assert "mapping" in caught.value.errors[0].expected


def test_base_fields_are_validated_after_merging(tmp_path: Path) -> None:
    _write(tmp_path, "base.yaml", BASE.replace("cpu_max: 1000m", "cpu_max: 5m"))
    with pytest.raises(ManifestError) as caught:
        parse_manifest("extends: base.yaml\nname: Bad_Name\n", base_dir=tmp_path)
    assert caught.value.paths == ["name", "resources.cpu_min"]


def test_extends_needs_a_directory_and_a_relative_path(tmp_path: Path) -> None:
    with pytest.raises(ManifestError) as caught:
        parse_manifest(changed({"extends": "base.yaml"}))
    assert caught.value.paths == ["extends"]
    assert "without the manifest's directory" in caught.value.errors[0].expected
    with pytest.raises(ManifestError) as caught:
        parse_manifest(changed({"extends": str(tmp_path / "base.yaml")}), base_dir=tmp_path)
    assert "not an absolute path" in caught.value.errors[0].expected


# ---- overrides ----


def test_overrides_set_fields_with_yaml_types() -> None:
    manifest = parse_manifest(
        VALID,
        overrides=[
            "replicas=3",
            "git.branch=feature/x",
            "version='2.0.0'",
            "public_endpoints=[/a, /b]",
            "jobtype_extra.max_concurrency=4",
            "labels.release='007'",
            "secret_runtime_env_file=.env.local",
        ],
    )
    assert manifest.replicas == 3
    assert manifest.git.branch == "feature/x"
    assert manifest.version == "2.0.0"
    assert manifest.public_endpoints == ["/a", "/b"]
    assert manifest.python3 is not None and manifest.python3.max_concurrency == 4
    assert manifest.labels["release"] == "007"
    assert manifest.secret_runtime_env_file == ".env.local"


def test_overrides_create_nested_mappings() -> None:
    data = changed({"resources": None, "runtime_env": None})
    manifest = parse_manifest(data, overrides=["resources.memory_max=1Gi", "runtime_env.LOG_LEVEL=debug"])
    assert manifest.resources is not None and str(manifest.resources.memory_max) == "1Gi"
    assert manifest.runtime_env == {"LOG_LEVEL": "debug"}


def test_an_empty_value_unsets_a_field() -> None:
    manifest = parse_manifest(VALID, overrides=["git.branch=", "resources=", "labels.team="])
    assert manifest.git.branch is None and manifest.resources is None and manifest.labels == {}


def test_overrides_apply_after_extends_and_before_validation(tmp_path: Path) -> None:
    _write(tmp_path, "base.yaml", BASE)
    overlay = _write(tmp_path, "job.yaml", "extends: base.yaml\nreplicas: 2\n")
    manifest = load_manifest(overlay, overrides=["replicas=5", "name=from-cli"])
    assert (manifest.replicas, manifest.name) == (5, "from-cli")
    # an override can repair what would otherwise be invalid
    assert parse_manifest(changed({"replicas": 0}), overrides=["replicas=1"]).replicas == 1


def test_overrides_values_are_validated_like_the_file() -> None:
    with pytest.raises(ManifestError) as caught:
        parse_manifest(VALID, overrides=["runtime_env.PORT=8080", "replicas=zero"])
    assert caught.value.paths == ["runtime_env.PORT", "replicas"]
    assert "quote" in caught.value.errors[0].expected


def test_bad_override_syntax_names_the_override() -> None:
    with pytest.raises(ManifestError) as caught:
        parse_manifest(
            VALID, overrides=["replicas", "git.remote=[unclosed", ".name=x", "name.first=a", "version=1.0"]
        )
    by_origin = {e.origin: e for e in caught.value.errors}
    assert by_origin["-e replicas"].problem == "malformed override"
    assert "KEY.PATH=VALUE" in by_origin["-e replicas"].expected
    assert by_origin["-e git.remote=[unclosed"].problem == "unparsable value"
    assert by_origin["-e git.remote=[unclosed"].path == "git.remote"
    assert by_origin["-e .name=x"].problem == "malformed override key"
    assert "name is a string" in by_origin["-e name.first=a"].expected
    # the good one was applied and validated: 1.0 is a YAML number, not a version
    version_error = next(e for e in caught.value.errors if e.path == "version")
    assert version_error.value == 1.0
    assert "[from -e replicas]" in str(caught.value)


def test_parse_override() -> None:
    override = parse_override("jobtype_extra.max_concurrency = 2")
    assert (override.path, override.value) == (("jobtype_extra", "max_concurrency"), 2)
    assert parse_override("labels.note=a=b").value == "a=b"
    assert parse_override("x={a: 1}").value == {"a": 1}


def test_load_manifest_round_trips_overridden_yaml(tmp_path: Path) -> None:
    path = _write(tmp_path, "job.yaml", manifest_to_yaml(parse_manifest(VALID)))
    assert load_manifest(path) == parse_manifest(VALID)
    assert load_manifest(str(path), overrides="replicas=4").replicas == 4


def test_extends_cannot_be_overridden() -> None:
    with pytest.raises(ManifestError) as caught:
        parse_manifest(VALID, overrides=["extends=base.yaml"])
    [error] = caught.value.errors
    assert (error.path, error.problem, error.origin) == ("extends", "cannot override", "-e extends=base.yaml")
