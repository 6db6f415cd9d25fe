"""Deploying an uploaded build context (`POST /deploy` with `build_context`, no git): the job
runs from it, and an archive that is unsafe or too big fails its deployment leaving nothing."""

from __future__ import annotations

import base64
import gzip
import io
import tarfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from lifecycle.deploy.source import MAX_CONTEXT_BYTES
from lifecycle.store import jobs as job_store
from tests.conftest import SAMPLE_JOBS
from tests.gitservers import file_url, make_repo
from tests.lifecycle.platform import API, Platform, running_platform
from trackside.build_context import pack_directory

ADDER = SAMPLE_JOBS / "adder"


def adder_manifest(name: str, **changes: Any) -> dict[str, Any]:
    """sample-jobs/adder/job.yaml under another name; its git remote is GitHub, which a deploy
    with a build context must not touch."""
    body: dict[str, Any] = yaml.safe_load((ADDER / "job.yaml").read_text())
    body["name"] = name
    body.update(changes)
    return body


def data_files(platform: Platform) -> set[Path]:
    """Everything under the data dir's workspaces/ and code/."""
    return {p for top in ("workspaces", "code") for p in (platform.data / top).rglob("*")}


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with running_platform(tmp_path_factory.mktemp("lifecycle-data")) as p:
        yield p


@pytest.fixture(scope="module")
def adder_context() -> str:
    return pack_directory(ADDER)


def test_a_job_deploys_from_its_packed_directory(platform: Platform, adder_context: str) -> None:
    deployment_id = platform.deploy(adder_manifest("ctx-adder"), build_context=adder_context)
    result = platform.wait(deployment_id)
    assert result["status"] == "done", result
    assert result["job"]["pub_url"] == "http://127.0.0.1:7200/pub/job/ctx-adder/0.0.1"
    assert platform.call("ctx-adder", {"numbers": [40, 2]}) == 42
    log = platform.build_log("ctx-adder")
    assert "using the build context uploaded with the request" in log
    assert "git:" not in log and "fetched commit" not in log
    # the unpacked context was only a step: the job runs from its own code copy
    assert not (platform.data / "workspaces" / deployment_id).exists()


def test_a_file_remote_with_a_build_context_deploys_the_context(
    platform: Platform, adder_context: str, tmp_path: Path
) -> None:
    entrypoint = (ADDER / "entrypoint.py").read_text()
    repo = make_repo(
        tmp_path / "other-adder",
        {"entrypoint.py": entrypoint.replace("return sum(numbers) + offset", "return -1")},
    )
    manifest = adder_manifest("ctx-over-git", git={"remote": file_url(repo)})
    settings = platform.plane.pipeline.settings
    settings.allow_file_remotes = False  # a lifecycle that refuses file:// remotes
    try:
        refused = platform.client.post(
            f"{API}/deploy", json={"manifest": manifest}, headers=platform.headers()
        )
        assert refused.status_code == 400 and "file:// remotes are not allowed" in refused.json()["error"]
        # ... takes the same manifest with a build context: the remote is not used at all
        result = platform.wait(platform.deploy(manifest, build_context=adder_context))
    finally:
        settings.allow_file_remotes = True
    assert result["status"] == "done", result
    assert (
        platform.call("ctx-over-git", {"numbers": [40, 2]}) == 42
    )  # the context's code, not the repository's
    log = platform.build_log("ctx-over-git")
    assert "using the build context uploaded with the request" in log
    assert "git:" not in log and "fetched commit" not in log

    # and where file:// remotes are allowed, the context wins just the same
    manifest = adder_manifest("ctx-over-git-allowed", git={"remote": file_url(repo)})
    result = platform.wait(platform.deploy(manifest, build_context=adder_context))
    assert result["status"] == "done", result
    assert platform.call("ctx-over-git-allowed", {"numbers": [1, 2]}) == 3


# ---- archives that are refused ------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    name: str
    content: bytes = b""
    type: bytes = tarfile.REGTYPE
    linkname: str = ""
    size: int | None = None  # for a big file: that many zero bytes


def tar_gz(entries: list[Entry]) -> str:
    buffer = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for entry in entries:
            info = tarfile.TarInfo(entry.name)
            info.type = entry.type
            info.linkname = entry.linkname
            info.mode = 0o644
            if entry.size is not None:
                info.size = entry.size
                tar.addfile(info, _Zeros(entry.size))
            elif entry.type == tarfile.REGTYPE:
                info.size = len(entry.content)
                tar.addfile(info, io.BytesIO(entry.content))
            else:
                tar.addfile(info)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


class _Zeros(io.RawIOBase):
    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), self.left)
        buffer[:n] = b"\0" * n
        self.left -= n
        return n


OUTSIDE = f"trackside-escape-{uuid.uuid4().hex}"
ENTRYPOINT = Entry("entrypoint.py", (ADDER / "entrypoint.py").read_bytes())

# what is in the archive, and what the deployment's error must say
REFUSED: dict[str, tuple[Callable[[], str], str]] = {
    "dotdot": (
        lambda: tar_gz([ENTRYPOINT, Entry(f"../{OUTSIDE}.txt", b"escaped")]),
        "the build context has an entry with '..' in its path: '../trackside-escape-",
    ),
    "nested-dotdot": (
        lambda: tar_gz([ENTRYPOINT, Entry(f"lib/../../../{OUTSIDE}.txt", b"escaped")]),
        "the build context has an entry with '..' in its path",
    ),
    "absolute": (
        lambda: tar_gz([ENTRYPOINT, Entry(f"/tmp/{OUTSIDE}.txt", b"escaped")]),
        f"the build context has an entry with an absolute path: '/tmp/{OUTSIDE}.txt'",
    ),
    "symlink-out": (
        lambda: tar_gz([ENTRYPOINT, Entry("data", type=tarfile.SYMTYPE, linkname="/tmp")]),
        "the build context has a symbolic link pointing outside it: 'data'",
    ),
    "relative-symlink-out": (
        lambda: tar_gz([ENTRYPOINT, Entry("lib/up", type=tarfile.SYMTYPE, linkname="../../..")]),
        "the build context has a symbolic link pointing outside it: 'lib/up'",
    ),
    # each link looks inside on its own; together `a` is `../outside` (caught while extracting)
    "symlink-chain-out": (
        lambda: tar_gz(
            [
                ENTRYPOINT,
                Entry("b", type=tarfile.SYMTYPE, linkname="."),
                Entry("a", type=tarfile.SYMTYPE, linkname=f"b/../{OUTSIDE}"),
            ]
        ),
        "the build context has an unsafe entry: 'a' would link to",
    ),
    # the same, `a` first (caught on the final tree)
    "symlink-chain-out-reordered": (
        lambda: tar_gz(
            [
                ENTRYPOINT,
                Entry("a", type=tarfile.SYMTYPE, linkname=f"b/../{OUTSIDE}"),
                Entry("b", type=tarfile.SYMTYPE, linkname="."),
            ]
        ),
        "the build context has a symbolic link pointing outside it: 'a'",
    ),
    "write-through-symlink": (
        lambda: tar_gz(
            [
                ENTRYPOINT,
                Entry("here", type=tarfile.SYMTYPE, linkname="."),
                Entry("here/entrypoint.py", b"class Evil: pass"),
            ]
        ),
        "the build context writes 'here/entrypoint.py' through a file or link",
    ),
    "hardlink-out": (
        lambda: tar_gz([ENTRYPOINT, Entry("passwd", type=tarfile.LNKTYPE, linkname="/etc/passwd")]),
        "the build context has a hard link 'passwd' that does not point to a file earlier in it",
    ),
    "unpacks-too-big": (
        lambda: tar_gz([ENTRYPOINT, Entry("weights.bin", size=MAX_CONTEXT_BYTES + 1)]),
        "the build context unpacks to more than 50 MiB",
    ),
    "packed-too-big": (
        lambda: "A" * (MAX_CONTEXT_BYTES // 3 * 4 + 1024),
        "the build context is larger than 50 MiB (packed)",
    ),
    "not-base64": (lambda: "this is not base64!", "the build context is not valid base64"),
    "not-gzip": (
        lambda: base64.b64encode(b"just text").decode(),
        "the build context is not a valid gzip stream",
    ),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_an_unsafe_or_oversized_context_fails_and_leaves_nothing(platform: Platform, case: str) -> None:
    make, error = REFUSED[case]
    name = f"ctx-{case}"
    files_before = data_files(platform)
    deployment_id = platform.deploy(adder_manifest(name), build_context=make())
    result = platform.wait(deployment_id, timeout=60)

    assert result["status"] == "failed", result
    assert result["phase"] == "fetching the source code"
    assert error in result["error"], result["error"]
    assert result["job"] is None
    # nothing is left: no job, no process, no files of it under workspaces/ and code/
    assert platform.client.get(f"{API}/job/{name}/0.0.1", headers=platform.headers()).status_code == 404
    with platform.plane.db.session() as session:
        assert job_store.get_job(session, name, "0.0.1") is None
    assert platform.plane.runner.replicas(name, "0.0.1") == []
    assert data_files(platform) == files_before, data_files(platform) ^ files_before
    assert not (platform.data / "workspaces" / deployment_id).exists()
    # ... and nothing written where the archive pointed
    for place in (platform.data, platform.data / "workspaces", Path("/tmp"), Path("/tmp") / OUTSIDE):
        assert not list(place.glob(f"{OUTSIDE}*")), place


# ---- a bug found while fuzzing (fails today) --------------------------------------------------------


def test_a_job_whose_process_cannot_be_spawned_fails_its_deployment_at_once(
    platform: Platform, adder_context: str
) -> None:
    """A secret runtime variable no process can take (a NUL in its value) is accepted; then
    Popen raises ValueError, which the supervisor counts as neither a failed start nor a
    restart, so the deployment waits out the whole init timeout (900 s by default) and ends
    with "the job was not ready within ...", naming nothing. Either refusing the request (400)
    or failing at once with the reason is right."""
    settings = platform.plane.pipeline.settings
    init_timeout, settings.init_timeout = settings.init_timeout, 6  # not 900 s: keep the test short
    try:
        started = time.monotonic()
        r = platform.client.post(
            f"{API}/deploy",
            headers=platform.headers(),
            json={
                "manifest": adder_manifest("ctx-unspawnable"),
                "build_context": adder_context,
                "secret_vars": {"runtime_env": {"API_TOKEN": "abc\x00def"}},
            },
        )
        if r.status_code == 400:
            return  # refused up front: fine
        assert r.status_code == 202, r.text
        result = platform.wait(r.json()["id"], timeout=60)
    finally:
        settings.init_timeout = init_timeout
    assert result["status"] == "failed", result
    assert "not ready within" not in result["error"], result["error"]
    assert time.monotonic() - started < 5, f"took {time.monotonic() - started:.1f} s: {result['error']}"
