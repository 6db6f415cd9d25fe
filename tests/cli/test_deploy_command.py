"""`deploy` and `validate` through the real entry point against a real `trackside up`: the
manifest checked before anything is sent, the progress of a deploy that fails in each phase and
of one that succeeds, secrets, git credentials from the config, and Ctrl-C."""

from __future__ import annotations

import re
import shlex
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.cli.cli_runner import Cli, Result, read_until
from tests.conftest import SAMPLE_JOBS
from tests.gitservers import GitHttpsServer, file_url
from tests.lifecycle.platform import TracksideUp

ADDER = (SAMPLE_JOBS / "adder" / "entrypoint.py").read_text()
PHASES = [
    "fetching the source code",
    "building the environment",
    "starting the job",
    "initialising the entrypoint",
    "checking the input examples",
]


def write_job(
    directory: Path,
    name: str,
    entrypoint: str = ADDER,
    extra: str = "",
    files: dict[str, str] | None = None,
    remote: str = "https://github.com/trackside/trackside",
) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "entrypoint.py").write_text(entrypoint)
    (directory / "job.yaml").write_text(
        f"name: {name}\nowner_email: t@example.com\njobtype: python3:latest\nversion: 0.0.1\n"
        f"git:\n  remote: {remote}\njobtype_extra:\n  entrypoint_path: entrypoint.py\n{extra}"
    )
    for rel, text in (files or {}).items():
        (directory / rel).parent.mkdir(parents=True, exist_ok=True)
        (directory / rel).write_text(text)
    return directory


@pytest.fixture(scope="module")
def platform(module_tmp: Path, git_https_server: GitHttpsServer) -> Iterator[TracksideUp]:
    up = TracksideUp(module_tmp / "data", module_tmp / "up.log", env=git_https_server.git_env)
    try:
        yield up
    finally:
        up.stop()


@pytest.fixture
def cli(tmp_path: Path, platform: TracksideUp) -> Cli:
    return Cli(tmp_path / "config", remote=platform.url, token=platform.token)


def deployments_of(platform: TracksideUp, name: str) -> list[dict[str, object]]:
    r = platform.client.get("/api/v1/deploy", params={"job_name": name})
    assert r.status_code == 200, r.text
    found: list[dict[str, object]] = r.json()
    return found


def phase_lines(result: Result) -> list[tuple[str, str]]:
    """(phase, outcome) of the plain progress lines: `phase ... 1.2 s` / `... failed after 1.2 s`."""
    found = []
    for line in result.stdout.splitlines():
        match = re.fullmatch(r"(.+) \.\.\. (failed after )?\d+\.\d s", line)
        if match:
            found.append((match[1], "failed" if match[2] else "ok"))
    return found


def assert_failed_in(result: Result, phase: str, error: str) -> None:
    assert result.rc == 1, result
    index = PHASES.index(phase)
    assert phase_lines(result) == [(p, "ok") for p in PHASES[:index]] + [(phase, "failed")], result
    assert result.stderr.startswith(f"Error: the deployment failed while {phase}: "), result
    assert error in result.stderr, result
    assert "Traceback" not in result.stderr


# ---- validate -------------------------------------------------------------------------------------


def test_validate_prints_the_resolved_manifest(cli: Cli, tmp_path: Path) -> None:
    result = cli.run("validate", str(SAMPLE_JOBS / "adder"))
    assert result.rc == 0, result
    manifest = yaml.safe_load(result.stdout)
    assert manifest["name"] == "adder" and manifest["jobtype_extra"] == {"entrypoint_path": "entrypoint.py"}

    base = tmp_path / "base.yaml"
    base.write_text(
        "name: base\nowner_email: t@example.com\njobtype: python3:latest\n"
        "git: {remote: https://github.com/x/y, branch: main}\nreplicas: 2\n"
        "jobtype_extra: {entrypoint_path: entrypoint.py}\n"
    )
    job = tmp_path / "job" / "job.yaml"
    job.parent.mkdir()
    job.write_text("extends: ../base.yaml\nname: child\nlang: python3:latest\n")
    resolved = cli.run("validate", str(job), "-e", "git.branch=dev", "--extra-vars", "replicas=3")
    assert resolved.rc == 0, resolved
    assert yaml.safe_load(resolved.stdout)["git"]["branch"] == "dev"
    assert yaml.safe_load(resolved.stdout)["git"]["remote"] == "https://github.com/x/y"
    assert yaml.safe_load(resolved.stdout)["replicas"] == 3
    assert "Warning: 'lang' is deprecated" in resolved.stderr

    as_json = cli.run("validate", str(job.parent), "--json")
    assert as_json.rc == 0, as_json
    body = as_json.json()
    assert body["valid"] is True and body["manifest"]["name"] == "child" and body["warnings"]


def test_validate_shows_every_error_with_its_field(cli: Cli, tmp_path: Path) -> None:
    job = write_job(tmp_path / "bad", "Bad_Name", extra="replicas: 0\nsurprise: 1\n")
    result = cli.run("validate", str(job), "-e", "jobtype_extra.max_concurrency=many")
    assert result.rc == 2, result
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[0] == f"Error: invalid manifest {job / 'job.yaml'}: 4 errors"
    fields = sorted(line.split(":")[0].strip(" -") for line in lines[1:])
    assert fields == ["jobtype_extra.max_concurrency", "name", "replicas", "surprise"], result

    as_json = cli.run("validate", str(job), "--json")
    assert as_json.rc == 2, as_json
    body = as_json.json()
    assert body["valid"] is False
    assert {e["field"] for e in body["errors"]} == {"name", "replicas", "surprise"}
    assert all(e["message"] and e["expected"] for e in body["errors"])

    missing = cli.run("validate", str(tmp_path / "nowhere"))
    assert missing.rc == 2 and "no such file" in missing.stderr, missing


# ---- refused before anything is sent -------------------------------------------------------------


def test_a_bad_manifest_is_refused_before_any_upload(cli: Cli, platform: TracksideUp, tmp_path: Path) -> None:
    job = write_job(tmp_path / "bad", "badmanifest", extra="replicas: -1\n")
    result = cli.run("deploy", str(job))
    assert result.rc == 2, result
    assert "replicas: got -1" in result.stderr
    assert "Deploying" not in result.stdout
    override = cli.run("deploy", str(write_job(tmp_path / "ok", "badmanifest")), "-e", "name=NOT OK")
    assert override.rc == 2 and "name: got 'NOT OK'" in override.stderr, override
    assert deployments_of(platform, "badmanifest") == []


def test_missing_secrets_or_token_stop_the_deploy_before_it_starts(
    cli: Cli, platform: TracksideUp, tmp_path: Path
) -> None:
    job = write_job(tmp_path / "secretive", "secretive", extra="secret_runtime_env_file: .env\n")
    missing = cli.run("deploy", str(job))
    assert missing.rc == 2, missing
    assert missing.stderr == f"Error: secret_runtime_env_file: {job / '.env'} does not exist\n"
    (job / ".env").write_text("GOOD=1\n2BAD=value-that-stays-secret\n")
    bad = cli.run("deploy", str(job))
    assert bad.rc == 2 and "line 2: '2BAD' is not a valid variable name" in bad.stderr, bad
    assert "value-that-stays-secret" not in bad.stderr
    anonymous = cli.run(
        "deploy", str(write_job(tmp_path / "anon", "secretive")), env={"TRACKSIDE_TOKEN": None}
    )
    assert anonymous.rc == 4, anonymous
    assert anonymous.stderr.startswith(f"Error: not logged in to {platform.url}")
    assert deployments_of(platform, "secretive") == []


# ---- success ----------------------------------------------------------------------------------------


def test_a_successful_deploy_shows_each_phase_and_how_to_call_the_job(
    cli: Cli, platform: TracksideUp, tmp_path: Path
) -> None:
    job = write_job(
        tmp_path / "hello", "hello", files={".gitignore": "notes.txt\n", "notes.txt": "not uploaded"}
    )
    result = cli.run("deploy", str(job))
    assert result.rc == 0, result
    lines = result.stdout.splitlines()
    assert re.fullmatch(
        rf"Deploying hello 0\.0\.1 to {platform.url} from {job} \(\d+ bytes uploaded\)", lines[0]
    )
    assert lines[1].startswith("Deployment ")
    assert phase_lines(result) == [(p, "ok") for p in PHASES]
    url = f"{platform.url}/pub/job/hello/0.0.1"
    assert re.search(r"^Deployed hello 0\.0\.1 in \d+\.\d s\.$", result.stdout, re.M), result
    assert f"  URL:  {url}" in lines
    call_line = next(line for line in lines if line.startswith("  call: "))
    assert call_line == """  call: trackside call hello '{"numbers": [40, 2]}' --version 0.0.1"""
    curl_line = next(line for line in lines if line.startswith("  curl: "))
    assert f"curl -X POST {url}/api/v1/perform" in curl_line and "$TRACKSIDE_TOKEN" in curl_line
    assert platform.token not in result.stdout + result.stderr

    # the printed call works
    called = cli.run(*shlex.split(call_line.removeprefix("  call: "))[1:])
    assert called.rc == 0 and called.stdout == "42.0\n", called

    # the same version again: refused without --force, replaced with it (on a terminal: live progress)
    again = cli.run("deploy", str(job))
    assert again.rc == 1, again
    assert "already exists" in again.stderr and "add --force to replace it" in again.stderr
    forced = cli.terminal("deploy", str(job), "--force", "--no-cache")
    assert forced.rc == 0, forced
    shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", forced.stdout)
    for phase in PHASES:
        assert f"✓ {phase}" in shown, shown
    assert "Deployed hello 0.0.1" in shown
    build_log = cli.run("build-logs", "hello")
    assert "creating environment" in build_log.stdout and "reusing environment" not in build_log.stdout


def test_secret_files_reach_the_job_and_nothing_else(cli: Cli, platform: TracksideUp, tmp_path: Path) -> None:
    job = tmp_path / "env-secret"
    job.mkdir()
    for name in ("entrypoint.py", "job.yaml"):
        (job / name).write_text((SAMPLE_JOBS / "env-secret" / name).read_text())
    (job / ".env").write_text(
        '# secrets\nexport API_KEY=\'sk-abc123\'\nDATABASE_PASSWORD="p w\\"d"  # quoted\n\nUNUSED=x # comment\n'
    )
    result = cli.run("deploy", str(job), "-e", "version=0.0.2")
    assert result.rc == 0, result
    for secret in ("sk-abc123", 'p w"d'):
        assert secret not in result.stdout + result.stderr
    answer = cli.run("call", "env-secret", "{}")
    assert answer.rc == 0, answer
    assert answer.json()["secrets"] == {
        "API_KEY": {"set": True, "length": 9},
        "DATABASE_PASSWORD": {"set": True, "length": 5},
    }
    build_log = cli.run("build-logs", "env-secret", "--version", "0.0.2")
    assert "sk-abc123" not in build_log.stdout


def test_git_credentials_come_from_the_config(
    cli: Cli, platform: TracksideUp, git_https_server: GitHttpsServer, tmp_path: Path
) -> None:
    git_https_server.make_repo("private-adder", {"entrypoint.py": ADDER})
    url = git_https_server.url_for("private-adder")
    job = write_job(tmp_path / "private", "private-adder", remote=url)

    without = cli.run("deploy", str(job), "--build-context", "git")
    assert_failed_in(without, "fetching the source code", url)

    cli.config_file.parent.mkdir(parents=True, exist_ok=True)
    cli.config_file.write_text(
        yaml.safe_dump(
            {
                "git_credentials": {
                    git_https_server.base_url: {
                        "username": git_https_server.username,
                        "password": git_https_server.password,
                    }
                }
            }
        )
    )
    cli.config_file.chmod(0o600)
    result = cli.run("deploy", str(job), "--build-context", "git")
    assert result.rc == 0, result
    assert f"from git {url}" in result.stdout.splitlines()[0]
    assert git_https_server.password not in result.stdout + result.stderr
    assert cli.run("call", "private-adder", "numbers: [2, 2]").stdout == "4.0\n"


# ---- failures, one per phase ------------------------------------------------------------------------


def test_a_git_failure(cli: Cli, tmp_path: Path) -> None:
    missing = file_url(tmp_path / "no-such-repo")
    job = write_job(tmp_path / "gitfail", "gitfail", remote=missing)
    result = cli.run("deploy", str(job), "--build-context", "git")
    assert_failed_in(result, "fetching the source code", "no-such-repo")
    assert "Last lines of the build log" in result.stdout


def test_a_dependency_failure(cli: Cli, tmp_path: Path) -> None:
    job = write_job(
        tmp_path / "depfail",
        "depfail",
        extra="  requirements_path: requirements.txt\n",
        files={"requirements.txt": "trackside-no-such-package-xyz==1.0\n"},
    )
    result = cli.run("deploy", str(job))
    assert_failed_in(result, "building the environment", "trackside-no-such-package-xyz")
    tail = result.stdout.split("Last lines of the build log")[1]
    assert "trackside-no-such-package-xyz" in tail


def test_an_import_error(cli: Cli, tmp_path: Path) -> None:
    job = write_job(tmp_path / "importfail", "importfail", entrypoint="import no_such_module_xyz\n" + ADDER)
    result = cli.run("deploy", str(job))
    assert_failed_in(result, "initialising the entrypoint", "No module named 'no_such_module_xyz'")


def test_a_failing_input_example(cli: Cli, platform: TracksideUp, tmp_path: Path) -> None:
    entrypoint = ADDER.replace('return {"numbers": [40, 2]}', 'return {"numbers": "not a list"}')
    assert entrypoint != ADDER
    job = write_job(tmp_path / "examplefail", "examplefail", entrypoint=entrypoint)
    result = cli.run("deploy", str(job))
    assert_failed_in(result, "checking the input examples", "/api/v1/perform")
    assert cli.run("status", "examplefail").rc == 3  # a failed first deploy leaves no job


# ---- Ctrl-C -------------------------------------------------------------------------------------------


def test_ctrl_c_stops_watching_not_the_deploy(cli: Cli, platform: TracksideUp, tmp_path: Path) -> None:
    slow = ADDER.replace(
        "class Adder:", "import time\n\n\nclass Adder:\n    def __init__(self):\n        time.sleep(3)\n"
    )
    job = write_job(tmp_path / "slowpoke", "slowpoke", entrypoint=slow)
    process = cli.start("deploy", str(job))
    try:
        seen = read_until(process, "Deployment ")
        deployment_id = seen.splitlines()[-1].removeprefix("Deployment ").strip()
        time.sleep(0.5)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr
    assert f"Stopped watching; the deployment goes on ({deployment_id})." in stdout
    assert "trackside build-logs slowpoke --version 0.0.1" in stdout
    assert "Traceback" not in stderr
    assert platform.wait(deployment_id)["status"] == "done"
