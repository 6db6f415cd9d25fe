"""Build contexts handed out once to a Kubernetes build pod: `ContextHandout` (single use, a wrong
token uses nothing up, expiry, withdrawal, racing fetches) and `GET /build-contexts/{id}` on a real
lifecycle over loopback, fetched with httpx and with the build pod's own init-container script
(wget and tar)."""

from __future__ import annotations

import io
import logging
import os
import shutil
import subprocess
import tarfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from lifecycle.api.app import create_app
from lifecycle.control_plane import ControlPlane
from lifecycle.deploy.context_handout import ContextHandout, Offer, WrongToken
from lifecycle.deploy.kaniko_job import (
    TOKEN_HEADER,
    KanikoBuild,
    KanikoSettings,
    UploadedContext,
    kaniko_objects,
)
from tests.conftest import IN_CI
from tests.lifecycle.platform import lifecycle_config
from tests.served_app import served

PREFIXES = ("/lifecycle/api/v1", "/api/v1")
FILES = {
    "Dockerfile": b"FROM python:3.12-slim\nCOPY code/ /src/\n",
    "code/entrypoint.py": b"class Job:\n    def perform(self) -> int:\n        return 42\n",
    # several of the endpoint's chunks, and bytes that are not text
    "wheels/blob.bin": os.urandom(1_000_003),
}


def write_tar(path: Path) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, content in FILES.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(content))
    return path


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    return write_tar(tmp_path / "context.tar")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# ---- ContextHandout ------------------------------------------------------------------------------


def test_an_offer_is_taken_once_with_its_token(archive: Path) -> None:
    handout = ContextHandout()
    offer = handout.offer(archive)
    assert not handout.was_taken(offer.id)
    assert handout.take(offer.id, offer.token) == archive
    assert handout.was_taken(offer.id)
    assert handout.take(offer.id, offer.token) is None
    assert handout.was_taken(offer.id)


def test_offers_have_random_url_safe_ids_and_long_tokens_kept_out_of_their_repr(archive: Path) -> None:
    handout = ContextHandout()
    offers = [handout.offer(archive) for _ in range(50)]
    assert len({o.id for o in offers}) == 50 and len({o.token for o in offers}) == 50
    for offer in offers:
        assert len(offer.id) >= 22 and len(offer.token) >= 43  # 16 and 32 bytes, base64url
        assert set(offer.id + offer.token) <= set(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        )
        assert offer.token not in repr(offer) and offer.id in repr(offer)
    with pytest.raises(AttributeError):
        offers[0].token = "changed"  # type: ignore[misc]


def test_the_handout_keeps_no_token_only_its_hash(archive: Path) -> None:
    handout = ContextHandout()
    offer = handout.offer(archive)
    held = repr(vars(handout)) + "".join(repr(vars(e)) for e in vars(handout)["_entries"].values())
    assert offer.id in held and offer.token not in held and offer.token.encode() not in held.encode()


def test_a_wrong_token_is_refused_and_uses_nothing_up(archive: Path) -> None:
    handout = ContextHandout()
    offer = handout.offer(archive)
    other = handout.offer(archive)
    for wrong in ("", "x", offer.token[:-1], offer.token + "x", other.token):
        with pytest.raises(WrongToken):
            handout.take(offer.id, wrong)
    assert not handout.was_taken(offer.id)
    assert handout.take(offer.id, offer.token) == archive
    # once taken there is nothing left to refuse: any token finds nothing
    assert handout.take(offer.id, "x") is None


def test_unknown_and_expired_offers_are_not_found(archive: Path) -> None:
    clock = Clock()
    handout = ContextHandout(clock=clock)
    assert handout.take("no-such-offer", "token") is None
    assert not handout.was_taken("no-such-offer")
    offer = handout.offer(archive, ttl=60)
    clock.now += 59.9
    with pytest.raises(WrongToken):  # still on offer
        handout.take(offer.id, "x")
    clock.now += 0.1
    assert handout.take(offer.id, "x") is None
    assert handout.take(offer.id, offer.token) is None
    assert not handout.was_taken(offer.id)
    handout.withdraw(offer.id)


def test_expired_offers_are_dropped_while_taken_ones_are_remembered_until_withdrawn(archive: Path) -> None:
    clock = Clock()
    handout = ContextHandout(clock=clock)
    taken = handout.offer(archive, ttl=10)
    left = [handout.offer(archive, ttl=10) for _ in range(100)]
    assert handout.take(taken.id, taken.token) == archive
    clock.now += 3600  # a build longer than the offer
    fresh = handout.offer(archive)  # any use of the handout drops what expired
    assert set(vars(handout)["_entries"]) == {taken.id, fresh.id}
    assert handout.was_taken(taken.id)
    assert not any(handout.was_taken(o.id) for o in left)
    handout.withdraw(taken.id)
    assert not handout.was_taken(taken.id)


def test_withdraw_forgets_an_offer_and_may_be_repeated(archive: Path) -> None:
    handout = ContextHandout()
    offer = handout.offer(archive)
    handout.withdraw(offer.id)
    handout.withdraw(offer.id)
    handout.withdraw("never-offered")
    assert handout.take(offer.id, offer.token) is None
    assert not handout.was_taken(offer.id)


def test_offers_are_checked(archive: Path, tmp_path: Path) -> None:
    handout = ContextHandout()
    with pytest.raises(FileNotFoundError):
        handout.offer(tmp_path / "missing.tar")
    with pytest.raises(FileNotFoundError):
        handout.offer(tmp_path)  # a directory
    for ttl in (0, -1):
        with pytest.raises(ValueError, match="ttl"):
            handout.offer(archive, ttl=ttl)


def test_of_racing_takes_with_the_right_token_exactly_one_wins(archive: Path) -> None:
    handout = ContextHandout()
    threads = 32
    for _ in range(20):
        offer = handout.offer(archive)
        start = threading.Barrier(threads)

        def take(offer: Offer = offer, start: threading.Barrier = start) -> Path | None:
            start.wait()
            return handout.take(offer.id, offer.token)

        with ThreadPoolExecutor(threads) as pool:
            results = list(pool.map(lambda _: take(), range(threads)))
        assert results.count(archive) == 1 and results.count(None) == threads - 1
        assert handout.was_taken(offer.id)


# ---- GET /build-contexts/{id} on a real lifecycle ------------------------------------------------


@dataclass
class Lifecycle:
    url: str
    plane: ControlPlane

    @property
    def handout(self) -> ContextHandout:
        return self.plane.context_handout

    def context_url(self, offer: Offer, prefix: str = PREFIXES[0]) -> str:
        return f"{self.url}{prefix}/build-contexts/{offer.id}"

    def fetch(self, offer: Offer, token: str | None, prefix: str = PREFIXES[0]) -> httpx.Response:
        headers = {} if token is None else {TOKEN_HEADER: token}
        return httpx.get(self.context_url(offer, prefix), headers=headers, timeout=30)


@pytest.fixture(scope="module")
def lifecycle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lifecycle]:
    data = tmp_path_factory.mktemp("build-contexts")
    # no plane.start(): no jobs run here, and no admin is needed (the build token is the only key)
    plane = ControlPlane(lifecycle_config(data), pub_url="http://127.0.0.1:7200/pub")
    try:
        # uvicorn's loggers as they are, access log on: what the tests capture must include it
        with served(
            create_app(plane), log_config=None, log_level="info", access_log=True, timeout_graceful_shutdown=2
        ) as url:
            yield Lifecycle(url, plane)
    finally:
        plane.stop()


def assert_error(r: httpx.Response, status: int, error_type: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["type"] == error_type and isinstance(body["error"], str) and body["error"], body


@pytest.mark.parametrize("prefix", PREFIXES)
def test_the_build_pod_fetches_the_archive_once_without_a_racetrack_token(
    lifecycle: Lifecycle, archive: Path, prefix: str
) -> None:
    offer = lifecycle.handout.offer(archive)
    r = lifecycle.fetch(offer, offer.token, prefix)
    assert r.status_code == 200, r.text
    assert r.content == archive.read_bytes()
    assert r.headers["content-type"] == "application/x-tar"
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["content-length"] == str(archive.stat().st_size)
    assert lifecycle.handout.was_taken(offer.id)
    assert_error(lifecycle.fetch(offer, offer.token, prefix), 404, "NotFound")
    lifecycle.handout.withdraw(offer.id)
    assert_error(lifecycle.fetch(offer, offer.token, prefix), 404, "NotFound")


def test_no_token_is_401_and_a_wrong_one_403_and_neither_uses_the_offer_up(
    lifecycle: Lifecycle, archive: Path
) -> None:
    offer = lifecycle.handout.offer(archive)
    assert_error(lifecycle.fetch(offer, None), 401, "Unauthenticated")
    assert_error(lifecycle.fetch(offer, ""), 401, "Unauthenticated")
    assert TOKEN_HEADER in lifecycle.fetch(offer, None).json()["error"]
    assert_error(lifecycle.fetch(offer, "not-the-token"), 403, "Forbidden")
    assert_error(lifecycle.fetch(offer, offer.token[::-1]), 403, "Forbidden")
    # a lifecycle token is no build token
    r = httpx.get(lifecycle.context_url(offer), headers={"X-Racetrack-Auth": offer.token}, timeout=30)
    assert_error(r, 401, "Unauthenticated")
    assert not lifecycle.handout.was_taken(offer.id)
    r = lifecycle.fetch(offer, offer.token)
    assert r.status_code == 200 and r.content == archive.read_bytes()
    assert_error(lifecycle.fetch(offer, "not-the-token"), 404, "NotFound")
    lifecycle.handout.withdraw(offer.id)


def test_unknown_expired_and_withdrawn_offers_are_404(lifecycle: Lifecycle, archive: Path) -> None:
    unknown = Offer(id="no-such-build-context", token="whatever")
    assert_error(lifecycle.fetch(unknown, unknown.token), 404, "NotFound")
    expiring = lifecycle.handout.offer(archive, ttl=0.2)
    withdrawn = lifecycle.handout.offer(archive)
    lifecycle.handout.withdraw(withdrawn.id)
    assert_error(lifecycle.fetch(withdrawn, withdrawn.token), 404, "NotFound")
    time.sleep(0.3)
    assert_error(lifecycle.fetch(expiring, expiring.token), 404, "NotFound")
    assert not lifecycle.handout.was_taken(expiring.id)


def test_an_archive_the_builder_deleted_is_404(lifecycle: Lifecycle, tmp_path: Path) -> None:
    doomed = write_tar(tmp_path / "doomed.tar")
    offer = lifecycle.handout.offer(doomed)
    doomed.unlink()
    assert_error(lifecycle.fetch(offer, offer.token), 404, "NotFound")
    lifecycle.handout.withdraw(offer.id)


def test_the_build_token_is_in_no_log_line(
    lifecycle: Lifecycle, archive: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    offer = lifecycle.handout.offer(archive)
    wrong = "a-wrong-token-that-must-not-be-logged-either"
    assert lifecycle.fetch(offer, wrong).status_code == 403
    assert lifecycle.fetch(offer, offer.token).status_code == 200
    assert lifecycle.fetch(offer, offer.token).status_code == 404
    deadline = time.monotonic() + 5  # the access log line is written after the response
    while caplog.text.count(f"/build-contexts/{offer.id}") < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    logged = caplog.text
    # the logs were captured: the access log's lines and the endpoint's own are there
    assert logged.count(f"/build-contexts/{offer.id}") >= 3, logged
    assert f"build context {offer.id} handed out" in logged, logged
    assert offer.token not in logged and wrong not in logged
    lifecycle.handout.withdraw(offer.id)


def test_concurrent_fetches_over_http_get_the_archive_once(lifecycle: Lifecycle, archive: Path) -> None:
    offer = lifecycle.handout.offer(archive)
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda _: lifecycle.fetch(offer, offer.token), range(16)))
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [200] + [404] * 15, statuses
    (ok,) = [r for r in answers if r.status_code == 200]
    assert ok.content == archive.read_bytes()
    lifecycle.handout.withdraw(offer.id)


# ---- the build pod's init container, run here: wget and tar --------------------------------------


def init_container(url: str, token: str) -> dict[str, object]:
    build = KanikoBuild(
        build_id="d-1",
        job_name="adder",
        job_version="0.0.1",
        destination="registry.example.com/jobs/adder:0.0.1",
        context=UploadedContext(url=url, token=token),
    )
    objects = kaniko_objects(build, KanikoSettings(repository="registry.example.com/jobs"))
    (container,) = objects.job["spec"]["template"]["spec"]["initContainers"]
    return dict(container)


def run_init_container(url: str, token: str, root: Path) -> subprocess.CompletedProcess[str]:
    """The init container's command, with its workspace and temporary folder under `root`."""
    if shutil.which("wget") is None:
        reason = "wget is not installed (the build pod's init container fetches its context with it)"
        if IN_CI:
            pytest.fail(f"{reason}; CI=true: a missing real component fails the suite")
        pytest.skip(reason)
    container = init_container(url, token)
    command = container["command"]
    assert isinstance(command, list)
    (root / "tmp").mkdir(parents=True)
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(root / "tmp"),
        "TMPDIR": str(root / "tmp"),
        "CONTEXT_DIR": str(root / "context"),
        "SCAFFOLD_DIR": str(root / "scaffold"),
        "CONTEXT_URL": url,
        "BUILD_TOKEN": token,
    }
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)


def test_the_init_container_script_fetches_and_unpacks_the_context(
    lifecycle: Lifecycle, archive: Path, tmp_path: Path
) -> None:
    offer = lifecycle.handout.offer(archive)
    url = lifecycle.context_url(offer)
    done = run_init_container(url, offer.token, tmp_path / "pod")
    assert done.returncode == 0, done.stderr
    context = tmp_path / "pod" / "context"
    unpacked = {p.relative_to(context).as_posix(): p.read_bytes() for p in context.rglob("*") if p.is_file()}
    assert unpacked == FILES
    assert not list((tmp_path / "pod" / "tmp").glob("*.tar"))
    assert lifecycle.handout.was_taken(offer.id)
    # a pod that runs again (a retried init container) finds nothing and fails
    again = run_init_container(url, offer.token, tmp_path / "again")
    assert again.returncode != 0
    lifecycle.handout.withdraw(offer.id)


def test_the_init_container_fails_on_a_wrong_token_and_leaves_the_offer(
    lifecycle: Lifecycle, archive: Path, tmp_path: Path
) -> None:
    offer = lifecycle.handout.offer(archive)
    done = run_init_container(lifecycle.context_url(offer), "not-the-token", tmp_path / "pod")
    assert done.returncode != 0
    assert not list((tmp_path / "pod" / "context").rglob("*.py"))
    assert not lifecycle.handout.was_taken(offer.id)
    assert lifecycle.fetch(offer, offer.token).content == archive.read_bytes()
    lifecycle.handout.withdraw(offer.id)
