"""`list`, `status`, `logs`, `build-logs`, `delete` and `call` through the real entry point,
against a real `trackside up` running sample-jobs/adder (deployed from a git repository)."""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cli.cli_runner import Cli, read_until
from tests.conftest import SAMPLE_JOBS
from tests.gitservers import file_url, make_repo
from tests.lifecycle.platform import TracksideUp

ADDER_FILES = {name: (SAMPLE_JOBS / "adder" / name).read_text() for name in ("entrypoint.py", "job.yaml")}
JOB_FIELDS = {
    "name",
    "version",
    "status",
    "error",
    "owner_email",
    "deployed_by",
    "infrastructure_target",
    "replicas",
    "create_time",
    "update_time",
    "last_call_time",
    "pub_url",
}


class Platform:
    def __init__(self, up: TracksideUp, repo_url: str, bob_token: str) -> None:
        self.up = up
        self.repo_url = repo_url
        self.bob_token = bob_token

    def manifest(self, name: str, version: str = "0.0.1") -> dict[str, Any]:
        return {
            "name": name,
            "owner_email": "sample@example.com",
            "jobtype": "python3:latest",
            "version": version,
            "git": {"remote": self.repo_url},
            "jobtype_extra": {"entrypoint_path": "entrypoint.py"},
        }

    def deploy(self, name: str, version: str = "0.0.1") -> None:
        result = self.up.wait(self.up.deploy(self.manifest(name, version)))
        assert result["status"] == "done", result

    def exists(self, name: str, version: str) -> bool:
        return self.up.client.get(f"/api/v1/job/{name}/{version}").status_code == 200


@pytest.fixture(scope="module")
def platform(module_tmp: Path) -> Iterator[Platform]:
    repo = make_repo(module_tmp / "adder-repo", ADDER_FILES)
    up = TracksideUp(module_tmp / "data", module_tmp / "up.log")
    try:
        r = up.client.post("/api/v1/users", json={"username": "bob", "password": "bob's long password"})
        assert r.status_code == 201, r.text
        r = up.client.post("/api/v1/users/bob/tokens", json={"description": "tests"})
        assert r.status_code == 201, r.text
        platform = Platform(up, file_url(repo), r.json()["token"])
        platform.deploy("adder")
        yield platform
    finally:
        up.stop()


@pytest.fixture
def cli(tmp_path: Path, platform: Platform) -> Cli:
    return Cli(tmp_path / "config", remote=platform.up.url, token=platform.up.token)


def pub(platform: Platform, name: str = "adder", version: str = "0.0.1") -> str:
    return f"{platform.up.url}/pub/job/{name}/{version}"


# ---- list and status ----------------------------------------------------------------------------


def test_list(cli: Cli, platform: Platform) -> None:
    result = cli.run("list")
    assert result.rc == 0, result
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["NAME", "VERSION", "STATUS", "DEPLOYED", "BY", "UPDATED", "URL"]
    adder = next(row.split() for row in rows if row.startswith("adder "))
    assert adder[:3] == ["adder", "0.0.1", "running"]
    assert adder[-1] == pub(platform)

    listed = cli.run("list", "--json")
    assert listed.rc == 0, listed
    jobs = listed.json()
    assert isinstance(jobs, list)
    for job in jobs:
        assert set(job) == JOB_FIELDS
    job = next(j for j in jobs if j["name"] == "adder")
    assert job["version"] == "0.0.1" and job["status"] == "running" and job["error"] is None
    assert job["pub_url"] == pub(platform)
    assert job["deployed_by"] == "User admin" and job["owner_email"] == "sample@example.com"
    assert isinstance(job["create_time"], float)


def test_list_with_no_jobs_and_without_a_token(cli: Cli, tmp_path: Path, platform: Platform) -> None:
    empty = TracksideUp(tmp_path / "empty-data", tmp_path / "empty.log")
    try:
        result = cli.run("list", "--remote", empty.url, env={"TRACKSIDE_TOKEN": empty.token})
        assert result.rc == 0, result
        assert result.stdout == f"No jobs on {empty.url} yet; deploy one with `trackside deploy DIR`.\n"
        assert (
            cli.run("list", "--json", "--remote", empty.url, env={"TRACKSIDE_TOKEN": empty.token}).json()
            == []
        )
    finally:
        empty.stop()
    anonymous = cli.run("list", env={"TRACKSIDE_TOKEN": None})
    assert anonymous.rc == 4, anonymous
    assert anonymous.stderr.startswith(f"Error: not logged in to {platform.up.url}")


def test_status(cli: Cli, platform: Platform) -> None:
    result = cli.run("status", "adder")
    assert result.rc == 0, result
    fields = dict(line.split(":", 1) for line in result.stdout.splitlines())
    assert fields["name"].strip() == "adder"
    assert fields["version"].strip() == "0.0.1"
    assert fields["status"].strip() == "running"
    assert fields["url"].strip() == pub(platform)
    assert fields["deployed by"].strip() == "User admin"

    detail = cli.run("status", "adder", "--version", "0.x", "--json")
    assert detail.rc == 0, detail
    job = detail.json()
    assert set(job) == JOB_FIELDS | {"deployment_id", "labels", "manifest"}
    assert job["version"] == "0.0.1"
    assert job["manifest"]["name"] == "adder" and job["manifest"]["git"]["remote"] == platform.repo_url
    assert job["deployment_id"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["status", "nosuchjob"], "Error: job nosuchjob not found\n"),
        (
            ["status", "adder", "--version", "9.9.9"],
            "Error: job adder has no version matching '9.9.9' (has: 0.0.1)\n",
        ),
        (["logs", "nosuchjob"], "Error: job nosuchjob not found\n"),
        (["build-logs", "nosuchjob"], "Error: no deployment of job nosuchjob latest\n"),
        (["delete", "nosuchjob", "--version", "1.0.0", "--yes"], "Error: job nosuchjob not found\n"),
    ],
)
def test_what_does_not_exist_exits_with_3(cli: Cli, args: list[str], message: str) -> None:
    result = cli.run(*args)
    assert result.rc == 3, result
    assert result.stderr == message


# ---- logs -----------------------------------------------------------------------------------------


def test_logs(cli: Cli) -> None:
    result = cli.run("logs", "adder", "--tail", "0")
    assert result.rc == 0, result
    assert "replica 0 started on port" in result.stdout
    last = cli.run("logs", "adder", "-n", "1")
    assert last.rc == 0 and len(last.stdout.splitlines()) == 1, last
    shown = cli.run("logs", "adder", "--json")
    assert shown.rc == 0, shown
    body = shown.json()
    assert body["name"] == "adder" and body["version"] == "0.0.1"
    assert any("started on port" in line for line in body["lines"])
    both = cli.run("logs", "adder", "--follow", "--json")
    assert both.rc == 2 and "--json and --follow" in both.stderr, both


def test_logs_follow_shows_new_lines_until_ctrl_c(cli: Cli, platform: Platform) -> None:
    process = cli.start("logs", "adder", "--follow", "--tail", "1")
    try:
        read_until(process, "[replica 0]")  # the one line of history
        marker = "follow-marker-" + str(time.monotonic_ns())
        r = httpx.post(
            pub(platform) + "/api/v1/perform",
            json={"numbers": [1]},
            headers={"X-Racetrack-Auth": platform.up.token, "X-Request-Tracing-Id": marker},
        )
        assert r.status_code == 200, r.text
        assert "/api/v1/perform" in read_until(process, marker)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
        assert process.returncode == 0, stderr
        assert "Traceback" not in stderr and "Aborted" not in stderr
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def test_build_logs(cli: Cli) -> None:
    result = cli.run("build-logs", "adder")
    assert result.rc == 0, result
    assert "environment" in result.stdout and platform_commit_line(result.stdout)
    tail = cli.run("build-logs", "adder", "--version", "0.0.1", "--tail", "2")
    assert tail.rc == 0 and tail.stdout.splitlines() == result.stdout.splitlines()[-2:], tail
    shown = cli.run("build-logs", "adder", "--json")
    body = shown.json()
    status = cli.run("status", "adder", "--json").json()
    assert body == {
        "name": "adder",
        "version": "latest",
        "deployment_id": status["deployment_id"],
        "lines": result.stdout.splitlines(),
    }


def platform_commit_line(log: str) -> bool:
    return any(line.startswith("git:") or "commit" in line for line in log.splitlines())


# ---- call -----------------------------------------------------------------------------------------


def test_call_with_every_kind_of_payload(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "in.json").write_text('{"numbers": [1, 2], "offset": 0.5}')
    (tmp_path / "in.yaml").write_text("numbers:\n  - 10\n  - 20\n")
    (tmp_path / "in.txt").write_text("numbers: [3]")
    cases: list[tuple[list[str], str | None, str]] = [
        (["adder", '{"numbers": [40, 2]}'], None, "42.0"),
        (["adder", "numbers: [1, 2]", "--version", "0.0.1"], None, "3.0"),
        (["adder", "{numbers: [5], offset: 1}", "--version", "0.x", "--path", "api/v1/perform"], None, "6.0"),
        (["adder", f"@{tmp_path / 'in.json'}"], None, "3.5"),
        (["adder", f"@{tmp_path / 'in.yaml'}"], None, "30.0"),
        (["adder", f"@{tmp_path / 'in.txt'}"], None, "3.0"),
        (["adder", "-"], '{"numbers": [7]}', "7.0"),
    ]
    for args, stdin, expected in cases:
        result = cli.run("call", *args, input=stdin)
        assert result.rc == 0, (args, result)
        assert result.stdout == expected + "\n", (args, result)


def test_call_errors(cli: Cli, platform: Platform, tmp_path: Path) -> None:
    cases: list[tuple[list[str], int, str]] = [
        (["adder", "{numbers: [1"], 2, "Error: the payload is neither JSON nor YAML"),
        (
            ["adder", "@" + str(tmp_path / "missing.json")],
            2,
            f"Error: payload file {tmp_path / 'missing.json'}: no such",
        ),
        (["adder", '{"numbers": "many"}'], 2, "Error: invalid arguments: numbers"),
        (["adder", "{}", "--path", "/api/v1/nope"], 3, "Error: not found: /pub/job/adder/0.0.1/api/v1/nope"),
        (["nosuchjob", "{}"], 3, "Error:"),
    ]
    for args, rc, message in cases:
        result = cli.run("call", *args)
        assert result.rc == rc, (args, result)
        assert result.stderr.startswith(message), (args, result)
    (tmp_path / "bad.json").write_text("numbers: [1]")
    bad = cli.run("call", "adder", f"@{tmp_path / 'bad.json'}")
    assert bad.rc == 2 and "is not valid JSON" in bad.stderr, bad
    anonymous = cli.run("call", "adder", "{}", env={"TRACKSIDE_TOKEN": None})
    assert anonymous.rc == 4 and "not logged in" in anonymous.stderr, anonymous


def test_call_curl_prints_a_command_that_works(cli: Cli, platform: Platform) -> None:
    result = cli.run("call", "adder", "numbers: [40, 2]", "--curl")
    assert result.rc == 0, result
    words = shlex.split(result.stdout)
    assert words[:4] == ["curl", "-X", "POST", pub(platform, version="latest") + "/api/v1/perform"]
    assert f"X-Racetrack-Auth: {platform.up.token}" in words
    assert json.loads(words[words.index("-d") + 1]) == {"numbers": [40, 2]}
    done = subprocess.run([*words, "-s", "--fail-with-body"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and done.stdout == "42.0", done


# ---- delete ---------------------------------------------------------------------------------------


def test_delete_without_yes_needs_a_terminal(cli: Cli, platform: Platform) -> None:
    platform.deploy("doomed-1")
    refused = cli.run("delete", "doomed-1", "--version", "0.0.1")
    assert refused.rc == 2, refused
    assert (
        "not deleting doomed-1 0.0.1 without confirmation: stdin is not a terminal; pass --yes"
        in refused.stderr
    )
    assert platform.exists("doomed-1", "0.0.1")

    forbidden = cli.run(
        "delete", "doomed-1", "--version", "0.0.1", "--yes", env={"TRACKSIDE_TOKEN": platform.bob_token}
    )
    assert forbidden.rc == 4, forbidden
    assert "delete_job" in forbidden.stderr
    assert platform.exists("doomed-1", "0.0.1")

    deleted = cli.run("delete", "doomed-1", "--version", "0.0.1", "--yes")
    assert deleted.rc == 0 and deleted.stdout == "Deleted doomed-1 0.0.1.\n", deleted
    assert not platform.exists("doomed-1", "0.0.1")
    assert cli.run("status", "doomed-1").rc == 3


def test_delete_asks_at_a_terminal(cli: Cli, platform: Platform) -> None:
    platform.deploy("doomed-2")
    kept = cli.terminal("delete", "doomed-2", "--version", "latest", replies=[("[y/N]: ", "n")])
    assert kept.rc == 1, kept
    assert "Delete doomed-2 0.0.1 (running) from" in kept.stdout
    assert "not deleted: doomed-2 0.0.1 is still there" in kept.stdout
    assert platform.exists("doomed-2", "0.0.1")

    gone = cli.terminal("delete", "doomed-2", "--version", "0.0.1", replies=[("[y/N]: ", "y")])
    assert gone.rc == 0, gone
    assert "Deleted doomed-2 0.0.1." in gone.stdout
    assert not platform.exists("doomed-2", "0.0.1")
