"""The `docker` CLI as the container engine (TRACKSIDE_CONTAINER_ENGINE=docker), against the
Docker-compatible API of `podman system service` (no Docker engine runs on this machine).

What works through that path: every runtime call the lifecycle makes (run, inspect, ps by label,
logs, stop, rm, image inspect, rmi). What cannot: building a job image. Job images take their
build secrets (build_env, the CA bundle) as BuildKit secret mounts, so the docker CLI builds with
BuildKit, which needs the buildx component and a daemon that speaks BuildKit; podman's service
does not, so a deployment fails, and the test shows it does so with a clear error."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from trackside_wrapper.job_image import find_engine

from lifecycle.deploy.container_engine import EngineCli
from tests.conftest import IN_CI, free_port
from tests.containers.conftest import ContainerPlatform, manifest, sample_files
from tests.containers.podman import containers_conf, containers_of, ensure_base_image, podman, require
from tests.gitservers import make_repo

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def docker_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """DOCKER_HOST of a `podman system service` on a private socket (stopped afterwards)."""
    require("podman")
    if shutil.which("docker") is None:
        reason = "the docker CLI is not installed"
        if IN_CI:
            pytest.fail(f"{reason} (CI=true: a missing real component fails the suite)")
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("podman-service")
    socket = root / "podman.sock"
    host = f"unix://{socket}"
    env = {**os.environ, "CONTAINERS_CONF": containers_conf()}
    with open(root / "service.log", "ab") as out:
        process = subprocess.Popen(
            ["podman", "system", "service", "--time=0", host], stdout=out, stderr=subprocess.STDOUT, env=env
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            ready = socket.exists() and (
                subprocess.run(
                    ["docker", "version"], env={**env, "DOCKER_HOST": host}, capture_output=True, check=False
                ).returncode
                == 0
            )
            if ready:
                break
            assert process.poll() is None, (root / "service.log").read_text()
            assert time.monotonic() < deadline, (root / "service.log").read_text()
            time.sleep(0.1)
        yield host
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def docker(docker_host: str, monkeypatch: pytest.MonkeyPatch) -> EngineCli:
    monkeypatch.setenv("DOCKER_HOST", docker_host)
    monkeypatch.setenv("CONTAINERS_CONF", containers_conf())
    engine = find_engine("docker")
    assert engine.kind == "docker"  # the docker CLI in front of podman still counts as docker
    return EngineCli(engine)


def test_the_lifecycles_runtime_calls_work_through_the_docker_cli(docker: EngineCli) -> None:
    base = ensure_base_image()
    base_id = docker.image_id(base)
    assert base_id is not None and len(base_id) == 64
    assert docker.image_tags(base_id) == [base]
    assert docker.image_id("localhost/trackside-test/no-such-image:1") is None

    name = f"trackside-docker-cli-{os.getpid()}"
    port = free_port()
    labels = {"trackside.lifecycle": name, "trackside.job.name": "http"}
    docker.discard(name)
    try:
        docker.run_container(
            [
                "--name",
                name,
                "--network",
                "host",
                *(f"--label={key}={value}" for key, value in labels.items()),
                base,
                "python3",
                "-u",
                "-m",
                "http.server",
                str(port),
                "--bind",
                "127.0.0.1",
            ]
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, docker.logs(name, None)
                time.sleep(0.1)
        assert r.status_code == 200

        info = docker.inspect([name, "not-a-container-x"])
        assert list(info) == [name]
        assert info[name].running and info[name].status == "running"
        assert info[name].image == base_id and info[name].labels == labels
        assert [c.name for c in docker.containers(labels)] == [name]
        assert docker.containers({"trackside.lifecycle": "someone-else"}) == []
        deadline = time.monotonic() + 30  # the engine writes the container's output a little later
        while not any('"GET / HTTP/1.1" 200' in line for line in docker.logs(name, None)):
            assert time.monotonic() < deadline, docker.logs(name, None)
            time.sleep(0.1)
    finally:
        docker.remove([name], grace=1)
    assert docker.inspect([name]) == {}
    assert docker.containers(labels) == []


def test_a_deployment_through_the_docker_cli_fails_saying_buildkit_is_needed(
    docker_host: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    root = tmp_path_factory.mktemp("docker-cli")
    repository = f"localhost/trackside-test-docker-{os.getpid()}"
    env = {
        "TRACKSIDE_INFRASTRUCTURE_TARGET": "docker",
        "TRACKSIDE_CONTAINER_ENGINE": "docker",
        "DOCKER_HOST": docker_host,
        "TRACKSIDE_IMAGE_BASE": ensure_base_image(),
        "TRACKSIDE_IMAGE_REPOSITORY": repository,
        "TRACKSIDE_BUILD_NETWORK": "host",
        "CONTAINERS_CONF": containers_conf(),
    }
    p = ContainerPlatform(root, env, repository)
    try:
        repo = make_repo(root / "repos" / "adder", sample_files("adder"))
        done: dict[str, Any] = p.wait(p.deploy({"manifest": manifest("adder", repo)}))
        log = p.build_log("adder")
        assert done["status"] == "failed", (done, log[-3000:])
        error = str(done.get("error"))
        assert "docker cannot build with BuildKit here" in error, error
        assert "TRACKSIDE_CONTAINER_ENGINE=podman" in error, error
        assert "with docker" in log  # the build did go through the docker CLI
        assert p.job("adder").get("status") != "running"
        assert containers_of(p.lifecycle_id) == []
        images = json.loads(
            podman("images", "--format", "json", f"--filter=reference={repository}/*") or "[]"
        )
        assert images == []
    finally:
        p.close()
