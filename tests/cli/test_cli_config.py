"""The CLI's own configuration and conventions, without a platform: the config file (mode 600,
refused when others may read it), which remote is used, usage errors and help."""

from __future__ import annotations

import stat
from collections.abc import Mapping
from pathlib import Path

import pytest
import yaml

from tests.cli.cli_runner import Cli
from tests.gitservers import free_closed_port

MY_COMMANDS = [
    ["login"],
    ["logout"],
    ["remote"],
    ["remote", "set"],
    ["remote", "alias"],
    ["remote", "list"],
    ["list"],
    ["status"],
    ["logs"],
    ["build-logs"],
    ["delete"],
    ["call"],
    ["deploy"],
    ["validate"],
]


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path / "config")


def current(cli: Cli, *args: str, env: Mapping[str, str | None] | None = None) -> dict[str, object]:
    result = cli.run("remote", "list", "--json", *args, env=env)
    assert result.rc == 0, result
    answer: dict[str, object] = result.json()["current"]
    return answer


def test_the_config_file_is_private_and_written_whole(cli: Cli) -> None:
    assert not cli.config_file.exists()
    result = cli.run("remote", "alias", "prod", "https://trackside.example.com/lifecycle/")
    assert result.rc == 0, result
    assert "prod → https://trackside.example.com/lifecycle" in result.stdout
    assert stat.S_IMODE(cli.config_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(cli.config_file.parent.stat().st_mode) == 0o700
    assert yaml.safe_load(cli.config_file.read_text()) == {
        "aliases": {"prod": "https://trackside.example.com/lifecycle"}
    }
    assert cli.run("remote", "set", "prod").rc == 0
    assert yaml.safe_load(cli.config_file.read_text())["remote"] == "prod"
    # no temporary files left next to it
    assert sorted(p.name for p in cli.config_file.parent.iterdir()) == ["config.yaml"]


def test_a_config_file_others_can_read_is_refused(cli: Cli) -> None:
    assert cli.run("remote", "set", "http://127.0.0.1:7300").rc == 0
    cli.config_file.chmod(0o644)
    for args in (["remote", "list"], ["list"], ["login", "tok"]):
        result = cli.run(*args)
        assert result.rc == 1, result
        assert result.stderr.startswith("Error: the config file"), result
        assert f"chmod 600 {cli.config_file}" in result.stderr
        assert "644" in result.stderr
        assert "Traceback" not in result.stderr
    cli.config_file.chmod(0o600)
    assert cli.run("remote", "list").rc == 0


def test_an_invalid_config_file_is_named(cli: Cli) -> None:
    cli.config_file.parent.mkdir(parents=True)
    cli.config_file.write_text("remote: [unclosed\n")
    cli.config_file.chmod(0o600)
    result = cli.run("remote", "list")
    assert result.rc == 1 and f"the config file {cli.config_file} is not valid" in result.stderr, result
    cli.config_file.write_text("remotes: http://x\n")
    result = cli.run("remote", "list")
    assert result.rc == 1 and "unknown setting(s) remotes" in result.stderr, result


def test_which_remote_is_used(cli: Cli) -> None:
    assert current(cli) == {"url": "http://127.0.0.1:7200", "alias": None, "source": "default", "token": None}
    assert cli.run("remote", "alias", "staging", "http://10.0.0.5:7200").rc == 0
    assert cli.run("remote", "set", "http://10.0.0.9:7200/").rc == 0
    assert current(cli)["url"] == "http://10.0.0.9:7200"
    assert current(cli)["source"] == "config"
    env = {"TRACKSIDE_REMOTE": "staging"}
    assert current(cli, env=env) == {
        "url": "http://10.0.0.5:7200",
        "alias": "staging",
        "source": "env",
        "token": None,
    }
    assert current(cli, "--remote", "https://other.example.com", env=env)["source"] == "option"
    assert (
        current(cli, "--remote", "https://other.example.com", env=env)["url"] == "https://other.example.com"
    )
    assert current(cli, env={"TRACKSIDE_TOKEN": "t"})["token"] == "env"

    listed = cli.run("remote", "list")
    assert listed.rc == 0, listed
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["ALIAS", "URL", "LOGGED", "IN"]
    assert any(line.startswith("*") and "http://10.0.0.9:7200" in line for line in lines), listed
    assert any("staging" in line and "http://10.0.0.5:7200" in line and "no" in line for line in lines)
    remotes = cli.run("remote", "list", "--json").json()["remotes"]
    assert {
        "alias": "staging",
        "url": "http://10.0.0.5:7200",
        "current": False,
        "logged_in": False,
    } in remotes


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["remote", "set", "not a url"], "is neither a URL nor a known alias"),
        (["remote", "set", "ftp://host"], "not a remote URL"),
        (["remote", "alias", "1bad", "http://x"], "not an alias name"),
        (["remote", "alias", "ok", "localhost:7200"], "not a remote URL"),
        (["list", "--remote", "nosuchalias"], "--remote: 'nosuchalias' is neither a URL nor a known alias"),
        (["list", "--bogus"], "No such option: --bogus"),
        (["frobnicate"], "No such command 'frobnicate'"),
        (["delete", "adder"], "Missing option '--version'"),
        (["logs", "adder", "--tail", "-1"], "--tail"),
    ],
)
def test_usage_errors_exit_with_2(cli: Cli, args: list[str], message: str) -> None:
    result = cli.run(*args)
    assert result.rc == 2, result
    assert message in result.stderr, result
    assert "Error:" in result.stderr and "Traceback" not in result.stderr


def test_an_unreachable_remote_is_named(cli: Cli) -> None:
    remote = f"http://127.0.0.1:{free_closed_port()}"
    for args in (["list"], ["status", "adder"], ["login", "some-token"]):
        result = cli.run(*args, "--remote", remote)
        assert result.rc == 1, result
        assert f"cannot reach the lifecycle at {remote} — is `trackside up` running?" in result.stderr, result
    result = cli.run("call", "adder", "{}", "--remote", remote)
    assert result.rc == 1, result
    assert f"cannot reach the gateway at {remote}/pub — is `trackside up` running?" in result.stderr, result
    assert not cli.config_file.exists()  # a failed login keeps nothing


def test_a_token_from_the_environment_is_not_stored(cli: Cli) -> None:
    result = cli.run("logout", env={"TRACKSIDE_TOKEN": "tok"})
    assert result.rc == 0, result
    assert "Not logged in to http://127.0.0.1:7200" in result.stdout
    assert "TRACKSIDE_TOKEN is set" in result.stderr


@pytest.mark.parametrize("command", MY_COMMANDS, ids=" ".join)
def test_every_command_has_help_with_an_example(cli: Cli, command: list[str]) -> None:
    result = cli.run(*command, "--help")
    assert result.rc == 0, result
    assert result.stdout.startswith(f"Usage: trackside {' '.join(command)} "), result
    examples = result.stdout.split("Example")[1].split("Arguments:")[0].split("Options:")[0]
    invocation = "trackside " + " ".join(command)
    assert any(line.strip().startswith(invocation) for line in examples.splitlines()), result
    assert "[bold]" not in result.stdout and "\x1b[" not in result.stdout


def test_the_top_level_help_lists_the_commands(cli: Cli) -> None:
    result = cli.run("--help")
    assert result.rc == 0, result
    commands = {line.split()[0] for line in result.stdout.split("Commands:")[1].splitlines() if line.strip()}
    assert {"login", "logout", "remote", "list", "status", "logs", "build-logs", "delete", "call"} <= commands
    assert {"deploy", "validate"} <= commands
    bare = cli.run()  # no arguments: the help, and the usage error's exit code (Click's convention)
    assert bare.rc == 2 and bare.stderr.startswith("Usage: trackside [OPTIONS] COMMAND"), bare


def test_no_color_and_pipes_get_no_escape_codes(cli: Cli) -> None:
    result = cli.run("remote", "list")
    assert result.rc == 0 and "\x1b[" not in result.stdout, result
    on_terminal = cli.terminal("remote", "list")
    assert on_terminal.rc == 0 and "\x1b[" in on_terminal.stdout, on_terminal
    plain = cli.terminal("remote", "list", env={"NO_COLOR": "1"})
    assert plain.rc == 0 and "\x1b[" not in plain.stdout, plain
    assert "http://127.0.0.1:7200" in plain.stdout


def test_completion_comes_from_typer(cli: Cli) -> None:
    # what `trackside --install-completion` puts in ~/.bashrc (asked directly: `--show-completion`
    # finds the shell from the parent process, which is pytest here)
    result = cli.run(env={"_TRACKSIDE_COMPLETE": "source_bash"})
    assert result.rc == 0, result
    assert "_TRACKSIDE_COMPLETE" in result.stdout and "complete " in result.stdout
    completions = cli.run(
        env={"_TRACKSIDE_COMPLETE": "complete_bash", "COMP_WORDS": "trackside bu", "COMP_CWORD": "1"}
    )
    assert completions.rc == 0, completions
    assert "build-logs" in completions.stdout
