"""The admin commands (`esc`, `grant`, `revoke`, `permissions`, `public-endpoints`, `user`)
through the real entry point, against a real `trackside up` running two jobs deployed from a git
repository: `adder`, and `open-adder`, whose manifest asks for public endpoints."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.cli.cli_runner import Cli
from tests.conftest import SAMPLE_JOBS
from tests.gitservers import file_url, make_repo
from tests.lifecycle.platform import TracksideUp, job_manifest

ADDER_FILES = {name: (SAMPLE_JOBS / "adder" / name).read_text() for name in ("entrypoint.py", "job.yaml")}
PASSWORD = "a long enough password"
SCOPES = "read_job, deploy_job, deploy_new_family, delete_job, call_job, call_admin_api, full_access"
TOKEN_FIELDS = ["id", "prefix", "description", "created_at", "expires_at", "last_used_at", "revoked_at"]
PERMISSION_FIELDS = [
    "id",
    "subject_type",
    "subject_name",
    "scope",
    "job_family",
    "job_version",
    "endpoint",
    "created_at",
]


class Platform:
    def __init__(self, up: TracksideUp, bob_token: str) -> None:
        self.up = up
        self.bob_token = bob_token  # a user without admin rights

    def call(self, name: str, token: str | None, path: str = "/api/v1/perform") -> httpx.Response:
        headers = {"X-Racetrack-Auth": token} if token else {}
        url = f"{self.up.url}/pub/job/{name}/latest{path}"
        if path == "/api/v1/perform":
            return httpx.post(url, json={"numbers": [40, 2]}, headers=headers, timeout=30)
        return httpx.get(url, headers=headers, timeout=30)


@pytest.fixture(scope="module")
def platform(module_tmp: Path) -> Iterator[Platform]:
    repo = file_url(make_repo(module_tmp / "adder-repo", ADDER_FILES))
    up = TracksideUp(module_tmp / "data", module_tmp / "up.log")
    try:
        deployments = [
            up.deploy(job_manifest("adder", repo)),
            up.deploy(
                job_manifest("open-adder", repo, public_endpoints=["/api/v1/perform", "/api/v1/parameters"])
            ),
        ]
        for deployment in deployments:
            result = up.wait(deployment)
            assert result["status"] == "done", result
        r = up.client.post("/api/v1/users", json={"username": "bob", "password": PASSWORD})
        assert r.status_code == 201, r.text
        r = up.client.post("/api/v1/users/bob/tokens", json={"description": "tests"})
        assert r.status_code == 201, r.text
        yield Platform(up, r.json()["token"])
    finally:
        up.stop()


@pytest.fixture
def cli(tmp_path: Path, platform: Platform) -> Cli:
    """The CLI as the platform's admin."""
    return Cli(tmp_path / "config", remote=platform.up.url, token=platform.up.token)


def table(stdout: str) -> tuple[list[str], list[list[str]]]:
    """The header words and the rows (split on runs of spaces) of a printed table."""
    header, *rows = stdout.splitlines()
    return header.split(), [row.split() for row in rows]


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


# ---- help ---------------------------------------------------------------------------------------

COMMANDS = [
    ["esc", "create"],
    ["esc", "list"],
    ["esc", "token"],
    ["esc", "tokens"],
    ["esc", "revoke"],
    ["grant"],
    ["revoke"],
    ["permissions"],
    ["public-endpoints", "list"],
    ["public-endpoints", "approve"],
    ["public-endpoints", "reject"],
    ["user", "create"],
    ["user", "list"],
]


def test_every_admin_command_has_help_with_an_example(cli: Cli) -> None:
    for command in COMMANDS:
        result = cli.run(*command, "--help")
        assert result.rc == 0, result
        assert result.stdout.startswith(f"Usage: trackside {' '.join(command)} "), result
        assert "Example" in result.stdout and f"trackside {' '.join(command)}" in result.stdout, result
        assert "--remote" in result.stdout, result
        if command[-1] in ("list", "tokens", "permissions"):
            assert "--json" in result.stdout and "JSON shape" in result.stdout, result
    top = cli.run("--help")
    for name in ("esc", "grant", "revoke", "permissions", "public-endpoints", "user"):
        assert f"\n  {name} " in top.stdout, top


# ---- ESCs, their tokens and what they may call ----------------------------------------------------


def test_an_esc_token_calls_a_job_once_granted_and_not_after_revoke(cli: Cli, platform: Platform) -> None:
    created = cli.run("esc", "create", "billing")
    assert created.rc == 0, created
    assert created.stdout.splitlines()[0] == "Created ESC billing."
    again = cli.run("esc", "create", "billing")
    assert (again.rc, again.stderr) == (1, "Error: ESC billing already exists\n"), again

    listed = cli.run("esc", "list")
    assert listed.rc == 0, listed
    header, rows = table(listed.stdout)
    assert header == ["NAME", "CREATED"]
    assert any(row[0] == "billing" for row in rows), listed
    escs = cli.run("esc", "list", "--json").json()
    billing = next(esc for esc in escs if esc["name"] == "billing")
    assert list(billing) == ["id", "name", "created_at"]

    issued = cli.run("esc", "token", "billing", "--expires-in", "30d", "--description", "billing prod")
    assert issued.rc == 0, issued
    token = issued.stdout.strip()
    assert issued.stdout == token + "\n" and len(token) >= 20  # the token alone: TOKEN=$(...) works
    assert "New token of ESC billing" in issued.stderr and "shown only this once" in issued.stderr, issued

    tokens = cli.run("esc", "tokens", "billing", "--json")
    assert tokens.rc == 0, tokens
    [record] = tokens.json()
    assert list(record) == TOKEN_FIELDS
    assert token.startswith(record["prefix"]) and record["description"] == "billing prod"
    assert record["revoked_at"] is None and record["last_used_at"] is None
    expires = parse_time(record["expires_at"]) - datetime.now(UTC)
    assert timedelta(days=29) < expires <= timedelta(days=30)
    shown = cli.run("esc", "tokens", "billing")
    header, rows = table(shown.stdout)
    assert header == ["ID", "PREFIX", "DESCRIPTION", "CREATED", "EXPIRES", "LAST", "USED", "REVOKED"]
    assert rows[0][:4] == [str(record["id"]), record["prefix"] + "…", "billing", "prod"], shown
    assert token not in shown.stdout

    # a new ESC may call nothing
    denied = platform.call("adder", token)
    assert denied.status_code == 403, denied.text

    grant = cli.run("grant", "esc:billing", "call_job", "--family", "adder")
    assert grant.rc == 0, grant
    assert grant.stdout.startswith("Granted esc:billing call_job on job family adder (permission "), grant
    twice = cli.run("grant", "esc:billing", "call_job", "--family", "adder")
    assert twice.rc == 0 and "already has call_job on job family adder" in twice.stdout, twice

    allowed = platform.call("adder", token)
    assert allowed.status_code == 200, allowed.text
    assert allowed.json() == 42
    assert platform.call("open-adder", token).status_code == 403  # the grant names one family

    held = cli.run("permissions", "--subject", "esc:billing", "--json")
    assert held.rc == 0, held
    [permission] = held.json()
    assert list(permission) == PERMISSION_FIELDS
    assert permission["subject_type"] == "esc" and permission["subject_name"] == "billing"
    resource = [permission[key] for key in ("scope", "job_family", "job_version", "endpoint")]
    assert resource == ["call_job", "adder", None, None]
    used = cli.run("esc", "tokens", "billing", "--json").json()[0]
    assert used["last_used_at"] is not None

    revoked = cli.run("revoke", "esc:billing", "call_job", "--family", "adder")
    assert revoked.rc == 0, revoked
    assert (
        revoked.stdout
        == f"Revoked esc:billing call_job on job family adder (permission {permission['id']}).\n"
    )
    assert platform.call("adder", token).status_code == 403
    gone = cli.run("revoke", "esc:billing", "call_job", "--family", "adder")
    assert gone.rc == 3, gone
    assert gone.stderr == (
        "Error: esc:billing has no call_job permission on job family adder "
        "(it has no call_job permission at all)\n"
    )

    # deleting the ESC: confirmation first, then its tokens stop working
    unconfirmed = cli.run("esc", "revoke", "billing")
    assert unconfirmed.rc == 2 and "pass --yes" in unconfirmed.stderr, unconfirmed
    cli.run("grant", "esc:billing", "call_job", "--family", "adder")
    assert platform.call("adder", token).status_code == 200
    deleted = cli.run("esc", "revoke", "billing", "--yes")
    assert deleted.rc == 0, deleted
    assert deleted.stdout == "Deleted ESC billing: its tokens no longer work.\n"
    assert platform.call("adder", token).status_code == 401
    missing = cli.run("esc", "tokens", "billing")
    assert (missing.rc, missing.stderr) == (3, "Error: ESC billing not found\n"), missing
    assert cli.run("esc", "revoke", "billing", "--yes").rc == 3
    assert cli.run("esc", "token", "billing").rc == 3


def test_esc_tokens_expiry_and_revoked_ones(cli: Cli, platform: Platform) -> None:
    assert cli.run("esc", "create", "reports").rc == 0
    assert cli.run("esc", "tokens", "reports", "--active").stdout == (
        "ESC reports has no active tokens; create one with `trackside esc token reports`.\n"
    )
    hours = cli.run("esc", "token", "reports", "--expires-in", "12h", "--json")
    assert hours.rc == 0, hours
    issued = hours.json()
    assert list(issued) == ["token", "subject", *TOKEN_FIELDS]
    assert issued["subject"] == "ESC reports"
    left = parse_time(issued["expires_at"]) - datetime.now(UTC)
    assert timedelta(hours=11) < left <= timedelta(hours=12)
    forever = cli.run("esc", "token", "reports", "--json").json()
    assert forever["expires_at"] is None

    r = platform.up.client.delete(f"/api/v1/tokens/{issued['id']}")
    assert r.status_code == 200, r.text
    every = {t["id"]: t for t in cli.run("esc", "tokens", "reports", "--json").json()}
    assert every[issued["id"]]["revoked_at"] is not None and every[forever["id"]]["revoked_at"] is None
    active = cli.run("esc", "tokens", "reports", "--active", "--json").json()
    assert [t["id"] for t in active] == [forever["id"]]
    rows = {row[0]: row for row in table(cli.run("esc", "tokens", "reports").stdout)[1]}
    assert rows[str(forever["id"])][-1] == "-"  # REVOKED: not
    assert rows[str(issued["id"])][-1] != "-", rows  # REVOKED: when

    for bad in ("5x", "0d", "12", "4000d"):
        result = cli.run("esc", "token", "reports", "--expires-in", bad)
        assert result.rc == 2, result
        assert result.stderr.startswith("Error: --expires-in: "), result
        assert result.stdout == ""


def test_esc_revoke_asks_on_a_terminal(cli: Cli) -> None:
    assert cli.run("esc", "create", "temp").rc == 0
    kept = cli.terminal("esc", "revoke", "temp", replies=[("[y/N]: ", "n")])
    assert kept.rc == 1, kept
    assert "Delete ESC temp from" in kept.stdout and "not deleted: ESC temp is still there" in kept.stdout
    assert cli.run("esc", "tokens", "temp").rc == 0
    deleted = cli.terminal("esc", "revoke", "temp", replies=[("[y/N]: ", "y")])
    assert deleted.rc == 0, deleted
    assert "Deleted ESC temp" in deleted.stdout
    assert cli.run("esc", "tokens", "temp").rc == 3


def test_a_bad_esc_name_is_a_usage_error(cli: Cli) -> None:
    result = cli.run("esc", "create", "no spaces")
    assert result.rc == 2, result
    assert "name" in result.stderr and "letters, digits" in result.stderr, result


# ---- grant, revoke and permissions ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "rc", "message"),
    [
        (
            ["grant", "bob", "call_job"],
            2,
            "Error: subject 'bob' does not say what it is: write user:NAME, esc:NAME or family:NAME "
            "(a job family), e.g. user:bob\n",
        ),
        (
            ["revoke", "robot:x", "call_job"],
            2,
            "Error: not a subject: 'robot:x' (expected user:NAME, esc:NAME or family:NAME (a job family))\n",
        ),
        (
            ["grant", "esc:", "call_job"],
            2,
            "Error: not a subject: 'esc:' (expected user:NAME, esc:NAME or family:NAME (a job family))\n",
        ),
        (["grant", "user:bob", "call"], 2, f"Error: not a scope: 'call' (scopes: {SCOPES})\n"),
        (["permissions", "--scope", "all"], 2, f"Error: not a scope: 'all' (scopes: {SCOPES})\n"),
        (
            ["grant", "user:bob", "call_job", "--version", "0.0.1"],
            2,
            "Error: --version needs --family: a version of which job?\n",
        ),
        (["grant", "esc:nobody", "call_job"], 3, "Error: ESC nobody not found\n"),
        (["grant", "user:nobody", "call_job"], 3, "Error: user nobody not found\n"),
        (["revoke", "family:nojob", "call_job"], 3, "Error: job family nojob not found\n"),
        (["permissions", "--subject", "esc:nobody"], 3, "Error: ESC nobody not found\n"),
        (
            ["revoke", "user:bob", "delete_job", "--family", "adder"],
            3,
            "Error: user:bob has no delete_job permission on job family adder (it has no delete_job permission at all)\n",
        ),
    ],
)
def test_permission_commands_refuse_what_is_wrong(cli: Cli, args: list[str], rc: int, message: str) -> None:
    result = cli.run(*args)
    assert result.rc == rc, result
    assert result.stderr == message
    assert result.stdout == ""


def test_grant_on_a_version_and_endpoint_then_list_and_revoke(cli: Cli, platform: Platform) -> None:
    options = ["--family", "open-adder", "--version", "0.0.1"]
    granted = cli.run("grant", "user:bob", "read_job", *options, "--endpoint", "api/v1/parameters/")
    assert granted.rc == 0, granted
    assert granted.stdout.startswith(
        "Granted user:bob read_job on endpoint /api/v1/parameters of open-adder 0.0.1 (permission "
    ), granted
    everywhere = cli.run("grant", "user:bob", "delete_job")
    assert everywhere.rc == 0, everywhere
    assert everywhere.stdout.startswith("Granted user:bob delete_job on every job (permission "), everywhere
    # a new user's defaults include deploy_job on every job
    had = cli.run("grant", "user:bob", "deploy_job")
    assert had.rc == 0 and had.stdout.startswith("user:bob already has deploy_job on every job"), had

    mine = cli.run("permissions", "--subject", "user:bob", "--family", "open-adder", "--json")
    assert mine.rc == 0, mine
    scoped = [(p["scope"], p["job_family"], p["job_version"], p["endpoint"]) for p in mine.json()]
    assert ("read_job", "open-adder", "0.0.1", "/api/v1/parameters") in scoped
    assert ("delete_job", None, None, None) in scoped  # applies to every family, open-adder included
    assert all(family in (None, "open-adder") for _, family, _, _ in scoped)
    other = cli.run("permissions", "--family", "adder", "--scope", "read_job", "--json").json()
    assert all(p["job_family"] in (None, "adder") and p["scope"] == "read_job" for p in other)
    assert not any(p["endpoint"] == "/api/v1/parameters" for p in other)

    shown = cli.run("permissions", "--subject", "user:bob")
    header, rows = table(shown.stdout)
    assert header == ["ID", "SUBJECT", "SCOPE", "FAMILY", "VERSION", "ENDPOINT", "GRANTED"]
    assert any(row[1:6] == ["user:bob", "delete_job", "*", "*", "*"] for row in rows), shown
    assert any(
        row[1:6] == ["user:bob", "read_job", "open-adder", "0.0.1", "/api/v1/parameters"] for row in rows
    )

    # a revoke names the grant as it was made (the endpoint however it is written)
    wrong = cli.run("revoke", "user:bob", "read_job", "--family", "open-adder")
    assert wrong.rc == 3, wrong
    assert wrong.stderr.startswith("Error: user:bob has no read_job permission on job family open-adder (")
    # what it has instead: a new user's default read_job on every job, and the grant above
    assert wrong.stderr.endswith("; endpoint /api/v1/parameters of open-adder 0.0.1)\n"), wrong
    right = cli.run("revoke", "user:bob", "read_job", *options, "--endpoint", "/api/v1/parameters")
    assert right.rc == 0, right
    assert cli.run("revoke", "user:bob", "delete_job").rc == 0
    left = [
        (p["scope"], p["job_family"], p["endpoint"])
        for p in cli.run("permissions", "-s", "user:bob", "--json").json()
    ]
    assert ("read_job", "open-adder", "/api/v1/parameters") not in left
    assert ("delete_job", None, None) not in left
    assert ("deploy_job", None, None) in left


def test_a_family_may_be_let_call_another_before_it_is_deployed(cli: Cli) -> None:
    granted = cli.run("grant", "family:chain", "call_job", "--family", "adder")
    assert granted.rc == 0, granted
    assert granted.stdout.startswith("Granted family:chain call_job on job family adder (permission "), (
        granted
    )
    listed = cli.run("permissions", "--subject", "family:chain", "--json").json()
    assert [(p["subject_type"], p["subject_name"], p["scope"], p["job_family"]) for p in listed] == [
        ("family", "chain", "call_job", "adder")
    ]
    again = cli.run("grant", "family:chain", "call_job", "--family", "adder")
    assert again.rc == 0 and "already has" in again.stdout, again
    assert cli.run("revoke", "family:chain", "call_job", "--family", "adder").rc == 0
    assert cli.run("permissions", "--subject", "family:chain", "--json").json() == []
    assert cli.run("permissions", "--subject", "family:chain").stdout == "No permissions match.\n"
    missing = cli.run("revoke", "family:nowhere", "call_job", "--family", "adder")
    assert (missing.rc, missing.stderr) == (3, "Error: job family nowhere not found\n"), missing


def test_a_deployer_who_may_call_a_job_lets_their_family_call_it(cli: Cli, platform: Platform) -> None:
    # an ESC has no permission but those granted: deploy_job on its family, then call_job on adder
    assert cli.run("esc", "create", "deployer").rc == 0
    as_deployer = {"TRACKSIDE_TOKEN": cli.run("esc", "token", "deployer").stdout.strip()}
    assert cli.run("grant", "esc:deployer", "deploy_job", "--family", "ci-job").rc == 0
    refused = cli.run("grant", "family:ci-job", "call_job", "--family", "adder", env=as_deployer)
    assert refused.rc == 4, refused
    assert refused.stderr.startswith("Error: ESC deployer may not let job family ci-job call adder"), refused

    assert cli.run("grant", "esc:deployer", "call_job", "--family", "adder").rc == 0
    granted = cli.run("grant", "family:ci-job", "call_job", "--family", "adder", env=as_deployer)
    assert granted.rc == 0, granted
    assert granted.stdout.startswith("Granted family:ci-job call_job on job family adder (permission "), (
        granted
    )
    listed = cli.run("permissions", "--subject", "family:ci-job", "--json").json()
    assert [(p["scope"], p["job_family"]) for p in listed] == [("call_job", "adder")]
    assert cli.run("permissions", env=as_deployer).rc == 4  # a deployer may not list permissions

    revoked = cli.run("revoke", "family:ci-job", "call_job", "--family", "adder", env=as_deployer)
    assert revoked.rc == 0, revoked
    assert (
        revoked.stdout
        == f"Revoked family:ci-job call_job on job family adder (permission {listed[0]['id']}).\n"
    )
    assert cli.run("permissions", "--subject", "family:ci-job", "--json").json() == []
    gone = cli.run("revoke", "family:ci-job", "call_job", "--family", "adder", env=as_deployer)
    assert gone.rc == 3, gone
    assert gone.stderr == "Error: job family ci-job has no call_job permission for job family adder\n"


# ---- public endpoints -----------------------------------------------------------------------------


def test_a_public_endpoint_approved_with_the_cli_needs_no_token(cli: Cli, platform: Platform) -> None:
    assert platform.call("open-adder", None).status_code == 401

    listed = cli.run("public-endpoints", "list", "--job", "open-adder", "--json")
    assert listed.rc == 0, listed
    requests = {r["endpoint"]: r for r in listed.json()}
    assert set(requests) == {"/api/v1/perform", "/api/v1/parameters"}
    perform = requests["/api/v1/perform"]
    assert list(perform) == [
        "id",
        "job_name",
        "job_version",
        "endpoint",
        "status",
        "decided_by",
        "decided_at",
        "created_at",
        "url",
    ]
    assert (perform["job_name"], perform["job_version"], perform["status"]) == (
        "open-adder",
        "0.0.1",
        "pending",
    )
    assert perform["url"] == f"{platform.up.url}/pub/job/open-adder/0.0.1/api/v1/perform"
    assert perform["decided_by"] is None

    shown = cli.run("public-endpoints", "list", "--status", "pending")
    header, rows = table(shown.stdout)
    assert header == ["ID", "JOB", "VERSION", "ENDPOINT", "STATUS", "DECIDED", "BY", "REQUESTED"]
    assert [str(perform["id"]), "open-adder", "0.0.1", "/api/v1/perform", "pending", "-"] in [
        r[:6] for r in rows
    ]

    approved = cli.run("public-endpoints", "approve", str(perform["id"]))
    assert approved.rc == 0, approved
    assert approved.stdout == (
        f"Approved endpoint /api/v1/perform of open-adder 0.0.1 (request {perform['id']}): "
        f"anyone may call {perform['url']} without a token.\n"
    )
    public = platform.call("open-adder", None)
    assert public.status_code == 200, public.text
    assert public.json() == 42

    parameters = requests["/api/v1/parameters"]
    rejected = cli.run("public-endpoints", "reject", str(parameters["id"]))
    assert rejected.rc == 0, rejected
    assert rejected.stdout.startswith(
        f"Rejected endpoint /api/v1/parameters of open-adder 0.0.1 (request {parameters['id']})"
    )
    assert platform.call("open-adder", None, "/api/v1/parameters").status_code == 401

    decided = cli.run(
        "public-endpoints",
        "list",
        "--job",
        "open-adder",
        "--version",
        "0.0.1",
        "--status",
        "approved",
        "--json",
    )
    [only] = decided.json()
    assert only["id"] == perform["id"] and only["decided_by"] == "User admin" and only["decided_at"]
    assert (
        cli.run("public-endpoints", "list", "--job", "adder").stdout == "No public endpoint requests match.\n"
    )

    # a change of mind takes the approval back
    assert cli.run("public-endpoints", "reject", str(perform["id"])).rc == 0
    assert platform.call("open-adder", None).status_code == 401


@pytest.mark.parametrize(
    ("args", "rc", "message"),
    [
        (["public-endpoints", "approve", "99999"], 3, "Error: public endpoint request 99999 not found\n"),
        (["public-endpoints", "reject", "99999"], 3, "Error: public endpoint request 99999 not found\n"),
        (["public-endpoints", "approve", "three"], 2, None),
        (
            ["public-endpoints", "list", "--status", "maybe"],
            2,
            "Error: --status: not a status: 'maybe' (expected pending, approved, rejected)\n",
        ),
    ],
)
def test_public_endpoint_errors(cli: Cli, args: list[str], rc: int, message: str | None) -> None:
    result = cli.run(*args)
    assert result.rc == rc, result
    if message is not None:
        assert result.stderr == message
    else:
        assert "'three' is not a valid integer" in result.stderr, result


# ---- users ----------------------------------------------------------------------------------------


def test_user_create_then_login_with_the_password(cli: Cli, platform: Platform, tmp_path: Path) -> None:
    created = cli.run("user", "create", "carol", "--password-stdin", input=PASSWORD + "\n")
    assert created.rc == 0, created
    assert created.stdout == (
        f"Created user carol. They log in with: trackside login --username carol --remote {platform.up.url}\n"
    )
    assert PASSWORD not in created.stdout + created.stderr

    users = cli.run("user", "list", "--json")
    assert users.rc == 0, users
    carol = next(u for u in users.json() if u["username"] == "carol")
    assert list(carol) == ["username", "is_admin", "is_active", "created_at", "last_login_at"]
    assert (carol["is_admin"], carol["is_active"], carol["last_login_at"]) == (False, True, None)
    header, rows = table(cli.run("user", "list").stdout)
    assert header == ["USERNAME", "ADMIN", "ACTIVE", "CREATED", "LAST", "LOGIN"]
    assert next(row for row in rows if row[0] == "carol")[1:3] == ["no", "yes"]
    assert next(row for row in rows if row[0] == "admin")[1:3] == ["yes", "yes"]

    # carol logs in as a user would, then is refused the admin commands
    as_carol = Cli(tmp_path / "carol-config", remote=platform.up.url)
    login = as_carol.run("login", "--username", "carol", input=PASSWORD + "\n")
    assert login.rc == 0, login
    assert login.stdout == f"Logged in to {platform.up.url} as User carol.\n"
    refused = as_carol.run("esc", "list")
    assert refused.rc == 4, refused
    assert refused.stderr == "Error: User carol has no call_admin_api permission for ESCs\n"
    after = next(u for u in cli.run("user", "list", "--json").json() if u["username"] == "carol")
    assert after["last_login_at"] is not None

    taken = cli.run("user", "create", "carol", "--password-stdin", input=PASSWORD + "\n")
    assert (taken.rc, taken.stderr) == (1, "Error: user carol already exists\n"), taken


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (
            ["user", "create", "dan"],
            PASSWORD + "\n",
            "Error: no terminal to ask for the password on: pipe it to stdin with --password-stdin\n",
        ),
        (
            ["user", "create", "dan", "--password-stdin"],
            "",
            "Error: no password on stdin (--password-stdin reads its first line)\n",
        ),
        (
            ["user", "create", "dan", "--password-stdin"],
            "short\n",
            "Error: invalid request: password: a password has 8 to",
        ),
        (
            ["user", "create", "no spaces", "--password-stdin"],
            PASSWORD + "\n",
            "Error: invalid request: username: a username is",
        ),
    ],
)
def test_user_create_usage_errors(cli: Cli, args: list[str], stdin: str, message: str) -> None:
    result = cli.run(*args, input=stdin)
    assert result.rc == 2, result
    assert result.stderr.startswith(message), result
    assert "dan" not in [u["username"] for u in cli.run("user", "list", "--json").json()]


def test_user_create_asks_for_the_password_twice_on_a_terminal(
    cli: Cli, platform: Platform, tmp_path: Path
) -> None:
    result = cli.terminal(
        "user",
        "create",
        "erin",
        "--admin",
        replies=[
            ("Password for erin: ", PASSWORD),
            ("Repeat the password: ", "something else entirely"),
            ("Password for erin: ", PASSWORD),
            ("Repeat the password: ", PASSWORD),
        ],
    )
    assert result.rc == 0, result
    assert "do not match" in result.stdout, result
    assert "Created user erin (admin)." in result.stdout
    assert PASSWORD not in result.stdout and "something else" not in result.stdout

    as_erin = Cli(tmp_path / "erin-config", remote=platform.up.url)
    assert as_erin.run("login", "--username", "erin", input=PASSWORD + "\n").rc == 0
    listed = as_erin.run("user", "list", "--json")
    assert listed.rc == 0, listed
    assert {u["username"]: u["is_admin"] for u in listed.json() if u["username"] == "erin"} == {"erin": True}


# ---- who may -------------------------------------------------------------------------------------

READ_COMMANDS = [
    ["esc", "list"],
    ["esc", "tokens", "anything"],
    ["permissions"],
    ["public-endpoints", "list"],
    ["user", "list"],
]
WRITE_COMMANDS = [
    ["esc", "create", "intruder"],
    ["esc", "token", "anything"],
    ["esc", "revoke", "anything", "--yes"],
    ["grant", "user:bob", "full_access"],
    ["revoke", "user:bob", "full_access"],
    ["public-endpoints", "approve", "1"],
    ["user", "create", "intruder", "--password-stdin"],
]


@pytest.mark.parametrize("args", READ_COMMANDS + WRITE_COMMANDS, ids=" ".join)
def test_a_user_without_admin_rights_is_refused_with_exit_4(
    cli: Cli, platform: Platform, args: list[str]
) -> None:
    result = cli.run(*args, input=PASSWORD + "\n", env={"TRACKSIDE_TOKEN": platform.bob_token})
    assert result.rc == 4, result
    assert result.stderr.startswith("Error: User bob has no call_admin_api permission for "), result
    assert result.stdout == ""


@pytest.mark.parametrize("args", [["esc", "list"], ["permissions"], ["user", "create", "x"]], ids=" ".join)
def test_a_bad_token_or_none_is_exit_4(cli: Cli, platform: Platform, args: list[str]) -> None:
    bad = cli.run(*args, env={"TRACKSIDE_TOKEN": "not-a-token"})
    assert bad.rc == 4, bad
    assert bad.stderr.startswith("Error: the token is invalid, expired or revoked"), bad
    anonymous = cli.run(*args, env={"TRACKSIDE_TOKEN": None})
    assert anonymous.rc == 4, anonymous
    assert anonymous.stderr.startswith(f"Error: not logged in to {platform.up.url}"), anonymous


def test_json_output_is_plain_json_and_the_remote_option_works(cli: Cli, platform: Platform) -> None:
    elsewhere = Cli(cli.config_home, remote=None, token=platform.up.token)
    result = elsewhere.run("user", "list", "--json", "--remote", platform.up.url)
    assert result.rc == 0, result
    assert isinstance(result.json(), list) and "\x1b[" not in result.stdout
    unreachable = elsewhere.run("esc", "list", "--remote", "http://127.0.0.1:9")
    assert unreachable.rc == 1, unreachable
    assert "cannot reach the lifecycle at http://127.0.0.1:9" in unreachable.stderr
