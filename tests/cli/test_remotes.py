"""`login`, `logout` and the token per remote, against a real `trackside up`."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.cli.cli_runner import Cli
from tests.lifecycle.platform import TracksideUp

PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def platform(module_tmp: Path) -> Iterator[TracksideUp]:
    up = TracksideUp(module_tmp / "data", module_tmp / "up.log")
    try:
        r = up.client.post("/api/v1/users", json={"username": "bob", "password": PASSWORD})
        assert r.status_code == 201, r.text
        yield up
    finally:
        up.stop()


@pytest.fixture
def cli(tmp_path: Path, platform: TracksideUp) -> Cli:
    return Cli(tmp_path / "config", remote=platform.url)


def stored_tokens(cli: Cli) -> dict[str, str]:
    tokens: dict[str, str] = yaml.safe_load(cli.config_file.read_text()).get("tokens", {})
    return tokens


def test_login_with_a_token_keeps_it_for_that_remote(cli: Cli, platform: TracksideUp) -> None:
    assert cli.run("list").rc == 4  # not logged in yet
    result = cli.run("login", platform.token)
    assert result.rc == 0, result
    assert result.stdout == f"Logged in to {platform.url} as User admin (admin).\n"
    assert platform.token not in result.stdout + result.stderr
    assert stored_tokens(cli) == {platform.url: platform.token}
    assert stat.S_IMODE(cli.config_file.stat().st_mode) == 0o600
    assert cli.run("list").rc == 0
    listed = cli.run("remote", "list", "--json").json()
    assert listed["current"]["token"] == "config"
    assert {"alias": None, "url": platform.url, "current": True, "logged_in": True} in listed["remotes"]

    # the remote given with the /lifecycle suffix (or as the API URL) is the same remote
    for url in (f"{platform.url}/lifecycle", f"{platform.url}/lifecycle/api/v1/"):
        assert cli.run("list", "--remote", url).rc == 0

    logout = cli.run("logout")
    assert logout.rc == 0 and logout.stdout == f"Logged out of {platform.url}.\n", logout
    assert stored_tokens(cli) == {}
    after = cli.run("list")
    assert after.rc == 4, after
    assert f"Error: not logged in to {platform.url}: run `trackside login TOKEN`" in after.stderr


def test_a_bad_token_is_refused_and_not_kept(cli: Cli, platform: TracksideUp) -> None:
    result = cli.run("login", "tst_not-a-real-token")
    assert result.rc == 4, result
    assert result.stderr == (
        f"Error: the token was not accepted by {platform.url}: the token is invalid, expired or revoked\n"
    )
    assert not cli.config_file.exists()
    # a stale token in the config: the error says how to fix it
    listed = cli.run("list", env={"TRACKSIDE_TOKEN": "tst_stale"})
    assert listed.rc == 4 and "log in again with `trackside login`" in listed.stderr, listed


def test_login_with_a_token_on_stdin(cli: Cli, platform: TracksideUp) -> None:
    result = cli.run("login", input=platform.token + "\n")
    assert result.rc == 0, result
    assert stored_tokens(cli) == {platform.url: platform.token}
    empty = cli.run("login", input="")
    assert empty.rc == 2 and "no token given" in empty.stderr, empty


def test_login_with_a_password(cli: Cli, platform: TracksideUp) -> None:
    result = cli.run("login", "--username", "bob", input=PASSWORD + "\n")
    assert result.rc == 0, result
    assert result.stdout == f"Logged in to {platform.url} as User bob.\n"
    token = stored_tokens(cli)[platform.url]
    assert token and token != platform.token
    who = platform.client.get("/api/v1/users/validate_user_auth", headers={"X-Racetrack-Auth": token})
    assert who.json()["username"] == "bob"
    assert cli.run("list").rc == 0  # a new user may read jobs

    wrong = cli.run("login", "--username", "bob", input="not the password\n")
    assert wrong.rc == 4, wrong
    assert wrong.stderr == f"Error: login to {platform.url} failed: wrong username or password\n"
    assert stored_tokens(cli)[platform.url] == token  # the earlier login stays

    both = cli.run("login", "tok", "--username", "bob")
    assert both.rc == 2 and "not both" in both.stderr, both


def test_login_with_a_password_typed_at_a_terminal(cli: Cli, platform: TracksideUp) -> None:
    result = cli.terminal("login", "-u", "bob", replies=[("Password: ", PASSWORD)])
    assert result.rc == 0, result
    assert "Password:" in result.stdout
    assert PASSWORD not in result.stdout  # not echoed
    assert f"Logged in to {platform.url} as User bob." in result.stdout
    assert stored_tokens(cli)[platform.url]


def test_tokens_are_kept_per_remote(cli: Cli, platform: TracksideUp, tmp_path: Path) -> None:
    assert cli.run("login", platform.token).rc == 0
    assert cli.run("remote", "alias", "elsewhere", "http://127.0.0.1:9").rc == 0
    logout = cli.run("logout", "--remote", "elsewhere")
    assert logout.rc == 0 and "Not logged in to http://127.0.0.1:9" in logout.stdout, logout
    assert stored_tokens(cli) == {platform.url: platform.token}
    # the alias names the platform too: the same token is used
    assert cli.run("remote", "alias", "here", f"{platform.url}/lifecycle").rc == 0
    assert cli.run("list", "--remote", "here", env={"TRACKSIDE_REMOTE": None}).rc == 0
    listed = cli.run("remote", "list", "--json", "--remote", "here").json()
    assert listed["current"] == {
        "url": f"{platform.url}/lifecycle",
        "alias": "here",
        "source": "option",
        "token": "config",
    }
