"""Invalid manifests: every error names its field path, the bad value and what was expected."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from tests.manifest.examples import DELETE, VALID, changed
from trackside.manifest import FieldError, Manifest, ManifestError, parse_manifest

# (case id, manifest data, {field path: words the "expected" part must contain})
CASES: list[tuple[str, Any, dict[str, str]]] = [
    ("name-underscore", changed({"name": "My_Job"}), {"name": "DNS label"}),
    ("name-too-long", changed({"name": "a" * 64}), {"name": "at most 63 characters"}),
    ("name-trailing-dash", changed({"name": "adder-"}), {"name": "ending with a letter or digit"}),
    ("name-number", changed({"name": 42}), {"name": "DNS label"}),
    ("email", changed({"owner_email": "nobody"}), {"owner_email": "email address"}),
    ("jobtype-no-version", changed({"jobtype": "python3"}), {"jobtype": "NAME:VERSION"}),
    ("jobtype-bad-version", changed({"jobtype": "python3:lastest"}), {"jobtype": "python3:latest"}),
    ("version-two-parts", changed({"version": "1.0"}), {"version": "semantic version"}),
    ("version-float", changed({"version": 1.5}), {"version": "quote it in YAML"}),
    ("version-leading-zero", changed({"version": "01.2.3"}), {"version": "SemVer 2.0"}),
    ("git-ssh-remote", changed({"git.remote": "git@github.com:x/y.git"}), {"git.remote": "https://"}),
    ("git-http-remote", changed({"git.remote": "http://example.com/x.git"}), {"git.remote": "https://"}),
    ("git-remote-missing", changed({"git.remote": DELETE}), {"git.remote": "https:// URL"}),
    ("git-unknown-key", changed({"git.url": "https://x/y"}), {"git.url": "remote, branch, directory"}),
    ("git-branch-option", changed({"git.branch": "--upload-pack=evil"}), {"git.branch": "branch name"}),
    ("git-branch-dots", changed({"git.branch": "a..b"}), {"git.branch": "'..'"}),
    ("git-directory-escapes", changed({"git.directory": "../other"}), {"git.directory": "inside"}),
    ("git-not-mapping", changed({"git": "https://x/y"}), {"git": "a mapping"}),
    ("unknown-top-level", changed({"replica": 3}), {"replica": "replicas"}),
    (
        "max-concurrency-zero",
        changed({"jobtype_extra.max_concurrency": 0}),
        {"jobtype_extra.max_concurrency": ">= 1"},
    ),
    (
        "max-concurrency-queue-negative",
        changed({"jobtype_extra.max_concurrency_queue": -1}),
        {"jobtype_extra.max_concurrency_queue": ">= 0"},
    ),
    (
        "max-concurrency-bool",
        changed({"jobtype_extra.max_concurrency": True}),
        {"jobtype_extra.max_concurrency": "integer"},
    ),
    (
        "home-page-relative",
        changed({"jobtype_extra.home_page": "webview"}),
        {"jobtype_extra.home_page": "'/'"},
    ),
    (
        "python-version-float",
        changed({"jobtype_extra.python_version": 3.1}),
        {"jobtype_extra.python_version": "quote it"},
    ),
    (
        "check-requirements-not-bool",
        changed({"jobtype_extra.check_requirements": "maybe"}),
        {"jobtype_extra.check_requirements": "true or false"},
    ),
    (
        "python3-unknown-key",
        changed({"jobtype_extra.entrypoint": "x.py"}),
        {"jobtype_extra.entrypoint": "entrypoint_path"},
    ),
    (
        "python3-entrypoint-missing",
        changed({"jobtype_extra": {"requirements_path": "requirements.txt"}}),
        {"jobtype_extra.entrypoint_path": "required for python3"},
    ),
    (
        "python3-entrypoint-absolute",
        changed({"jobtype_extra.entrypoint_path": "/src/entrypoint.py"}),
        {"jobtype_extra.entrypoint_path": "relative path"},
    ),
    (
        "python3-entrypoint-class",
        changed({"jobtype_extra.entrypoint_class": "class"}),
        {"jobtype_extra.entrypoint_class": "Python class name"},
    ),
    ("python3-no-extra", changed({"jobtype_extra": DELETE}), {"jobtype_extra.entrypoint_path": "required"}),
    ("jobtype-extra-not-mapping", changed({"jobtype_extra": ["x"]}), {"jobtype_extra": "a mapping"}),
    (
        "runtime-env-reserved",
        changed({"runtime_env.PUB_URL": "http://x"}),
        {"runtime_env.PUB_URL": "PUB_URL"},
    ),
    (
        "runtime-env-all-reserved",
        changed(
            {
                "runtime_env": {
                    name: "x"
                    for name in (
                        "PUB_URL",
                        "JOB_NAME",
                        "JOB_VERSION",
                        "JOB_MANIFEST_YAML",
                        "AUTH_TOKEN",
                        "JOB_DEPLOYMENT_TIMESTAMP",
                        "REQUEST_TRACING_HEADER",
                    )
                }
            }
        ),
        {
            "runtime_env.PUB_URL": "Trackside sets",
            "runtime_env.JOB_NAME": "Trackside sets",
            "runtime_env.JOB_VERSION": "Trackside sets",
            "runtime_env.JOB_MANIFEST_YAML": "Trackside sets",
            "runtime_env.AUTH_TOKEN": "Trackside sets",
            "runtime_env.JOB_DEPLOYMENT_TIMESTAMP": "Trackside sets",
            "runtime_env.REQUEST_TRACING_HEADER": "Trackside sets",
        },
    ),
    ("runtime-env-number", changed({"runtime_env.PORT": 8080}), {"runtime_env.PORT": "quote numbers"}),
    (
        "runtime-env-bad-name",
        changed({"runtime_env.MY-VAR": "x"}),
        {"runtime_env.MY-VAR": "environment variable name"},
    ),
    ("build-env-digit-name", changed({"build_env.1X": "x"}), {"build_env.1X": "not starting with a digit"}),
    ("build-env-not-mapping", changed({"build_env": ["A=1"]}), {"build_env": "a mapping"}),
    (
        "public-endpoint-no-slash",
        changed({"public_endpoints": ["/api/v1/perform", "api/v1/webview"]}),
        {"public_endpoints[1]": "starting with '/'"},
    ),
    ("public-endpoint-dotdot", changed({"public_endpoints": ["/a/../b"]}), {"public_endpoints[0]": "'..'"}),
    ("public-endpoints-string", changed({"public_endpoints": "/api"}), {"public_endpoints": "a list"}),
    ("replicas-zero", changed({"replicas": 0}), {"replicas": "integer >= 1"}),
    ("replicas-bool", changed({"replicas": True}), {"replicas": "integer >= 1"}),
    ("replicas-fraction", changed({"replicas": 1.5}), {"replicas": "integer >= 1"}),
    (
        "memory-min-above-max",
        changed({"resources.memory_min": "2Gi", "resources.memory_max": "1Gi"}),
        {"resources.memory_min": "at most memory_max (1Gi)"},
    ),
    (
        "cpu-min-above-max",
        changed({"resources.cpu_min": "1500m", "resources.cpu_max": 1}),
        {"resources.cpu_min": "at most cpu_max (1)"},
    ),
    ("cpu-garbage", changed({"resources.cpu_max": "lots"}), {"resources.cpu_max": "CPU quantity"}),
    ("cpu-negative", changed({"resources.cpu_min": "-1"}), {"resources.cpu_min": "positive"}),
    (
        "memory-fractional-bytes",
        changed({"resources.memory_max": "100m"}),
        {"resources.memory_max": "whole bytes"},
    ),
    (
        "resources-unknown",
        changed({"resources.gpu": 1}),
        {"resources.gpu": "memory_min, memory_max, cpu_min, cpu_max"},
    ),
    ("label-list", changed({"labels.tags": ["a", "b"]}), {"labels.tags": "a string"}),
    (
        "system-dependency-option",
        changed({"system_dependencies": ["-y"]}),
        {"system_dependencies[0]": "package name"},
    ),
    (
        "infrastructure-target-empty",
        changed({"infrastructure_target": ""}),
        {"infrastructure_target": "target name"},
    ),
    (
        "secret-file-blank",
        changed({"secret_runtime_env_file": " "}),
        {"secret_runtime_env_file": "path to a file"},
    ),
    ("extends-absolute", changed({"extends": "/etc/base.yaml"}), {"extends": "relative path"}),
    (
        "lang-and-jobtype",
        changed({"lang": "python3:latest"}),
        {"lang": "use jobtype alone"},
    ),
    (
        "python-and-jobtype-extra",
        changed({"python": {"entrypoint_path": "x.py"}}),
        {"python": "use jobtype_extra alone"},
    ),
    ("image-type-other", changed({"image_type": "packer"}), {"image_type": "'docker'"}),
    ("not-a-mapping", ["name", "adder"], {"": "mapping of manifest fields"}),
    (
        "empty",
        {},
        {
            "name": "DNS label",
            "owner_email": "email address",
            "jobtype": "NAME:VERSION",
            "git": "a mapping with remote",
        },
    ),
    (
        "many-at-once",
        changed(
            {
                "name": "Bad Name",
                "version": "latest",
                "git.remote": "ssh://git@x/y",
                "jobtype_extra.max_concurrency": "many",
                "runtime_env.JOB_NAME": "x",
                "replicas": -2,
                "colour": "blue",
            }
        ),
        {
            "name": "DNS label",
            "version": "semantic version",
            "git.remote": "https://",
            "jobtype_extra.max_concurrency": "integer >= 1",
            "runtime_env.JOB_NAME": "Trackside sets",
            "replicas": "integer >= 1",
            "colour": "known fields",
        },
    ),
]


@pytest.mark.parametrize(("data", "expected"), [pytest.param(d, e, id=i) for i, d, e in CASES])
def test_each_error_names_the_path_and_what_was_expected(data: Any, expected: dict[str, str]) -> None:
    with pytest.raises(ManifestError) as caught:
        parse_manifest(data)
    errors = caught.value.errors
    assert sorted(e.path for e in errors) == sorted(expected), str(caught.value)
    for error in errors:
        assert expected[error.path] in error.expected, error.message
        assert error.path in error.message
        assert "expected" in error.message


def test_there_are_enough_cases_and_several_collect_many_errors() -> None:
    assert len(CASES) >= 20
    assert sum(len(expected) > 1 for _, _, expected in CASES) >= 3


def test_the_bad_value_is_carried_and_shown() -> None:
    with pytest.raises(ManifestError) as caught:
        parse_manifest(changed({"jobtype_extra.max_concurrency": 0, "runtime_env.PORT": 8080}))
    by_path = {e.path: e for e in caught.value.errors}
    assert by_path["jobtype_extra.max_concurrency"].value == 0
    assert by_path["runtime_env.PORT"].value == 8080
    assert "got 8080" in by_path["runtime_env.PORT"].message
    # a reserved name: the value shown is the name itself
    with pytest.raises(ManifestError) as caught:
        parse_manifest(changed({"runtime_env.PUB_URL": "http://x"}))
    assert caught.value.errors[0].value == "PUB_URL"


def test_missing_and_unknown_fields_say_so() -> None:
    with pytest.raises(ManifestError) as caught:
        parse_manifest(changed({"owner_email": DELETE, "ownr_email": "x@example.com"}))
    by_path = {e.path: e for e in caught.value.errors}
    assert by_path["owner_email"].problem == "missing"
    assert by_path["owner_email"].message.startswith("owner_email: missing; expected an email address")
    assert by_path["ownr_email"].problem == "unknown field"
    assert "owner_email" in by_path["ownr_email"].expected


def test_str_lists_every_error_on_its_own_line() -> None:
    with pytest.raises(ManifestError) as caught:
        parse_manifest(changed({"name": "X", "replicas": 0, "runtime_env.AUTH_TOKEN": "t"}))
    lines = str(caught.value).splitlines()
    assert lines[0] == "invalid manifest: 3 errors"
    assert [line.split(":")[0] for line in lines[1:]] == [
        "  - name",
        "  - runtime_env.AUTH_TOKEN",
        "  - replicas",
    ]


def test_errors_come_in_field_order() -> None:
    with pytest.raises(ManifestError) as caught:
        parse_manifest(changed({"infrastructure_target": "!", "name": "X", "lang": "python3:latest"}))
    assert caught.value.paths == ["name", "lang", "infrastructure_target"]


def test_reserved_names_are_allowed_at_build_time() -> None:
    # they are set for the running job only; a build environment does not have them
    manifest = parse_manifest(changed({"build_env.JOB_NAME": "x"}))
    assert manifest.build_env["JOB_NAME"] == "x"


def test_python3_checks_run_even_when_the_jobtype_version_is_wrong() -> None:
    with pytest.raises(ManifestError) as caught:
        parse_manifest(changed({"jobtype": "python3:newest", "jobtype_extra.max_concurrency": 0}))
    assert sorted(caught.value.paths) == ["jobtype", "jobtype_extra.max_concurrency"]


def test_other_job_types_keep_jobtype_extra_free() -> None:
    manifest = parse_manifest(
        changed({"jobtype": "golang:latest", "jobtype_extra": {"gomod": "go.mod", "n": [1]}})
    )
    assert manifest.jobtype_extra == {"gomod": "go.mod", "n": [1]}
    assert manifest.python3 is None


def test_the_model_itself_raises_pydantic_errors_with_the_same_paths() -> None:
    data = changed({"name": "X", "jobtype_extra.max_concurrency": 0, "lang": "python3:latest"})
    with pytest.raises(ValidationError) as caught:
        Manifest.model_validate(data)
    assert sorted(".".join(map(str, e["loc"])) for e in caught.value.errors()) == [
        "jobtype_extra.max_concurrency",
        "lang",
        "name",
    ]


def test_field_error_message_format() -> None:
    error = FieldError("git.remote", "git@x:y", "an https:// URL")
    assert error.message == "git.remote: got 'git@x:y'; expected an https:// URL"
    assert FieldError("", None, "a mapping").message == "(manifest): got null; expected a mapping"
    assert "[from -e x=1]" in FieldError("x", 1, "y", origin="-e x=1").message


def test_a_valid_manifest_needs_no_change() -> None:
    assert parse_manifest(VALID).name == "adder"
