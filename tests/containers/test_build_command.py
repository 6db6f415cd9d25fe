"""`trackside build DIR --output job.tar`: a job's image built with podman without a platform, saved
as a tar that `docker load` takes, with the job's labels and none of its secrets."""

from __future__ import annotations

import io
import json
import os
import secrets
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.conftest import REPO, SAMPLE_JOBS
from tests.containers.podman import containers_conf, ensure_base_image, podman

BUILD_SECRET = "build-secret-value-2f9d41"
RUNTIME_SECRET = "runtime-secret-value-8c3e57"


def trackside(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trackside", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, **(env or {})},
        timeout=900,
        check=False,
    )


def test_a_bad_manifest_is_a_usage_error_before_any_engine_is_needed(tmp_path: Path) -> None:
    (tmp_path / "job.yaml").write_text("name: Not_A_Dns_Label\n")
    done = trackside("build", str(tmp_path), "--output", str(tmp_path / "job.tar"))
    assert done.returncode == 2, done
    assert "name" in done.stderr and not (tmp_path / "job.tar").exists()


def test_a_missing_engine_is_named(tmp_path: Path) -> None:
    done = trackside("build", str(SAMPLE_JOBS / "adder"), "--engine", "no-such-engine-x")
    assert done.returncode == 1, done
    assert "no-such-engine-x" in done.stderr and "not installed" in done.stderr


@pytest.mark.slow
def test_build_saves_an_image_tar_with_labels_and_without_secrets(tmp_path: Path) -> None:
    base = ensure_base_image()
    job = tmp_path / "env-secret"
    shutil.copytree(SAMPLE_JOBS / "env-secret", job, ignore=shutil.ignore_patterns("__pycache__", ".env"))
    (job / ".env").write_text(f"API_KEY={RUNTIME_SECRET}\n")  # ignored by the job's .gitignore
    (job / "build.env").write_text(f"PRIVATE_TOKEN={BUILD_SECRET}\n")
    with open(job / "job.yaml", "a") as f:
        f.write("secret_build_env_file: build.env\n")
    repository = f"localhost/trackside-test-{secrets.token_hex(4)}"
    output = tmp_path / "out" / "job.tar"
    env = {
        "CONTAINERS_CONF": containers_conf(),
        "TRACKSIDE_IMAGE_REPOSITORY": repository,
        "TRACKSIDE_IMAGE_BASE": base,
    }
    try:
        done = trackside(
            "build", str(job), "--output", str(output), "--engine", "podman", "--network", "host", env=env
        )
        assert done.returncode == 0, done.stderr[-3000:]
        assert f"saved to {output}" in done.stdout
        assert "STEP 1/" in done.stderr  # the engine's output, as it built
        assert BUILD_SECRET not in done.stdout + done.stderr

        with tarfile.open(output) as archive:
            manifest = json.load(_member(archive, "manifest.json"))
            [entry] = manifest
            [tag] = entry["RepoTags"]
            assert tag.startswith(f"{repository}/env-secret:0.0.1-")
            config = json.load(_member(archive, entry["Config"]))
            labels = config["config"]["Labels"]
            assert labels["trackside.job.name"] == "env-secret" and labels["trackside.job.version"] == "0.0.1"
            assert tag.endswith(labels["trackside.dependency.fingerprint"][:12])
            assert config["config"]["User"] == "10001:10001"
            with tarfile.open(fileobj=io.BytesIO(_member(archive, entry["Layers"][-1]).read())) as code_layer:
                names = code_layer.getnames()
            assert "opt/trackside/job/entrypoint.py" in names
            assert "opt/trackside/job/.env" not in names and "opt/trackside/job/build.env" not in names
            for member in archive:
                if member.isfile():
                    content = _member(archive, member.name).read()
                    assert BUILD_SECRET.encode() not in content and RUNTIME_SECRET.encode() not in content
    finally:
        for image in podman("images", "--quiet", f"--filter=reference={repository}/*", check=False).split():
            podman("rmi", "--force", "--no-prune", image, check=False)


def _member(archive: tarfile.TarFile, name: str) -> io.BufferedReader:
    extracted = archive.extractfile(name)
    assert extracted is not None, name
    return extracted  # type: ignore[return-value]
