"""Racetrack's own CLI (`racetrack`, from racetrack-client) against a real `trackside up`.

One platform for the module: `trackside up` on a free port, an HTTPS git server with the adder
(the client accepts only https:// remotes), and the CLI with a home of its own (it keeps its
config in ~/.racetrack/config.yaml). The module fixture does what a user does first: log in with
the admin token, set the remote, give git credentials, deploy adder from git and env-secret
from a local directory; the tests check what the user saw and go on from there.

The client logs its progress only when stdout is a terminal, so commands whose messages matter
run in a pseudo-terminal (`terminal=True`); the others run as in a script, where stdout holds
only what the command prints (the table, the logs, the answer). A failed command exits with 70
(os.EX_SOFTWARE) and prints the lifecycle's error message.
"""

from __future__ import annotations

import json
import os
import pty
import re
import secrets
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import IN_CI, SAMPLE_JOBS
from tests.gitservers import GitHttpsServer, head_commit
from tests.lifecycle.platform import TracksideUp

FAILED = os.EX_SOFTWARE  # how racetrack exits on any failed operation
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_CLIENT_LOG_VARIABLES = ("LOG_LEVEL", "LOG_STRUCTURED", "LOG_CALLER_NAME", "LOG_FORMAT_DEBUG")


@dataclass(frozen=True)
class Run:
    code: int
    stdout: str
    stderr: str = ""

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def __str__(self) -> str:
        return f"exit {self.code}\n{self.output}"


@dataclass
class Racetrack:
    """The `racetrack` command with a home directory of its own."""

    executable: Path
    home: Path

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _CLIENT_LOG_VARIABLES}
        env.update(
            {
                "HOME": str(self.home),
                "XDG_CONFIG_HOME": str(self.home / ".config"),
                "XDG_CACHE_HOME": str(self.home / ".cache"),
                "NO_PROXY": "127.0.0.1,localhost",
                "no_proxy": "127.0.0.1,localhost",
            }
        )
        return env

    def __call__(
        self,
        *args: str,
        terminal: bool = False,
        stdin: str = "",
        cwd: Path | None = None,
        timeout: float = 180,
    ) -> Run:
        argv = [str(self.executable), *args]
        if terminal:
            return _in_terminal(argv, self.env(), cwd, timeout)
        # a session of its own: no controlling terminal, so a password prompt reads stdin
        done = subprocess.run(
            argv,
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env(),
            cwd=cwd,
            timeout=timeout,
            start_new_session=True,
            check=False,
        )
        return Run(done.returncode, done.stdout, done.stderr)

    def config(self) -> dict[str, Any]:
        config: dict[str, Any] = yaml.safe_load((self.home / ".racetrack" / "config.yaml").read_text())
        return config


def _in_terminal(argv: list[str], env: dict[str, str], cwd: Path | None, timeout: float) -> Run:
    """Run with stdout and stderr on a pseudo-terminal, as a user at a shell sees it (colours
    removed, line ends as written)."""
    controller, terminal = pty.openpty()
    try:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=terminal,
            stderr=terminal,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
    finally:
        os.close(terminal)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            remaining = deadline - time.monotonic()
            ready, _, _ = select.select([controller], [], [], max(remaining, 0))
            if not ready:
                raise AssertionError(f"{argv} still running after {timeout}s:\n{b''.join(chunks).decode()}")
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: every writer of the terminal is gone
                break
            if not chunk:
                break
            chunks.append(chunk)
        code = process.wait(timeout=max(deadline - time.monotonic(), 1))
    finally:
        os.close(controller)
        if process.poll() is None:
            process.kill()
            process.wait()
    text = b"".join(chunks).decode(errors="replace").replace("\r\n", "\n")
    return Run(code, _ANSI.sub("", text))


def table(stdout: str) -> list[dict[str, str]]:
    """The rows of `racetrack list`, by column header (cells are padded and 3 spaces apart)."""
    lines = [line.rstrip() for line in stdout.splitlines() if line.strip()]
    header = re.split(r" {3,}", lines[0])
    rows = [re.split(r" {3,}", line) for line in lines[1:]]
    assert all(len(row) == len(header) for row in rows), stdout
    return [dict(zip(header, row, strict=True)) for row in rows]


def racetrack_executable() -> Path:
    """`racetrack` next to this interpreter (racetrack-client is in the dev dependency group)."""
    path = Path(sys.executable).with_name("racetrack")
    if not path.is_file():
        message = f"racetrack-client is not installed ({path} is missing): run `uv sync` with the dev group"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


ADDER_CODE = (SAMPLE_JOBS / "adder" / "entrypoint.py").read_text()


def job_yaml(name: str, remote: str, owner_email: str = "sample@example.com") -> str:
    return (
        f"name: {name}\nowner_email: {owner_email}\njobtype: python3:latest\nversion: 0.0.1\n"
        f"git:\n  remote: {remote}\njobtype_extra:\n  entrypoint_path: entrypoint.py\n"
    )


@dataclass
class Site:
    up: TracksideUp
    git: GitHttpsServer
    cli: Racetrack
    work: Path
    adder_repo: Path
    api_key: str
    login: Run
    git_deploy: Run
    local_deploy: Run

    @property
    def lifecycle(self) -> str:
        return f"{self.up.url}/lifecycle"

    def secrets(self) -> list[str]:
        return [self.up.token, self.git.password, self.api_key]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    executable = racetrack_executable()
    base = tmp_path_factory.mktemp("racetrack-cli")
    work = base / "work"
    work.mkdir()
    git = GitHttpsServer(base / "repos", "alice", "tok-" + secrets.token_urlsafe(24), tls_dir=base / "tls")
    git.start()
    up: TracksideUp | None = None
    try:
        up = TracksideUp(base / "data", base / "up.log", env={"GIT_SSL_CAINFO": str(git.ca_file)})
        cli = Racetrack(executable, base / "home")
        url = git.url_for("adder")
        adder_repo = git.make_repo("adder", {"job.yaml": job_yaml("adder", url), "entrypoint.py": ADDER_CODE})

        login = cli("login", up.token, "--remote", up.url, terminal=True)
        assert login.code == 0, login
        for args in (("set", "remote", up.url), ("set", "credentials", url, git.username, git.password)):
            done = cli(*args)
            assert done.code == 0, done

        # adder's job.yaml says sample@example.com, which on localhost means a local build by
        # default: --build-context git makes the lifecycle clone it
        git_deploy = cli("deploy", str(adder_repo), "--build-context", "git", terminal=True)

        env_secret = work / "env-secret"
        shutil.copytree(SAMPLE_JOBS / "env-secret", env_secret)
        api_key = "sk-" + secrets.token_hex(16)
        (env_secret / ".env").write_text(f"API_KEY={api_key}\n")
        local_deploy = cli("deploy", "env-secret", terminal=True, cwd=work)

        yield Site(up, git, cli, work, adder_repo, api_key, login, git_deploy, local_deploy)
    finally:
        if up is not None:
            up.stop()
        git.stop()


def assert_no_secrets(site: Site, *runs: Run) -> None:
    for run in runs:
        for secret in site.secrets():
            assert secret not in run.output


# ---- login, remote, pub ----------------------------------------------------------------------


def test_login_with_the_admin_token_keeps_it_in_the_clients_config(site: Site) -> None:
    assert f"Logged as user admin to Racetrack: {site.lifecycle}" in site.login.output
    config = site.cli.config()
    assert config["user_auths"] == {site.lifecycle: site.up.token}
    assert config["lifecycle_url"] == site.up.url
    assert (site.cli.home / ".racetrack" / "config.yaml").stat().st_mode & 0o077 == 0

    wrong = site.cli("login", "tst_not-a-token", "--remote", site.up.url)
    assert wrong.code == FAILED
    assert "authentication error: Invalid Auth Token" in wrong.output
    assert site.cli.config()["user_auths"] == {site.lifecycle: site.up.token}


def test_login_with_username_and_password(site: Site, tmp_path: Path) -> None:
    password = "pw-" + secrets.token_urlsafe(12)
    r = site.up.client.post("/api/v1/users", json={"username": "rita", "password": password})
    assert r.status_code == 201, r.text
    rita = Racetrack(site.cli.executable, tmp_path / "rita-home")

    wrong = rita("login", "--username", "rita", "--remote", site.up.url, stdin="not-her-password\n")
    assert wrong.code == FAILED
    assert "Incorrect username or password" in wrong.output

    done = rita("login", "--username", "rita", "--remote", site.up.url, stdin=password + "\n")
    assert done.code == 0, done
    assert password not in done.output
    token = rita.config()["user_auths"][site.lifecycle]
    who = site.up.client.get("/api/v1/users/validate_user_auth", headers={"X-Racetrack-Auth": token})
    assert who.json()["username"] == "rita"
    listed = rita("list", "--remote", site.up.url)
    assert listed.code == 0, listed
    assert {row["NAME"] for row in table(listed.stdout)} >= {"adder", "env-secret"}


def test_a_remote_given_with_a_trailing_slash_works(site: Site, tmp_path: Path) -> None:
    """The client joins the remote and /api/v1 as given: http://host:port//api/v1/..."""
    own = Racetrack(site.cli.executable, tmp_path / "slash-home")
    remote = site.up.url + "/"
    login = own("login", site.up.token, "--remote", remote)
    assert login.code == 0, login
    listed = own("list", "--remote", remote)
    assert listed.code == 0, listed
    assert {row["NAME"] for row in table(listed.stdout)} >= {"adder", "env-secret"}


def test_get_pub_prints_the_gateway_url(site: Site) -> None:
    plain = site.cli("get", "pub")
    assert (plain.code, plain.stdout) == (0, f"{site.up.url}/pub\n")
    shown = site.cli("get", "pub", terminal=True)
    assert shown.code == 0, shown
    assert f"Current Pub URL is: {site.up.url}/pub" in shown.output


def test_commands_without_a_login_ask_for_one(site: Site, tmp_path: Path) -> None:
    stranger = Racetrack(site.cli.executable, tmp_path / "stranger-home")
    done = stranger("list", "--remote", site.up.url)
    assert done.code == FAILED
    assert f"missing auth token for {site.lifecycle}" in done.output


# ---- deploy --------------------------------------------------------------------------------------


def test_deploy_from_git_clones_the_remote_with_the_clients_git_credentials(site: Site) -> None:
    done = site.git_deploy
    assert done.code == 0, f"{done}\n{site.up.output()}"
    assert "using local build context" not in done.output
    assert "job deployment requested:" in done.output
    assert f'Job "adder" has been deployed. Check out {site.up.url}/pub/job/adder/0.0.1' in done.output

    build_log = site.cli("build-logs", "adder")
    assert build_log.code == 0, build_log
    assert f"cloning {site.git.url_for('adder')}" in build_log.stdout
    assert f"fetched commit {head_commit(site.adder_repo)}" in build_log.stdout
    assert any(r.user == site.git.username for r in site.git.requests)
    assert_no_secrets(site, done, build_log)


def test_deploy_from_a_local_directory_uploads_it_without_ignored_files(site: Site) -> None:
    done = site.local_deploy
    assert done.code == 0, f"{done}\n{site.up.output()}"
    assert "using local build context due to deploying to localhost" in done.output
    # job.yaml, entrypoint.py, README.md, .env.dist: .env is in .gitignore (and .gitignore itself is left out)
    assert "local build context encoded: 4 files" in done.output
    assert (
        f'Job "env-secret" has been deployed. Check out {site.up.url}/pub/job/env-secret/0.0.1' in done.output
    )

    build_log = site.cli("build-logs", "env-secret")
    assert build_log.code == 0, build_log
    assert "using the build context uploaded with the request" in build_log.stdout
    assert "cloning" not in build_log.stdout
    code_dirs = list((site.up.data_dir / "code" / "env-secret" / "0.0.1").iterdir())
    assert code_dirs and not any((d / ".env").exists() for d in code_dirs)
    # the secret file's values travel as runtime secrets instead
    answer = site.cli("call", "env-secret", "/api/v1/perform", "{}")
    assert answer.code == 0, answer
    report = json.loads(answer.stdout)
    assert report["runtime_env"]["GREETING"] == "hello"
    assert report["secrets"]["API_KEY"] == {"set": True, "length": len(site.api_key)}
    assert_no_secrets(site, done, build_log, answer, site.cli("logs", "env-secret", "--tail", "1000"))


def test_deploy_from_git_without_credentials_fails_with_gits_reason(site: Site) -> None:
    url = site.git.url_for("locked")
    repo = site.git.make_repo("locked", {"job.yaml": job_yaml("locked", url), "entrypoint.py": ADDER_CODE})
    done = site.cli("deploy", str(repo), "--build-context", "git")
    assert done.code == FAILED
    assert f"deployment error: {url} requires authentication: deploy with git credentials" in done.output
    assert site.git.password not in done.output
    assert "locked" not in {row["NAME"] for row in table(site.cli("list").stdout)}


def test_a_failing_deploy_shows_the_error_and_its_build_log(site: Site) -> None:
    broken = site.work / "broken"
    broken.mkdir()
    (broken / "job.yaml").write_text(job_yaml("broken", "https://github.com/trackside/broken"))
    (broken / "entrypoint.py").write_text(
        "import no_such_module_here\n\n\nclass Broken:\n    def perform(self) -> int:\n        return 1\n"
    )
    done = site.cli("deploy", str(broken), terminal=True)
    assert done.code == FAILED
    failure = "the job failed to load: ModuleNotFoundError: No module named 'no_such_module_here'"
    assert f"ERROR deployment error: the job failed to start: {failure}" in done.output
    # build-logs NAME (latest) is the newest build of the job, a failed one included
    build_log = site.cli("build-logs", "broken")
    assert build_log.code == 0, build_log
    assert "using the build context uploaded with the request" in build_log.stdout
    assert failure in build_log.stdout
    assert "broken" not in {row["NAME"] for row in table(site.cli("list").stdout)}


def test_redeploy_needs_force_then_delete_removes_the_job(site: Site) -> None:
    scratch = site.work / "scratch"
    scratch.mkdir()
    (scratch / "job.yaml").write_text(
        job_yaml("scratch", "https://github.com/trackside/scratch", "dev@example.com")
    )
    code = "class Scratch:\n    def perform(self) -> str:\n        return {answer!r}\n"
    (scratch / "entrypoint.py").write_text(code.format(answer="first"))
    first = site.cli("deploy", str(scratch), "--build-context", "local")
    assert first.code == 0, first
    assert json.loads(site.cli("call", "scratch", "/api/v1/perform", "{}").stdout) == "first"

    (scratch / "entrypoint.py").write_text(code.format(answer="second"))
    again = site.cli("deploy", str(scratch), "--build-context", "local")
    assert again.code == FAILED
    assert "job scratch 0.0.1 already exists; deploy with force to replace it" in again.output
    forced = site.cli("deploy", str(scratch), "--build-context", "local", "--force")
    assert forced.code == 0, forced
    assert json.loads(site.cli("call", "scratch", "/api/v1/perform", "{}").stdout) == "second"

    deleted = site.cli("delete", "scratch", "--version", "0.0.1", terminal=True)
    assert deleted.code == 0, deleted
    assert f'Job "scratch" v0.0.1 has been deleted from {site.lifecycle}' in deleted.output
    assert "scratch" not in {row["NAME"] for row in table(site.cli("list").stdout)}
    call = site.cli("call", "scratch", "/api/v1/perform", "{}")
    assert call.code == FAILED
    assert "Not Found: job scratch not found" in call.output
    twice = site.cli("delete", "scratch", "--version", "0.0.1")
    assert twice.code == FAILED
    assert "Not Found: job scratch not found" in twice.output


# ---- list, call, logs ----------------------------------------------------------------------------


def test_list_shows_the_jobs_with_racetracks_columns(site: Site) -> None:
    plain = site.cli("list")
    assert plain.code == 0, plain
    rows = {row["NAME"]: row for row in table(plain.stdout)}
    assert rows["adder"] == {"NAME": "adder", "VERSION": "0.0.1", "STATUS": "RUNNING"}
    assert rows["env-secret"]["STATUS"] == "RUNNING"

    every = site.cli("list", "-c", "all")
    assert every.code == 0, every
    adder = {row["NAME"]: row for row in table(every.stdout)}["adder"]
    assert list(adder) == [
        "NAME", "VERSION", "STATUS", "JOB TYPE", "INFRASTRUCTURE", "DEPLOYED BY", "UPDATED AT",
        "LAST CALL AT", "PUB URL",
    ]  # fmt: skip
    assert adder["JOB TYPE"] == "python3:latest"
    assert adder["INFRASTRUCTURE"] == "embedded"
    assert "admin" in adder["DEPLOYED BY"]
    assert re.fullmatch(r"just now|\d+ seconds ago|a minute ago|\d+ minutes ago", adder["UPDATED AT"])
    assert adder["PUB URL"] == f"{site.up.url}/pub/job/adder/0.0.1"

    shown = site.cli("list", terminal=True)
    assert f"List of all jobs ({len(rows)}) deployed at {site.lifecycle}:" in shown.output


def test_call_posts_the_payload_to_the_job_through_the_gateway(site: Site) -> None:
    done = site.cli("call", "adder", "/api/v1/perform", '{"numbers": [40, 2]}')
    assert done.code == 0, done
    assert json.loads(done.stdout) == 42
    as_yaml = site.cli(
        "call", "adder", "api/v1/perform", "numbers: [1, 2]\noffset: 0.5", "--version", "0.0.1"
    )
    assert (as_yaml.code, json.loads(as_yaml.stdout)) == (0, 3.5)

    invalid = site.cli("call", "adder", "/api/v1/perform", '{"numbers": "many"}')
    assert invalid.code == FAILED
    assert "numbers" in invalid.output
    unknown = site.cli("call", "adder", "/api/v1/perform", "{}", "--version", "9.9.9")
    assert unknown.code == FAILED
    assert "job adder has no version matching '9.9.9'" in unknown.output


def test_logs_show_the_jobs_output(site: Site) -> None:
    assert site.cli("call", "adder", "/api/v1/perform", '{"numbers": [1]}').code == 0
    logs = site.cli("logs", "adder")
    assert logs.code == 0, logs
    assert '"POST /api/v1/perform" 200' in logs.stdout
    assert 0 < len(logs.stdout.splitlines()) <= 20  # racetrack's default --tail
    last = site.cli("logs", "adder", "--tail", "1")
    assert (last.code, len(last.stdout.splitlines())) == (0, 1)
    shown = site.cli("logs", "adder", "--version", "0.0.1", terminal=True)
    assert 'Viewing the latest logs from job "adder" 0.0.1 below' in shown.output

    missing = site.cli("logs", "no-such-job")
    assert missing.code == FAILED
    assert "Not Found: job no-such-job not found" in missing.output


def test_logs_follow_is_not_served_and_says_so(site: Site) -> None:
    # racetrack logs --follow speaks socket.io at /lifecycle/socket.io, which Trackside does not serve
    done = site.cli("logs", "adder", "--follow", timeout=60)
    assert done.code == FAILED
    assert "Socket.IO connection error" in done.output
    assert "racetrack logs --follow is not supported by Trackside" in done.output, done.output


def test_build_logs_show_the_whole_build_or_its_tail(site: Site) -> None:
    whole = site.cli("build-logs", "adder")
    assert whole.code == 0, whole
    lines = whole.stdout.splitlines()
    assert len(lines) > 5 and "environment built" in whole.stdout
    tail = site.cli("build-logs", "adder", "--tail", "2", "--version", "0.0.1")
    assert tail.code == 0, tail
    assert tail.stdout.splitlines() == lines[-2:]
    wildcard = site.cli("build-logs", "adder", "--version", "0.x")
    assert (wildcard.code, wildcard.stdout) == (0, whole.stdout)
    missing = site.cli("build-logs", "adder", "--version", "7.0.0")
    assert missing.code == FAILED
    assert "no deployment of job adder 7.0.0" in missing.output
