"""Deploying through the lifecycle API: real git repositories, real environments, real job processes."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import SAMPLE_JOBS
from tests.gitservers import GitHttpsServer, commit_files, file_url, make_repo
from tests.lifecycle.platform import Platform, job_manifest, running_platform

ADDER_FILES = {
    "entrypoint.py": (SAMPLE_JOBS / "adder" / "entrypoint.py").read_text(),
    "requirements.txt": "",
}


manifest = job_manifest


@pytest.fixture(scope="module")
def platform(
    tmp_path_factory: pytest.TempPathFactory, git_https_server: GitHttpsServer
) -> Iterator[Platform]:
    with running_platform(tmp_path_factory.mktemp("lifecycle-data"), git_env=git_https_server.git_env) as p:
        yield p


@pytest.fixture(scope="module")
def adder_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_repo(tmp_path_factory.mktemp("repos") / "adder", ADDER_FILES)


def test_deploy_from_a_file_repository_runs_the_job(platform: Platform, adder_repo: Path) -> None:
    result = platform.deploy_and_wait(manifest("adder", file_url(adder_repo)))
    assert result["status"] == "done", result
    assert result["job"]["pub_url"] == "http://127.0.0.1:7200/pub/job/adder/0.0.1"
    assert [p["name"] for p in result["phases"]] == [
        "fetching the source code",
        "building the environment",
        "starting the job",
        "initialising the entrypoint",
        "checking the input examples",
        "done",
    ]
    r = httpx.post(platform.address("adder") + "/api/v1/perform", json={"numbers": [40, 2]})
    assert r.json() == 42

    jobs = platform.client.get("/api/v1/job", headers=platform.headers()).json()
    assert [(j["name"], j["version"], j["status"]) for j in jobs] == [("adder", "0.0.1", "running")]
    for alias in ("0.0.1", "latest", "0.x", "0.0.x"):
        job = platform.client.get(f"/api/v1/job/adder/{alias}", headers=platform.headers()).json()
        assert job["version"] == "0.0.1" and job["status"] == "running"

    build_log = platform.client.get("/api/v1/job/adder/0.0.1/build-logs", headers=platform.headers()).json()
    assert (
        "fetched commit" in build_log["logs"]
        and "input example for /api/v1/perform: 200" in build_log["logs"]
    )
    logs = platform.client.get("/lifecycle/api/v1/job/adder/0.0.1/logs?tail=50", headers=platform.headers())
    assert '"POST /api/v1/perform" 200' in logs.json()["logs"]


def test_redeploy_needs_force_and_reuses_the_environment(platform: Platform, adder_repo: Path) -> None:
    body = manifest("adder", file_url(adder_repo))
    conflict = platform.post_deploy(body)
    assert conflict.status_code == 409 and "already exists" in conflict.json()["error"]

    commit_files(
        adder_repo,
        {
            "entrypoint.py": ADDER_FILES["entrypoint.py"].replace(
                "return sum(numbers) + offset", "return sum(numbers) + offset + 1000"
            )
        },
    )
    started = time.monotonic()
    r = platform.client.post(
        "/api/v1/deploy", json={"manifest": body, "force": True}, headers=platform.headers()
    )
    assert r.status_code == 202, r.text
    result = platform.wait(r.json()["id"])
    elapsed = time.monotonic() - started
    assert result["status"] == "done", result
    build_log = platform.client.get("/api/v1/job/adder/0.0.1/build-logs", headers=platform.headers()).json()
    assert "environment reused from cache" in build_log["logs"]
    assert httpx.post(platform.address("adder") + "/api/v1/perform", json={"numbers": [1]}).json() == 1001
    assert elapsed < 60  # generous: only says that no environment was rebuilt


def test_invalid_manifest_is_refused_and_nothing_is_stored(platform: Platform) -> None:
    before = platform.client.get("/api/v1/deploy", headers=platform.headers()).json()
    r = platform.client.post(
        "/api/v1/deploy",
        headers=platform.headers(),
        json={
            "manifest": {
                "name": "Bad_Name",
                "owner_email": "x",
                "jobtype": "python3:latest",
                "git": {"remote": "ftp://x"},
                "jobtype_extra": {"entrypoint_path": "e.py", "max_concurrency": 0},
                "runtime_env": {"PUB_URL": "x"},
                "surprise": 1,
            }
        },
    )
    assert r.status_code == 400
    error = r.json()
    assert error["type"] == "InvalidManifest"
    fields = {e["field"] for e in error["errors"]}
    assert {
        "name",
        "git.remote",
        "jobtype_extra.max_concurrency",
        "runtime_env.PUB_URL",
        "surprise",
    } <= fields
    assert platform.client.get("/api/v1/deploy", headers=platform.headers()).json() == before


def test_failing_deploys_leave_no_job_behind(platform: Platform, tmp_path: Path) -> None:
    bad_example = make_repo(
        tmp_path / "bad-example",
        {
            "entrypoint.py": "class J:\n    def perform(self, x: int) -> int:\n        if x == 1:\n"
            "            raise ValueError('one is not allowed')\n        return x\n"
            "    def docs_input_example(self):\n        return {'x': 1}\n",
        },
    )
    result = platform.deploy_and_wait(manifest("bad-example", file_url(bad_example)))
    assert result["status"] == "failed"
    assert "input example for /api/v1/perform answered 400" in result["error"]
    assert "one is not allowed" in result["error"]

    broken = make_repo(tmp_path / "broken", {"entrypoint.py": "import not_a_module_anywhere\n"})
    result = platform.deploy_and_wait(manifest("broken", file_url(broken)))
    assert result["status"] == "failed"
    assert result["phase"] == "initialising the entrypoint"
    assert "not_a_module_anywhere" in result["error"]

    missing_dep = make_repo(
        tmp_path / "missing-dep",
        {
            "entrypoint.py": "class J:\n    def perform(self):\n        return 1\n",
            "requirements.txt": "trackside-no-such-package-xyz==1.0\n",
        },
    )
    result = platform.deploy_and_wait(
        manifest(
            "missing-dep",
            file_url(missing_dep),
            jobtype_extra={"entrypoint_path": "entrypoint.py", "requirements_path": "requirements.txt"},
        )
    )
    assert result["status"] == "failed" and result["phase"] == "building the environment"
    assert "trackside-no-such-package-xyz" in result["error"]

    result = platform.deploy_and_wait(
        manifest("nobranch", file_url(broken), git={"remote": file_url(broken), "branch": "does-not-exist"})
    )
    assert result["status"] == "failed" and "does-not-exist" in result["error"]

    names = {j["name"] for j in platform.client.get("/api/v1/job", headers=platform.headers()).json()}
    assert not names & {"bad-example", "broken", "missing-dep", "nobranch"}


def test_https_repository_with_credentials(platform: Platform, git_https_server: GitHttpsServer) -> None:
    git_https_server.make_repo("private-adder.git", ADDER_FILES)
    body = manifest("private-adder", git_https_server.url_for("private-adder.git"))
    wrong = platform.client.post(
        "/api/v1/deploy",
        headers=platform.headers(),
        json={"manifest": body, "git_credentials": {"username": "alice", "password": "wrong-password-123"}},
    )
    result = platform.wait(wrong.json()["id"])
    assert result["status"] == "failed" and "check the git username and token" in result["error"]
    assert "wrong-password-123" not in str(result)

    right = platform.client.post(
        "/api/v1/deploy",
        headers=platform.headers(),
        json={
            "manifest": body,
            "git_credentials": {"username": git_https_server.username, "password": git_https_server.password},
            "secret_vars": {"runtime_env": {"API_KEY": "runtime-secret-456"}},
        },
    )
    result = platform.wait(right.json()["id"])
    assert result["status"] == "done", result
    log = platform.client.get("/api/v1/job/private-adder/latest/build-logs", headers=platform.headers()).text
    assert git_https_server.password not in log and "runtime-secret-456" not in log
    database = (platform.plane.config.data_dir / "trackside.db").read_bytes()
    assert b"runtime-secret-456" not in database and git_https_server.password.encode() not in database


def test_a_killed_job_process_comes_back(platform: Platform) -> None:
    replica = platform.plane.runner.serving("adder", "0.0.1")[0]
    assert replica.pid is not None
    os.kill(replica.pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        serving = platform.plane.runner.serving("adder", "0.0.1")
        if serving and serving[0].pid != replica.pid:
            break
        time.sleep(0.05)
    assert httpx.post(platform.address("adder") + "/api/v1/perform", json={"numbers": [1]}).status_code == 200


def test_auth_is_required(platform: Platform) -> None:
    assert platform.client.get("/api/v1/job").status_code == 401
    r = platform.client.get("/api/v1/job", headers={"X-Racetrack-Auth": "tst_not-a-real-token"})
    assert r.status_code == 401 and r.json()["type"] == "Unauthenticated"
    info = platform.client.get("/api/v1/info").json()
    assert info["auth_required"] is True and info["external_pub_url"] == "http://127.0.0.1:7200/pub"
    who = platform.client.get("/api/v1/users/validate_user_auth", headers=platform.headers()).json()
    assert who["username"] == "admin"


def test_delete_stops_the_job(platform: Platform) -> None:
    address = platform.address("adder")
    r = platform.client.delete("/api/v1/job/adder/0.0.1", headers=platform.headers())
    assert r.status_code == 200
    assert platform.client.get("/api/v1/job/adder/0.0.1", headers=platform.headers()).status_code == 404
    with pytest.raises(httpx.TransportError):
        httpx.get(address + "/live", timeout=2)


def test_a_second_deploy_of_a_version_in_progress_gets_409(platform: Platform, tmp_path: Path) -> None:
    slow = make_repo(
        tmp_path / "slowpoke",
        {
            "entrypoint.py": "import time\nclass J:\n    def __init__(self):\n        time.sleep(3)\n"
            "    def perform(self):\n        return 'slow'\n",
        },
    )
    body = manifest("slowpoke", file_url(slow))
    first = platform.post_deploy(body)
    assert first.status_code == 202
    second = platform.client.post(
        "/api/v1/deploy", json={"manifest": body, "force": True}, headers=platform.headers()
    )
    assert second.status_code == 409
    assert second.json() == {
        "error": "job slowpoke 0.0.1 is being deployed right now; wait for it to finish",
        "type": "Conflict",
    }
    assert platform.wait(first.json()["id"])["status"] == "done"


def test_unknown_job_type_and_swagger_at_the_root(platform: Platform, adder_repo: Path) -> None:
    r = platform.post_deploy(
        manifest(
            "golang-job", file_url(adder_repo), jobtype="golang:latest", jobtype_extra={"gin_mode": "release"}
        )
    )
    assert r.status_code == 400
    assert "unknown job type 'golang:latest'" in r.json()["error"]
    for path in ("/", "/lifecycle", "/lifecycle/"):
        home = platform.client.get(path, follow_redirects=False)
        assert home.status_code == 307 and home.headers["location"] == "/lifecycle/docs"
    assert "swagger" in platform.client.get("/lifecycle/docs").text.lower()


def test_public_endpoints_of_a_deploy_wait_for_approval(platform: Platform, adder_repo: Path) -> None:
    result = platform.deploy_and_wait(
        manifest("pub-adder", file_url(adder_repo), public_endpoints=["/api/v1/perform", "/docs"])
    )
    assert result["status"] == "done", result
    pending = platform.client.get(
        "/api/v1/public-endpoints",
        params={"status": "pending", "job_name": "pub-adder"},
        headers=platform.headers(),
    ).json()
    assert sorted((p["endpoint"], p["job_version"]) for p in pending) == [
        ("/api/v1/perform", "0.0.1"),
        ("/docs", "0.0.1"),
    ]
    audit = platform.client.get(
        "/api/v1/audit", params={"action": "public_endpoint.request"}, headers=platform.headers()
    ).json()
    assert any(e["target"] == "pub-adder 0.0.1" for e in audit["events"])


def test_two_first_deploys_of_a_new_family_at_once_both_succeed(platform: Platform, adder_repo: Path) -> None:
    # both grant their deployer the family's ownership when they finish: the second must not clash
    ids = [platform.deploy(manifest("twins", file_url(adder_repo), version=v)) for v in ("1.0.0", "1.0.1")]
    results = [platform.wait(i) for i in ids]
    assert [r["status"] for r in results] == ["done", "done"], [r.get("error") for r in results]
