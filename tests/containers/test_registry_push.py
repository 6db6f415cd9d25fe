"""Pushing job images to a registry (TRACKSIDE_IMAGE_PUSH with TRACKSIDE_REGISTRY_USERNAME/PASSWORD):
a real distribution registry (Debian's `docker-registry`) on loopback with htpasswd (bcrypt) auth,
plain HTTP, marked insecure for podman through a registries.conf (CONTAINERS_REGISTRIES_CONF). A
job deployed with the right credentials lands in the registry; the wrong ones fail the deployment
with a clear error; the credentials appear in no log, error or output."""

from __future__ import annotations

import base64
import shutil
import subprocess
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import IN_CI, free_port
from tests.containers.conftest import ContainerPlatform, manifest, sample_files
from tests.containers.podman import containers_conf, ensure_base_image, image_exists
from tests.gitservers import make_repo

pytestmark = pytest.mark.slow

USER = "pusher"
PASSWORD = "registry-pw-5c81e0a9"
WRONG_PASSWORD = "not-the-password-3f2d"


def _bcrypt_htpasswd_line(user: str, password: str) -> str:
    """`user:$2b$...`, as `htpasswd -B` writes it (the registry accepts bcrypt only)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # crypt leaves the stdlib in 3.13
        try:
            import crypt
        except ImportError:
            crypt = None  # type: ignore[assignment]
    if crypt is not None:
        hashed = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH))
        if hashed and hashed.startswith("$2"):
            return f"{user}:{hashed}"
    htpasswd = shutil.which("htpasswd")
    if htpasswd is None:
        reason = "no bcrypt implementation: install apache2-utils (htpasswd)"
        if IN_CI:
            pytest.fail(f"{reason} (CI=true: a missing real component fails the suite)")
        pytest.skip(reason)
    done = subprocess.run([htpasswd, "-nbB", user, password], capture_output=True, text=True, check=True)
    return done.stdout.strip()


@dataclass
class Registry:
    host: str  # 127.0.0.1:PORT
    registries_conf: Path

    def get(self, path: str, auth: tuple[str, str] | None = (USER, PASSWORD)) -> httpx.Response:
        return httpx.get(f"http://{self.host}/v2/{path}", auth=auth, timeout=10)

    def catalog(self) -> list[str]:
        r = self.get("_catalog")
        assert r.status_code == 200, r.text
        return list(r.json()["repositories"] or [])

    def tags(self, name: str) -> list[str]:
        r = self.get(f"{name}/tags/list")
        assert r.status_code == 200, r.text
        return list(r.json()["tags"] or [])


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    binary = shutil.which("docker-registry") or shutil.which("registry")
    if binary is None:
        reason = "docker-registry is not installed (apt-get install -y docker-registry)"
        if IN_CI:
            pytest.fail(f"{reason} (CI=true: a missing real component fails the suite)")
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("registry")
    (root / "htpasswd").write_text(_bcrypt_htpasswd_line(USER, PASSWORD) + "\n")
    host = f"127.0.0.1:{free_port()}"
    (root / "config.yml").write_text(
        "version: 0.1\n"
        "log:\n  level: info\n"
        f"storage:\n  filesystem:\n    rootdirectory: {root / 'storage'}\n"
        f"http:\n  addr: {host}\n"
        f"auth:\n  htpasswd:\n    realm: trackside-test\n    path: {root / 'htpasswd'}\n"
    )
    registries_conf = root / "registries.conf"
    registries_conf.write_text(f'[[registry]]\nlocation = "{host}"\ninsecure = true\n')
    with open(root / "registry.log", "ab") as out:
        process = subprocess.Popen(
            [binary, "serve", str(root / "config.yml")], stdout=out, stderr=subprocess.STDOUT
        )
    try:
        found = Registry(host, registries_conf)
        deadline = time.monotonic() + 30
        while True:
            try:
                if found.get("", auth=None).status_code == 401:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, (root / "registry.log").read_text()
            assert time.monotonic() < deadline, (root / "registry.log").read_text()
            time.sleep(0.1)
        yield found
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _platform(root: Path, registry: Registry, password: str) -> ContainerPlatform:
    repository = f"{registry.host}/trackside-test-{root.name.lower()[-12:].strip('_-') or 'x'}"
    env = {
        "TRACKSIDE_INFRASTRUCTURE_TARGET": "docker",
        "TRACKSIDE_CONTAINER_ENGINE": "podman",
        "TRACKSIDE_IMAGE_BASE": ensure_base_image(),
        "TRACKSIDE_IMAGE_REPOSITORY": repository,
        "TRACKSIDE_IMAGE_PUSH": "true",
        "TRACKSIDE_REGISTRY_USERNAME": USER,
        "TRACKSIDE_REGISTRY_PASSWORD": password,
        "TRACKSIDE_BUILD_NETWORK": "host",
        "CONTAINERS_CONF": containers_conf(),
        "CONTAINERS_REGISTRIES_CONF": str(registry.registries_conf),
    }
    return ContainerPlatform(root, env, repository)


def _assert_no_credentials(*texts: str) -> None:
    tokens = [
        PASSWORD,
        WRONG_PASSWORD,
        base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode(),
        base64.b64encode(f"{USER}:{WRONG_PASSWORD}".encode()).decode(),
    ]
    for text in texts:
        for token in tokens:
            assert token not in text


def _pushed_tag(build_log: str) -> str:
    pushing = [line for line in build_log.splitlines() if line.startswith("pushing ")]
    assert pushing, build_log[-3000:]
    return pushing[-1].removeprefix("pushing ").strip()


def test_a_deployed_job_image_is_pushed_with_the_credentials(
    registry: Registry, tmp_path_factory: pytest.TempPathFactory
) -> None:
    p = _platform(tmp_path_factory.mktemp("push-ok"), registry, PASSWORD)
    try:
        repo = make_repo(p.root / "repos" / "adder", sample_files("adder"))
        done: dict[str, Any] = p.wait(p.deploy({"manifest": manifest("adder", repo)}))
        log = p.build_log("adder")
        assert done["status"] == "done", (done, log[-3000:])

        tag = _pushed_tag(log)
        assert f"pushed {tag}" in log
        name, version_tag = tag.removeprefix(f"{registry.host}/").rsplit(":", 1)
        assert name in registry.catalog()
        assert version_tag in registry.tags(name)
        assert registry.get("_catalog", auth=None).status_code == 401  # the registry does check

        r = p.call("adder", {"numbers": [40, 2]})  # the pushed image is the one running
        assert r.status_code == 200 and r.json() == 42, r.text
        _assert_no_credentials(log, str(done), p.up.output())
    finally:
        p.close()
    _assert_no_credentials(p.up.output())


def test_wrong_credentials_fail_the_deployment_saying_the_push_failed(
    registry: Registry, tmp_path_factory: pytest.TempPathFactory
) -> None:
    p = _platform(tmp_path_factory.mktemp("push-bad"), registry, WRONG_PASSWORD)
    try:
        files = sample_files("adder")
        entrypoint = files["entrypoint.py"]
        assert isinstance(entrypoint, bytes)
        files["entrypoint.py"] = entrypoint + b"\n# another image than the first test's\n"
        repo = make_repo(p.root / "repos" / "adder", files)
        done: dict[str, Any] = p.wait(p.deploy({"manifest": manifest("adder", repo)}))
        log = p.build_log("adder")
        assert done["status"] == "failed", (done, log[-3000:])
        tag = _pushed_tag(log)
        error = str(done.get("error"))
        assert f"pushing {tag} failed" in error, error
        assert "authentication required" in error or "unauthorized" in error, error

        name = tag.removeprefix(f"{registry.host}/").rsplit(":", 1)[0]
        assert name not in registry.catalog()
        assert not image_exists(tag)  # a build that cannot be pushed leaves no image behind
        assert p.job("adder").get("status") != "running"
        _assert_no_credentials(log, error, str(done), p.up.output())
    finally:
        p.close()
    _assert_no_credentials(p.up.output())
