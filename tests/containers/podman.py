"""Real podman for the container tests: its configuration on this kind of machine, a base image made
locally (no registry is reachable), and small helpers to look at what the platform created.

podman needs runc (crun rejects the machine's hybrid cgroup layout) and lowered default ulimits
(they cannot be raised here): both come from a containers.conf given by CONTAINERS_CONF, unless
the environment names one already.

The base image is Debian bookworm made with debootstrap (python3 with venv, CA certificates) and
imported as BASE_IMAGE; it is built once per machine and reused by later runs (the tag is the
cache key: change BASE_RECIPE to make a new one). Concurrent test workers wait for one build.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import IN_CI

BASE_RECIPE = "bookworm-python3-v1"
BASE_IMAGE = f"localhost/trackside-test/python-base:{BASE_RECIPE}"
DEBOOTSTRAP_PACKAGES = "python3,python3-venv,python3-pip,ca-certificates"
CONTAINERS_CONF_TEXT = """\
[containers]
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]
[engine]
runtime = "runc"
"""
STATE_DIR = Path(tempfile.gettempdir()) / "trackside-test-containers"


def require(tool: str) -> str:
    path = shutil.which(tool) or (f"/usr/sbin/{tool}" if Path(f"/usr/sbin/{tool}").exists() else None)
    if path is None:
        reason = f"{tool} is not installed (apt-get install -y podman buildah runc debootstrap)"
        if IN_CI:
            pytest.fail(f"{reason} (CI=true: a missing real component fails the suite)")
        pytest.skip(reason)
    return path


def containers_conf() -> str:
    """The CONTAINERS_CONF podman should use (the environment's, else ours)."""
    if os.environ.get("CONTAINERS_CONF"):
        return os.environ["CONTAINERS_CONF"]
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    path = STATE_DIR / "containers.conf"
    if not path.exists() or path.read_text() != CONTAINERS_CONF_TEXT:
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(CONTAINERS_CONF_TEXT)
        tmp.replace(path)
    return str(path)


def podman_env() -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": containers_conf()}


def podman(*args: str, check: bool = True, timeout: float = 300, stdin: bytes | None = None) -> str:
    done = subprocess.run(
        ["podman", *args], capture_output=True, env=podman_env(), timeout=timeout, input=stdin, check=False
    )
    if check and done.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} failed: {done.stderr.decode(errors='replace')}")
    return done.stdout.decode(errors="replace")


def podman_json(*args: str) -> Any:
    return json.loads(podman(*args) or "null")


def image_exists(reference: str) -> bool:
    return (
        subprocess.run(
            ["podman", "image", "exists", reference], env=podman_env(), capture_output=True, check=False
        ).returncode
        == 0
    )


def ensure_base_image() -> str:
    """BASE_IMAGE, made with debootstrap the first time on this machine (~70 s)."""
    require("podman")
    if image_exists(BASE_IMAGE):
        return BASE_IMAGE
    debootstrap = require("debootstrap")
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    with open(STATE_DIR / "base-image.lock", "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another test worker may be making it
        if image_exists(BASE_IMAGE):
            return BASE_IMAGE
        started = time.monotonic()
        tmp = tempfile.mkdtemp(prefix="rootfs-", dir=STATE_DIR)
        try:
            rootfs = Path(tmp) / "rootfs"
            made = subprocess.run(
                [
                    debootstrap,
                    "--variant=minbase",
                    f"--include={DEBOOTSTRAP_PACKAGES}",
                    "bookworm",
                    str(rootfs),
                ],
                capture_output=True,
                timeout=900,
                check=False,
            )
            if made.returncode != 0:
                raise AssertionError(
                    f"debootstrap failed: {made.stdout.decode()[-2000:]}{made.stderr.decode()[-2000:]}"
                )
            _unmount_below(rootfs)  # debootstrap may leave /proc mounted in the new root
            tar = subprocess.Popen(
                ["tar", "--one-file-system", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE
            )
            imported = subprocess.run(
                ["podman", "import", "-", BASE_IMAGE],
                stdin=tar.stdout,
                capture_output=True,
                env=podman_env(),
                timeout=600,
                check=False,
            )
            tar.wait()
            if imported.returncode != 0:
                raise AssertionError(f"podman import failed: {imported.stderr.decode()[-2000:]}")
        finally:
            _unmount_below(Path(tmp))
            # a root file system: devices and links that shutil.rmtree trips over
            subprocess.run(["rm", "-rf", "--one-file-system", tmp], check=False)
        print(f"base image {BASE_IMAGE} made in {time.monotonic() - started:.0f} s")
    return BASE_IMAGE


def _unmount_below(root: Path) -> None:
    prefix = str(root.resolve()) + "/"
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for mount in sorted((m for m in mounts if m.startswith(prefix)), reverse=True):
        subprocess.run(["umount", "--lazy", mount], check=False)


def containers_of(lifecycle_id: str) -> list[dict[str, Any]]:
    """`inspect` of every container labelled with the lifecycle id."""
    ids = podman(
        "ps", "--all", "--quiet", "--no-trunc", f"--filter=label=trackside.lifecycle={lifecycle_id}"
    ).split()
    found: list[dict[str, Any]] = []
    for container in ids:  # one by one: one removed meanwhile must not fail the others
        out = podman("container", "inspect", container, check=False)
        found += json.loads(out) if out.strip() else []
    return found


def remove_everything_of(lifecycle_id: str, repository: str) -> None:
    """What a test platform left behind: its containers, their secrets, its images."""
    ids = podman(
        "ps", "--all", "--quiet", f"--filter=label=trackside.lifecycle={lifecycle_id}", check=False
    ).split()
    if ids:
        podman("rm", "--force", "--time", "0", *ids, check=False)
    for secret in podman("secret", "ls", "--format", "{{.Name}}", check=False).split():
        if secret.startswith(f"trackside-{lifecycle_id}-"):
            podman("secret", "rm", secret, check=False)
    images = podman(
        "images", "--quiet", "--no-trunc", f"--filter=reference={repository}/*", check=False
    ).split()
    for image in dict.fromkeys(images):
        podman("rmi", "--force", "--no-prune", image, check=False)
