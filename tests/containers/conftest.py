"""Fixtures of the container tests: a `trackside up` whose jobs run as podman containers."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import SAMPLE_JOBS
from tests.containers.podman import containers_conf, containers_of, ensure_base_image, remove_everything_of
from tests.gitservers import file_url, make_repo
from tests.lifecycle.platform import TracksideUp


def sample_files(name: str) -> dict[str, str | bytes]:
    """The files of sample-jobs/NAME (what a repository of the job would hold)."""
    root = SAMPLE_JOBS / name
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts and p.name != ".env"
    }


def manifest(name: str, repo: Path, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": name,
        "owner_email": "sample@example.com",
        "jobtype": "python3:latest",
        "version": "0.0.1",
        "git": {"remote": file_url(repo)},
        "jobtype_extra": {"entrypoint_path": "entrypoint.py"},
    }
    body.update(extra)
    return body


@dataclass
class ContainerPlatform:
    """`trackside up` with TRACKSIDE_INFRASTRUCTURE_TARGET=docker on podman, and its helpers."""

    root: Path
    env: dict[str, str]
    repository: str
    up: TracksideUp = field(init=False)
    repos: dict[str, Path] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.start()

    @property
    def data(self) -> Path:
        return self.root / "data"

    def start(self) -> None:
        self.up = TracksideUp(self.data, self.root / "up.log", env=self.env)

    @property
    def lifecycle_id(self) -> str:
        return (self.data / "containers" / "lifecycle-id").read_text().strip()

    @property
    def api(self) -> httpx.Client:
        return self.up.client

    def deploy(self, body: dict[str, Any]) -> str:
        r = self.api.post("/api/v1/deploy", json=body)
        assert r.status_code == 202, r.text
        return str(r.json()["id"])

    def wait(self, deployment_id: str, timeout: float = 600) -> dict[str, Any]:
        return self.up.wait(deployment_id, timeout=timeout)

    def call(self, name: str, payload: dict[str, Any], path: str = "/api/v1/perform") -> httpx.Response:
        return httpx.post(
            f"{self.up.url}/pub/job/{name}/0.0.1{path}",
            json=payload,
            headers={"X-Racetrack-Auth": self.up.token},
            timeout=30,
        )

    def job(self, name: str) -> dict[str, Any]:
        body: dict[str, Any] = self.api.get(f"/api/v1/job/{name}/0.0.1").json()
        return body

    def build_log(self, name: str) -> str:
        return str(self.api.get(f"/api/v1/job/{name}/0.0.1/build-logs").json()["logs"])

    def containers(self, job: str | None = None) -> list[dict[str, Any]]:
        found = containers_of(self.lifecycle_id)
        if job is not None:
            found = [c for c in found if c["Config"]["Labels"].get("trackside.job.name") == job]
        return found

    def wait_until(self, what: str, check: Any, timeout: float = 60) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value
            assert time.monotonic() < deadline, f"{what} within {timeout} s\n{self.up.output()[-3000:]}"
            time.sleep(0.2)

    def close(self) -> None:
        lifecycle_id = self.lifecycle_id if (self.data / "containers" / "lifecycle-id").exists() else None
        try:
            if self.up.process.poll() is None:
                self.up.stop()
        finally:
            if lifecycle_id is not None:
                remove_everything_of(lifecycle_id, self.repository)


@pytest.fixture(scope="module")
def container_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ContainerPlatform]:
    base = ensure_base_image()
    root = tmp_path_factory.mktemp("containers")
    repository = f"localhost/trackside-test-{secrets.token_hex(4)}"
    env = {
        "TRACKSIDE_INFRASTRUCTURE_TARGET": "docker",
        "TRACKSIDE_CONTAINER_ENGINE": "podman",
        "TRACKSIDE_IMAGE_BASE": base,
        "TRACKSIDE_IMAGE_REPOSITORY": repository,
        "TRACKSIDE_BUILD_NETWORK": "host",  # pip in a build reaches the index as the host does
        "CONTAINERS_CONF": containers_conf(),
    }
    platform = ContainerPlatform(root, env, repository)
    try:
        yield platform
    finally:
        platform.close()


@pytest.fixture(scope="module")
def sample_repos(container_platform: ContainerPlatform) -> dict[str, Path]:
    for name in ("adder", "model", "env-secret"):
        container_platform.repos[name] = make_repo(
            container_platform.root / "repos" / name, sample_files(name)
        )
    return container_platform.repos
