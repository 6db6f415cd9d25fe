"""Valid manifests: Racetrack's samples parse unchanged, defaults, aliases, dumping and the schema."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from tests.conftest import SAMPLE_JOBS
from tests.manifest.examples import RACETRACK_SAMPLES, RACETRACK_SCHEMA_EXAMPLE, VALID, changed
from trackside.manifest import (
    Manifest,
    ManifestError,
    Python3Extra,
    load_manifest,
    manifest_json_schema,
    manifest_to_dict,
    manifest_to_yaml,
    parse_manifest,
)
from trackside.manifest.yaml_text import load_yaml


@pytest.mark.parametrize("sample", sorted(RACETRACK_SAMPLES))
def test_racetrack_samples_parse_unchanged(sample: str) -> None:
    text = RACETRACK_SAMPLES[sample]
    manifest = parse_manifest(text)
    source = load_yaml(text)
    assert manifest.name == source["name"]
    assert manifest.jobtype == source.get("jobtype", source.get("lang"))
    assert manifest.jobtype_extra == source.get("jobtype_extra", source.get("python"))
    assert manifest.git.remote == source["git"]["remote"]
    assert manifest.python3 is not None
    assert manifest.python3.entrypoint_path == manifest.jobtype_extra["entrypoint_path"]


def test_racetrack_deprecated_spelling_gives_warnings() -> None:
    manifest = parse_manifest(RACETRACK_SAMPLES["python-static-endpoints"])
    assert manifest.jobtype == "python3:latest"
    assert manifest.jobtype_extra == {"entrypoint_path": "entrypoint.py", "entrypoint_class": "JobEntrypoint"}
    assert manifest.warnings == [
        "'lang' is deprecated (as in Racetrack); use 'jobtype' instead",
        "'python' is deprecated (as in Racetrack); use 'jobtype_extra' instead",
    ]
    assert "lang" not in manifest_to_dict(manifest)
    assert parse_manifest(RACETRACK_SAMPLES["python-class"]).warnings == []


@pytest.mark.parametrize("alias", ["golang", "docker", "wrapper_properties"])
def test_other_jobtype_extra_aliases(alias: str) -> None:
    data = changed({"jobtype": "golang:latest"})
    data[alias] = data.pop("jobtype_extra")
    manifest = parse_manifest(data)
    assert manifest.jobtype_extra == VALID["jobtype_extra"]
    assert alias in manifest.warnings[0]


def test_racetrack_schema_example_parses_with_its_base(tmp_path: Path) -> None:
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "job.yaml").write_text("{}\n")
    (tmp_path / "job.yaml").write_text(RACETRACK_SCHEMA_EXAMPLE)
    manifest = load_manifest(tmp_path / "job.yaml")
    assert manifest.version == "1.2.3-alpha"
    assert manifest.extends is None  # resolved
    assert manifest.resources is not None
    assert manifest.resources.memory_max is not None and manifest.resources.memory_max.bytes == 2**30
    assert manifest.resources.cpu_min is not None and manifest.resources.cpu_min.cores == Decimal("0.01")
    assert manifest.secret_runtime_env_file == ".secrets/runtime.env'"
    assert manifest.public_endpoints == ["/api/v1/perform", "/api/v1/webview"]


def test_what_racetracks_client_sends_is_accepted() -> None:
    # racetrack_client serialises its model: image_type and deprecated_fields come along
    payload = changed(
        {
            "image_type": "docker",
            "deprecated_fields": {"lang": "`jobtype:`", "python": "`jobtype_extra:`"},
            "git.directory": ".",
        }
    )
    manifest = parse_manifest(payload)
    assert manifest.warnings == []
    assert "image_type" not in manifest_to_dict(manifest)


@pytest.mark.parametrize(
    "job_dir", sorted(p.parent for p in SAMPLE_JOBS.glob("*/job.yaml")), ids=lambda p: p.name
)
def test_our_sample_jobs_are_valid(job_dir: Path) -> None:
    manifest = load_manifest(job_dir)
    assert manifest.name == job_dir.name
    assert manifest.python3 is not None


def test_defaults() -> None:
    manifest = parse_manifest(
        {
            "name": "minimal",
            "owner_email": "a@b.io",
            "jobtype": "python3:latest",
            "git": {"remote": "https://example.com/r.git"},
            "jobtype_extra": {"entrypoint_path": "job.py"},
        }
    )
    assert manifest.version == "0.0.1"
    assert manifest.replicas == 1
    assert manifest.git.branch is None
    assert manifest.git.directory == "."
    assert manifest.extends is None
    assert manifest.build_env == {} and manifest.runtime_env == {} and manifest.labels == {}
    assert manifest.public_endpoints == [] and manifest.system_dependencies == []
    assert manifest.resources is None and manifest.infrastructure_target is None
    assert manifest.secret_build_env_file is None and manifest.secret_runtime_env_file is None
    assert manifest.python3 == Python3Extra(entrypoint_path="job.py")
    assert manifest.python3.max_concurrency is None and manifest.python3.check_requirements is None
    assert manifest.jobtype_name == "python3" and manifest.jobtype_version == "latest"


def test_nulls_mean_not_set() -> None:
    manifest = parse_manifest(
        changed(
            {
                "runtime_env": None,
                "resources": None,
                "git.branch": None,
                "jobtype_extra.entrypoint_class": None,
            }
        )
    )
    assert manifest.runtime_env == {} and manifest.resources is None and manifest.git.branch is None
    assert "entrypoint_class" not in manifest.jobtype_extra


def test_python3_settings_are_typed() -> None:
    manifest = parse_manifest(
        changed(
            {
                "jobtype_extra": {
                    "entrypoint_path": "src/job.py",
                    "requirements_path": "requirements.txt",
                    "max_concurrency": "2",  # Racetrack's python3 job type reads digit strings too
                    "max_concurrency_queue": 0,
                    "home_page": "/api/v1/webview",
                    "python_version": "3.12",
                    "check_requirements": True,
                }
            }
        )
    )
    python3 = manifest.python3
    assert python3 is not None
    assert python3.max_concurrency == 2 and python3.max_concurrency_queue == 0
    assert python3.python_version == "3.12" and python3.check_requirements is True
    assert python3.home_page == "/api/v1/webview"


@pytest.mark.parametrize(
    "jobtype",
    [
        "python3:latest",
        "python3:2.4.0",
        "python3:2.x",
        "python3:2.6.*",
        "python3:*",
        "python3:1.30.*-3.9-bullseye",
    ],
)
def test_jobtype_versions(jobtype: str) -> None:
    assert parse_manifest(changed({"jobtype": jobtype})).jobtype_version == jobtype.split(":", 1)[1]


@pytest.mark.parametrize(
    "value",
    [
        "1.0.0",
        "0.0.1",
        "1.2.3-alpha",
        "1.0.0-rc.1+build.5",
        "10.20.30",
        "1.0.0-0.3.7",
        "1.0.0+20130313144700",
    ],
)
def test_semver_job_versions(value: str) -> None:
    assert parse_manifest(changed({"version": value})).version == value


def test_values_that_are_accepted() -> None:
    manifest = parse_manifest(
        changed(
            {
                "name": "a",
                "git.remote": "file:///srv/git/jobs.git",
                "git.branch": "feature/new-model",
                "labels": {"generation": 2, "stable": True, "ratio": 0.5},
                "system_dependencies": ["libgomp1", "g++", "python3.11-dev", "curl=7.88.1-10+deb12u5"],
                "resources": {"cpu_min": 0.25, "cpu_max": 2, "memory_min": "500M", "memory_max": "2e9"},
            }
        )
    )
    assert manifest.labels == {"generation": "2", "stable": "true", "ratio": "0.5"}
    assert manifest.resources is not None
    assert manifest.resources.cpu_min is not None and manifest.resources.cpu_min.text == "0.25"
    assert manifest.resources.memory_max is not None and manifest.resources.memory_max.bytes == 2_000_000_000


def test_round_trip_through_dict_and_yaml() -> None:
    manifest = parse_manifest(VALID)
    as_dict = manifest_to_dict(manifest)
    assert as_dict == VALID  # nothing added, nothing lost, the quantities as written
    assert parse_manifest(as_dict) == manifest
    text = manifest_to_yaml(manifest)
    assert parse_manifest(text) == manifest
    assert text.splitlines()[:3] == [
        "name: adder",
        "owner_email: owner@example.com",
        "jobtype: python3:latest",
    ]
    json.dumps(as_dict)


def test_equality_ignores_warnings() -> None:
    old = parse_manifest(RACETRACK_SAMPLES["python-static-endpoints"])
    new = parse_manifest(manifest_to_yaml(old))
    assert old.warnings and not new.warnings
    assert old == new
    assert old != parse_manifest(changed({"replicas": 3}))


def test_json_schema_is_usable_by_editors() -> None:
    schema = manifest_json_schema()
    json.dumps(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["additionalProperties"] is False
    assert set(Manifest.model_fields) <= set(schema["properties"])
    assert schema["properties"]["lang"]["deprecated"] is True
    assert {"name", "owner_email", "git"} <= set(schema["required"])
    python3 = schema["$defs"]["Python3Extra"]
    assert python3["required"] == ["entrypoint_path"] and python3["additionalProperties"] is False
    assert "entrypoint_path" in schema["$defs"]["Python3Extra"]["properties"]
    assert Manifest.model_json_schema()["properties"]["replicas"]["minimum"] == 1


def test_yaml_errors_are_manifest_errors() -> None:
    with pytest.raises(ManifestError) as caught:
        parse_manifest("name: [unclosed\n")
    assert "line 2" in str(caught.value) or "line 1" in str(caught.value)
    with pytest.raises(ManifestError) as caught:
        parse_manifest("name: a\nname: b\n")
    assert "duplicate key 'name'" in str(caught.value)


def test_missing_manifest_file(tmp_path: Path) -> None:
    with pytest.raises(ManifestError) as caught:
        load_manifest(tmp_path / "nope.yaml")
    assert caught.value.errors[0].problem == "no such file"
    with pytest.raises(ManifestError) as caught:
        load_manifest(tmp_path)  # a directory without job.yaml
    assert "job.yaml" in str(caught.value)


def test_former_manifest_filename_is_read_with_a_warning(tmp_path: Path) -> None:
    (tmp_path / "fatman.yaml").write_text(manifest_to_yaml(parse_manifest(VALID)))
    manifest = load_manifest(tmp_path)
    assert "fatman.yaml" in manifest.warnings[0]
