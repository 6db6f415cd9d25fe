"""Choosing where a job runs: `infrastructure_target` in the manifest, the lifecycle's default
(TRACKSIDE_INFRASTRUCTURE_TARGET) and the errors a user sees when a target cannot be used. No
container engine is needed: these never start a container."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from lifecycle.api.app import create_app
from lifecycle.config import ConfigError, ContainerConfig, LifecycleConfig
from lifecycle.control_plane import ControlPlane
from lifecycle.secrets import SecretBox
from tests.lifecycle.platform import API, job_manifest


@contextmanager
def lifecycle(data_dir: Path, **config: Any) -> Iterator[tuple[TestClient, dict[str, str]]]:
    plane = ControlPlane(
        LifecycleConfig(
            data_dir=data_dir,
            database_url=f"sqlite:///{data_dir / 'trackside.db'}",
            secret_key=SecretBox.generate_key(),
            **config,
        ),
        pub_url="http://127.0.0.1:7200/pub",
    )
    report = plane.start()
    assert report.admin_token
    try:
        with TestClient(create_app(plane)) as client:
            yield client, {"X-Racetrack-Auth": report.admin_token}
    finally:
        plane.stop()


def test_an_unknown_target_is_refused_naming_the_ones_there_are(tmp_path: Path) -> None:
    with lifecycle(tmp_path) as (client, auth):
        manifest = job_manifest("adder", "file:///nowhere", infrastructure_target="mainframe")
        r = client.post(f"{API}/deploy", json={"manifest": manifest}, headers=auth)
        assert r.status_code == 400, r.text
        error = r.json()["error"]
        assert "infrastructure_target" in error and "'mainframe'" in error
        assert "docker" in error and "embedded" in error and "kubernetes" in error
        assert client.get(f"{API}/job", headers=auth).json() == []  # nothing was stored


def test_kubernetes_without_its_settings_is_refused_saying_what_is_missing(tmp_path: Path) -> None:
    with lifecycle(tmp_path) as (client, auth):
        manifest = job_manifest("adder", "file:///nowhere", infrastructure_target="kubernetes")
        r = client.post(f"{API}/deploy", json={"manifest": manifest}, headers=auth)
        assert r.status_code == 400, r.text
        error = r.json()["error"]
        assert error.startswith(
            "infrastructure_target 'kubernetes' cannot be used: TRACKSIDE_IMAGE_REPOSITORY is not set"
        )
        assert client.get(f"{API}/job", headers=auth).json() == []


def test_containers_without_an_engine_are_refused_saying_why(tmp_path: Path) -> None:
    with lifecycle(tmp_path, containers=ContainerConfig(engine="no-such-engine-x")) as (client, auth):
        manifest = job_manifest("adder", "file:///nowhere", infrastructure_target="docker")
        r = client.post(f"{API}/deploy", json={"manifest": manifest}, headers=auth)
        assert r.status_code == 400, r.text
        assert "'no-such-engine-x' is not installed" in r.json()["error"]


def test_a_default_target_that_cannot_run_stops_the_lifecycle_from_starting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"TRACKSIDE_INFRASTRUCTURE_TARGET=docker: .*no-such-engine-x"):
        ControlPlane(
            LifecycleConfig(
                data_dir=tmp_path,
                database_url=f"sqlite:///{tmp_path / 'trackside.db'}",
                secret_key=SecretBox.generate_key(),
                infrastructure_target="docker",
                containers=ContainerConfig(engine="no-such-engine-x"),
            ),
            pub_url="http://127.0.0.1:7200/pub",
        )


def test_settings_from_the_environment(tmp_path: Path) -> None:
    base = {"TRACKSIDE_DATA_DIR": str(tmp_path / "data")}
    config = LifecycleConfig.from_env(environ={**base, "TRACKSIDE_INFRASTRUCTURE_TARGET": "local"})
    assert config.infrastructure_target == "embedded"
    config = LifecycleConfig.from_env(
        environ={
            **base,
            "TRACKSIDE_INFRASTRUCTURE_TARGET": "docker",
            "TRACKSIDE_IMAGE_BASE": "localhost/python-base:{python_version}",
            "TRACKSIDE_CONTAINER_NETWORK": "host",
            "TRACKSIDE_BUILD_CA_BUNDLE": "",
            "PIP_CERT": "",
            "SSL_CERT_FILE": "",
            "REQUESTS_CA_BUNDLE": "",
        }
    )
    assert config.infrastructure_target == "docker"
    assert config.containers.base_image == "localhost/python-base:{python_version}"
    assert config.containers.network == "host" and config.containers.build_ca_bundle is None
    for name, value, expected in (
        ("TRACKSIDE_INFRASTRUCTURE_TARGET", "mainframe", "TRACKSIDE_INFRASTRUCTURE_TARGET must be one of"),
        ("TRACKSIDE_K8S_NAMESPACE", "Jobs_NS", "TRACKSIDE_K8S_NAMESPACE must be a namespace name"),
        ("TRACKSIDE_K8S_JOB_PUB_URL", "pub:7205", "TRACKSIDE_K8S_JOB_PUB_URL must be an http"),
        ("TRACKSIDE_KANIKO_MEMORY_LIMIT", "lots", "TRACKSIDE_KANIKO_MEMORY_LIMIT must be a memory quantity"),
        ("TRACKSIDE_KANIKO_DEADLINE", "5", "TRACKSIDE_KANIKO_DEADLINE must be at least 60"),
        ("TRACKSIDE_CONTAINER_RESTART", "sometimes", "TRACKSIDE_CONTAINER_RESTART must be one of"),
        ("TRACKSIDE_IMAGE_BASE", "python:{version}", "TRACKSIDE_IMAGE_BASE may hold only"),
        ("TRACKSIDE_BUILD_CA_BUNDLE", str(tmp_path / "missing.pem"), "TRACKSIDE_BUILD_CA_BUNDLE"),
        ("TRACKSIDE_REGISTRY_USERNAME", "someone", "go together"),
    ):
        with pytest.raises(ConfigError, match=expected):
            LifecycleConfig.from_env(environ={**base, name: value})
