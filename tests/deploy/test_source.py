"""Fetching a job's source: real git (file:// and smart HTTPS over real TLS) and build contexts."""

from __future__ import annotations

import base64
import gzip
import io
import os
import shutil
import socket
import stat
import subprocess
import tarfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from lifecycle.deploy.source import (
    _ASKPASS_SCRIPT,
    FetchedSource,
    GitCredentials,
    SourceError,
    fetch_git,
    unpack_build_context,
)
from tests import gitservers
from tests.gitservers import (
    GitHttpsServer,
    commit_files,
    create_branch,
    create_tag,
    file_url,
    free_closed_port,
    git,
    head_commit,
    make_repo,
)
from trackside.build_context import BuildContextError, pack_directory

JOB = {"job.yaml": "name: adder\n", "entrypoint.py": "class Job:\n    pass\n"}


class Log(list[str]):
    def __call__(self, line: str) -> None:
        self.append(line)

    @property
    def text(self) -> str:
        return "\n".join(self)


@pytest.fixture
def log() -> Log:
    return Log()


def _fetch(
    remote: str,
    dest: Path,
    log: Log,
    *,
    branch: str | None = None,
    directory: str | None = None,
    credentials: GitCredentials | None = None,
    allow_file_remotes: bool = True,
    extra_env: dict[str, str] | None = None,
    timeout: float = 60,
) -> FetchedSource:
    return fetch_git(
        remote,
        branch,
        directory,
        dest,
        credentials,
        log,
        allow_file_remotes=allow_file_remotes,
        extra_env=extra_env,
        timeout=timeout,
    )


def _creds(server: GitHttpsServer, password: str | None = None) -> GitCredentials:
    return GitCredentials(server.username, server.password if password is None else password)


def _unique(request: pytest.FixtureRequest) -> str:
    return request.node.name.replace("[", "-").replace("]", "").replace("/", "-")


# ---------------------------------------------------------------------------------------------
# file:// remotes
# ---------------------------------------------------------------------------------------------


def test_file_clone_is_a_shallow_checkout_of_the_branch_head(tmp_path: Path, log: Log) -> None:
    repo = make_repo(tmp_path / "remote", JOB)
    head = commit_files(repo, {"entrypoint.py": "class Job:\n    version = 2\n"}, "second")

    fetched = _fetch(file_url(repo), tmp_path / "dest", log)

    assert fetched == FetchedSource(tmp_path / "dest", head)
    assert (fetched.root / "entrypoint.py").read_text() == "class Job:\n    version = 2\n"
    assert git(fetched.root, "rev-list", "--count", "HEAD") == "1"  # depth 1
    assert (fetched.root / ".git" / "shallow").exists()
    assert f"fetched commit {head}" in log
    assert any(line.startswith(f"cloning {file_url(repo)}") for line in log)


def test_a_local_path_is_cloned_like_a_file_url(tmp_path: Path, log: Log) -> None:
    repo = make_repo(tmp_path / "remote", JOB)
    commit_files(repo, {"more.txt": "x"})

    fetched = _fetch(str(repo), tmp_path / "dest", log)

    assert fetched.commit == head_commit(repo)
    assert git(fetched.root, "rev-list", "--count", "HEAD") == "1"  # shallow: git got a file:// URL


def test_branch_tag_and_default_branch(tmp_path: Path, log: Log) -> None:
    repo = make_repo(tmp_path / "remote", JOB, branch="main")
    main_head = head_commit(repo)
    feature = create_branch(repo, "feature/x", {"feature.txt": "on the branch"})
    tagged = create_tag(repo, "v1.0")

    default = _fetch(file_url(repo), tmp_path / "default", log)
    on_branch = _fetch(file_url(repo), tmp_path / "branch", log, branch="feature/x")
    on_tag = _fetch(file_url(repo), tmp_path / "tag", log, branch="v1.0")

    assert default.commit == main_head and not (default.root / "feature.txt").exists()
    assert on_branch.commit == feature and (on_branch.root / "feature.txt").read_text() == "on the branch"
    assert on_tag.commit == tagged


def test_git_directory_is_the_job_root(tmp_path: Path, log: Log) -> None:
    repo = make_repo(tmp_path / "remote", {"README": "x", "jobs/adder/job.yaml": "name: adder\n"})

    fetched = _fetch(file_url(repo), tmp_path / "dest", log, directory="jobs/adder/")

    assert fetched.root == tmp_path / "dest" / "jobs" / "adder"
    assert (fetched.root / "job.yaml").exists()


@pytest.mark.parametrize("as_path", [False, True], ids=["file-url", "path"])
def test_file_remotes_are_refused_when_not_allowed(
    tmp_path: Path, log: Log, as_path: bool, file_git_repo: gitservers.FileRepo
) -> None:
    remote = str(file_git_repo.path) if as_path else file_git_repo.url
    assert _fetch(remote, tmp_path / "allowed", log).commit == file_git_repo.commit

    with pytest.raises(SourceError, match="disabled on this lifecycle"):
        _fetch(remote, tmp_path / "dest", log, allow_file_remotes=False)
    assert not (tmp_path / "dest").exists()


@pytest.mark.parametrize(
    ("remote", "expected"),
    [
        ("ssh://git@github.com/org/repo.git", "ssh:// git remotes are not supported yet"),
        ("git+ssh://github.com/org/repo.git", "not supported yet"),
        ("git://github.com/org/repo.git", "git:// git remotes are not supported yet"),
        ("git@github.com:org/repo.git", "SSH remotes are not supported yet"),
        ("github.com:org/repo.git", "SSH remotes are not supported yet"),
        ("ext::sh -c touch% /tmp/pwned", "SSH remotes are not supported yet"),
        ("ftp://example.com/repo.git", "scheme 'ftp' is not supported"),
        ("https:///repo.git", "no host name"),
        ("https://example.com:99999/repo.git", "invalid port"),
        ("https://example.com/repo\n.git", "control characters"),
        ("", "git.remote is empty"),
    ],
)
def test_unsupported_remotes_are_refused_before_running_git(
    tmp_path: Path, log: Log, remote: str, expected: str
) -> None:
    with pytest.raises(SourceError, match=expected):
        _fetch(remote, tmp_path / "dest", log)
    assert not (tmp_path / "dest").exists()
    assert not any(line.startswith("git:") for line in log)


@pytest.mark.parametrize(
    "remote",
    [
        "https://alice:hunter2-secret@example.com/org/repo.git",
        "https://hunter2-secret@example.com/org/repo.git",
        "http://alice:hunter2-secret@127.0.0.1:1/repo",
    ],
)
def test_a_url_with_credentials_is_refused_without_echoing_them(
    tmp_path: Path, log: Log, remote: str
) -> None:
    with pytest.raises(SourceError, match="pass them separately as git credentials") as caught:
        _fetch(remote, tmp_path / "dest", log)
    assert "hunter2" not in str(caught.value)
    assert "hunter2" not in log.text


def test_bad_branch_and_directory_values_are_refused(tmp_path: Path, log: Log) -> None:
    repo = make_repo(tmp_path / "remote", JOB)
    with pytest.raises(SourceError, match="not a valid branch name"):
        _fetch(file_url(repo), tmp_path / "dest", log, branch="--upload-pack=touch /tmp/x")
    for directory in ("../elsewhere", "/etc", "jobs/../../x"):
        with pytest.raises(SourceError, match="must be a relative path inside the repository"):
            _fetch(file_url(repo), tmp_path / "dest", log, directory=directory)
    assert not (tmp_path / "dest").exists()


def test_missing_branch_directory_and_repository_are_named(tmp_path: Path, log: Log) -> None:
    repo = make_repo(tmp_path / "remote", {**JOB, "notes.txt": "a file, not a directory"})
    os.symlink("/etc", repo / "outside")
    commit_files(repo, {})
    dest = tmp_path / "dest"

    with pytest.raises(SourceError, match="branch 'nope' does not exist in"):
        _fetch(file_url(repo), dest, log, branch="nope")
    with pytest.raises(
        SourceError, match=r"git.directory 'jobs/missing' does not exist in .* at commit [0-9a-f]{12}"
    ):
        _fetch(file_url(repo), dest, log, directory="jobs/missing")
    with pytest.raises(SourceError, match=r"git.directory 'notes.txt' is not a directory"):
        _fetch(file_url(repo), dest, log, directory="notes.txt")
    with pytest.raises(SourceError, match=r"git.directory 'outside' leads outside the repository"):
        _fetch(file_url(repo), dest, log, directory="outside")
    with pytest.raises(SourceError, match=r"git repository .*nowhere not found"):
        _fetch(file_url(tmp_path / "nowhere"), dest, log)
    assert not dest.exists()  # every failure removed what the clone had written


def test_destination_must_be_empty_and_is_left_as_it_was(tmp_path: Path, log: Log) -> None:
    repo = make_repo(tmp_path / "remote", JOB)
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    with pytest.raises(SourceError, match="is not empty"):
        _fetch(file_url(repo), full, log)
    assert (full / "keep.txt").read_text() == "mine"

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SourceError, match="does not exist"):
        _fetch(file_url(repo), empty, log, branch="nope")
    assert empty.is_dir() and not any(empty.iterdir())

    assert _fetch(file_url(repo), empty, log).commit == head_commit(repo)


def test_an_empty_repository_is_an_error(tmp_path: Path, log: Log) -> None:
    empty = tmp_path / "remote"
    empty.mkdir()
    git(empty, "init", "--quiet")
    with pytest.raises(SourceError, match="has no commits"):
        _fetch(file_url(empty), tmp_path / "dest", log)
    assert not (tmp_path / "dest").exists()


# ---------------------------------------------------------------------------------------------
# HTTPS remotes (git http-backend behind TLS + Basic auth)
# ---------------------------------------------------------------------------------------------


def test_https_clone_with_credentials(
    git_https_server: GitHttpsServer, tmp_path: Path, log: Log, request: pytest.FixtureRequest
) -> None:
    name = _unique(request)
    repo = git_https_server.make_repo(name, {**JOB, "jobs/a/job.yaml": "name: a\n"})

    fetched = _fetch(
        git_https_server.url_for(name),
        tmp_path / "dest",
        log,
        directory="jobs/a",
        credentials=_creds(git_https_server),
        extra_env=git_https_server.git_env,
        allow_file_remotes=False,
    )

    assert fetched.commit == head_commit(repo)
    assert (fetched.root / "job.yaml").read_text() == "name: a\n"
    assert git(tmp_path / "dest", "rev-list", "--count", "HEAD") == "1"
    users = {r.user for r in git_https_server.requests if f"/{name}/" in r.path}
    assert users == {None, "alice"}  # challenged first (401), then authenticated
    assert git_https_server.password not in log.text


def test_wrong_password_is_an_authentication_error_that_does_not_show_it(
    git_https_server: GitHttpsServer, tmp_path: Path, log: Log, request: pytest.FixtureRequest
) -> None:
    name = _unique(request)
    git_https_server.make_repo(name, JOB)
    wrong = "wrong-token-Zq9XfLr2"

    with pytest.raises(
        SourceError, match=r"authentication to .* failed: check the git username and token"
    ) as caught:
        _fetch(
            git_https_server.url_for(name),
            tmp_path / "dest",
            log,
            credentials=GitCredentials("alice", wrong),
            extra_env=git_https_server.git_env,
        )
    assert wrong not in str(caught.value)
    assert wrong not in log.text and git_https_server.password not in log.text
    assert any("Authentication failed" in line for line in log)  # git's own words, sanitised
    assert not (tmp_path / "dest").exists()


def test_missing_credentials_fail_at_once_instead_of_prompting(
    git_https_server: GitHttpsServer, tmp_path: Path, log: Log, request: pytest.FixtureRequest
) -> None:
    name = _unique(request)
    git_https_server.make_repo(name, JOB)

    started = time.monotonic()
    with pytest.raises(SourceError, match="requires authentication: deploy with git credentials"):
        _fetch(git_https_server.url_for(name), tmp_path / "dest", log, extra_env=git_https_server.git_env)
    assert time.monotonic() - started < 10


def test_https_missing_branch_and_repository(
    git_https_server: GitHttpsServer, tmp_path: Path, log: Log, request: pytest.FixtureRequest
) -> None:
    name = _unique(request)
    git_https_server.make_repo(name, JOB)
    creds, env = _creds(git_https_server), git_https_server.git_env

    with pytest.raises(SourceError, match="branch 'release' does not exist in https://"):
        _fetch(
            git_https_server.url_for(name),
            tmp_path / "dest",
            log,
            branch="release",
            credentials=creds,
            extra_env=env,
        )
    with pytest.raises(SourceError, match=r"git repository https://.*/no-such-repo not found"):
        _fetch(
            git_https_server.url_for("no-such-repo"), tmp_path / "dest", log, credentials=creds, extra_env=env
        )


def test_untrusted_certificate_is_a_tls_error(
    git_https_server: GitHttpsServer, tmp_path: Path, log: Log, request: pytest.FixtureRequest
) -> None:
    name = _unique(request)
    git_https_server.make_repo(name, JOB)
    # Without the test CA git checks the server against the system bundle, which does not know it.
    with pytest.raises(SourceError, match=r"TLS connection to .* failed .*certificate"):
        _fetch(git_https_server.url_for(name), tmp_path / "dest", log, credentials=_creds(git_https_server))


def test_unreachable_host_fails_fast(tmp_path: Path, log: Log) -> None:
    port = free_closed_port()
    started = time.monotonic()
    with pytest.raises(
        SourceError, match=f"cannot connect to https://127.0.0.1:{port}/repo: the git server is unreachable"
    ):
        _fetch(f"https://127.0.0.1:{port}/repo", tmp_path / "dest", log)
    assert time.monotonic() - started < 5


def test_plain_http_is_allowed_with_a_warning(tmp_path: Path, log: Log) -> None:
    port = free_closed_port()
    with pytest.raises(SourceError, match="unreachable"):
        _fetch(f"http://127.0.0.1:{port}/repo", tmp_path / "dest", log, credentials=GitCredentials("a", "b"))
    assert "uses plain http: the code and the git credentials travel unencrypted" in log[0]


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmdline:
                found.append(cmdline)
    return found


def test_a_server_that_never_answers_times_out_and_git_is_killed(tmp_path: Path, log: Log) -> None:
    with socket.socket() as silent:  # accepts connections (backlog) and never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"https://127.0.0.1:{silent.getsockname()[1]}/repo"
        started = time.monotonic()
        with pytest.raises(SourceError, match=r"fetching https://127\.0\.0\.1:\d+/repo timed out after 1 s"):
            _fetch(url, tmp_path / "dest", log, timeout=1)
        assert time.monotonic() - started < 5
        assert [p for p in _processes_mentioning(url) if "pytest" not in p] == []
    assert not (tmp_path / "dest").exists()


def test_credentials_are_in_no_argv_config_file_or_log(
    git_https_server: GitHttpsServer, tmp_path: Path, log: Log, request: pytest.FixtureRequest
) -> None:
    name = _unique(request)
    git_https_server.make_repo(name, JOB)
    password = git_https_server.password
    # A `git` first on PATH that records its argv, the names of its environment variables and the
    # askpass helper it was given, then runs the real git.
    record = tmp_path / "git-calls.txt"
    wrapper_dir = tmp_path / "bin"
    wrapper_dir.mkdir()
    real_git = shutil.which("git")
    assert real_git
    wrapper = wrapper_dir / "git"
    wrapper.write_text(
        "#!/bin/sh\n"
        f"{{ printf 'ARG %s\\n' \"$@\"; env | sed -n 's/^\\([A-Za-z_][A-Za-z0-9_]*\\)=.*/ENV \\1/p';"
        f" printf 'ASKPASS %s\\n' \"$GIT_ASKPASS\"; }} >> '{record}'\n"
        f"exec '{real_git}' \"$@\"\n"
    )
    wrapper.chmod(0o755)
    env = {**git_https_server.git_env, "PATH": f"{wrapper_dir}:{os.environ['PATH']}"}
    dest = tmp_path / "dest"
    outcome: list[object] = []

    def clone() -> None:
        try:
            outcome.append(
                _fetch(
                    git_https_server.url_for(name),
                    dest,
                    log,
                    credentials=_creds(git_https_server),
                    extra_env=env,
                )
            )
        except BaseException as e:  # pragma: no cover - reported below
            outcome.append(e)

    with git_https_server.holding_requests() as held:
        worker = threading.Thread(target=clone)
        worker.start()
        assert held.arrived.wait(20), "git never reached the server with credentials"
        # git is alive now, holding the credentials and waiting for the server.
        ps = subprocess.run(["ps", "-eww", "-o", "args"], capture_output=True, text=True, check=True).stdout
        assert "git" in ps and git_https_server.url_for(name) in ps
        assert password not in ps
        assert all(password not in cmdline for cmdline in _processes_mentioning(""))
        askpass = Path(record.read_text().split("ASKPASS ")[1].split("\n")[0])
        assert stat.S_IMODE(askpass.stat().st_mode) == 0o700
        assert stat.S_IMODE(askpass.parent.stat().st_mode) == 0o700
        assert password not in askpass.read_text()
        held.release()
        worker.join(30)

    assert isinstance(outcome[0], FetchedSource), outcome
    calls = record.read_text()
    assert "ARG clone" in calls and password not in calls
    assert {"ENV GIT_ASKPASS", "ENV GIT_TERMINAL_PROMPT", "ENV GIT_CONFIG_COUNT"} <= set(calls.splitlines())
    for path in (dest / ".git").rglob("*"):
        if path.is_file():
            assert password.encode() not in path.read_bytes(), path
    assert "alice" not in (dest / ".git" / "config").read_text()  # the remote URL has no user either
    assert password not in log.text
    assert not askpass.exists() and not askpass.parent.exists()  # the helper is removed afterwards


def test_configured_credential_helpers_are_not_used(
    git_https_server: GitHttpsServer, tmp_path: Path, log: Log, request: pytest.FixtureRequest
) -> None:
    """A user-level `credential.helper = store` would hand out and save the token; git runs with
    the helper list reset, so nothing is read from it or written to it."""
    name = _unique(request)
    git_https_server.make_repo(name, JOB)
    store = tmp_path / "stored-credentials"
    store.write_text(f"https://alice:{git_https_server.password}@127.0.0.1%3a{git_https_server.port}\n")
    config = tmp_path / "gitconfig"
    config.write_text(f"[credential]\n\thelper = store --file={store}\n")
    env = {**git_https_server.git_env, "GIT_CONFIG_GLOBAL": str(config)}

    with pytest.raises(SourceError, match="requires authentication"):  # the stored token is not used
        _fetch(git_https_server.url_for(name), tmp_path / "d1", log, extra_env=env)
    store.unlink()
    _fetch(
        git_https_server.url_for(name),
        tmp_path / "d2",
        log,
        credentials=_creds(git_https_server),
        extra_env=env,
    )
    assert not store.exists()  # and the token that worked was not stored


def test_askpass_answers_only_for_the_remotes_own_host(tmp_path: Path) -> None:
    script = tmp_path / "askpass.sh"
    script.write_text(_ASKPASS_SCRIPT)
    script.chmod(0o700)
    env = {
        "PATH": os.environ["PATH"],
        "TRACKSIDE_GIT_ORIGIN": "https://git.example.com:8443",
        "TRACKSIDE_GIT_SCHEME": "https",
        "TRACKSIDE_GIT_HOST": "git.example.com:8443",
        "TRACKSIDE_GIT_USERNAME": "alice",
        "TRACKSIDE_GIT_PASSWORD": "s3cr3t",
    }

    def ask(prompt: str) -> tuple[int, str]:
        done = subprocess.run([str(script), prompt], env=env, capture_output=True, text=True, check=False)
        return done.returncode, done.stdout

    assert ask("Username for 'https://git.example.com:8443': ") == (0, "alice\n")
    assert ask("Password for 'https://alice@git.example.com:8443': ") == (0, "s3cr3t\n")
    for foreign in (
        "Username for 'https://evil.example.com': ",
        "Password for 'https://alice@evil.example.com': ",
        "Password for 'http://alice@git.example.com:8443': ",
        "Password for 'https://alice@git.example.com': ",
        "Password for 'https://alice@sub.git.example.com:8443': ",
    ):
        assert ask(foreign) == (1, ""), foreign


# ---------------------------------------------------------------------------------------------
# build context
# ---------------------------------------------------------------------------------------------


def _tree(root: Path) -> dict[str, object]:
    result: dict[str, object] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            result[rel] = ("link", os.readlink(path))
        elif path.is_dir():
            result[rel] = "dir"
        else:
            result[rel] = (path.read_bytes(), bool(path.stat().st_mode & 0o100))
    return result


def test_build_context_round_trip(tmp_path: Path) -> None:
    job = tmp_path / "job"
    (job / "pkg" / "data").mkdir(parents=True)
    (job / "empty").mkdir()
    (job / "job.yaml").write_text("name: adder\n")
    (job / "pkg" / "model.bin").write_bytes(bytes(range(256)) * 100)
    (job / "run.sh").write_text("#!/bin/sh\n")
    (job / "run.sh").chmod(0o755)
    os.symlink("pkg/model.bin", job / "model-link")
    os.symlink("../job.yaml", job / "pkg" / "manifest")
    (job / ".git").mkdir()
    (job / ".git" / "config").write_text("[core]\n")
    (job / "pkg" / "cache.pyc").write_bytes(b"\0")

    packed = pack_directory(job)  # leaves out .git and *.pyc by itself
    assert pack_directory(job) == packed  # reproducible
    root = unpack_build_context(packed, tmp_path / "out" / "context")

    assert root == tmp_path / "out" / "context"
    expected = {k: v for k, v in _tree(job).items() if not k.startswith(".git") and not k.endswith(".pyc")}
    assert _tree(root) == expected
    assert (root / "pkg" / "manifest").read_text() == "name: adder\n"
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["context"]  # no staging left behind


def test_pack_refuses_links_pointing_outside(tmp_path: Path) -> None:
    job = tmp_path / "job"
    job.mkdir()
    os.symlink("/etc/passwd", job / "passwd")
    with pytest.raises(BuildContextError, match="passwd is a symbolic link pointing outside"):
        pack_directory(job)


def _targz(*members: tuple[tarfile.TarInfo, bytes | None], fmt: int = tarfile.PAX_FORMAT) -> str:
    buffer = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=buffer, mode="wb") as gz,
        tarfile.open(fileobj=gz, mode="w", format=fmt) as tar,
    ):
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return base64.b64encode(buffer.getvalue()).decode()


def _entry(
    name: str, kind: bytes = tarfile.REGTYPE, data: bytes | None = b"x", link: str = ""
) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    return info, data if kind in (tarfile.REGTYPE, tarfile.AREGTYPE) else None


def _racetrack_cli_archive(job: Path) -> bytes:
    """What Racetrack's CLI uploads: tarfile.add of every top-level entry (owners, hard links kept)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted(job.iterdir()):
            tar.add(str(path), arcname=path.name)
    return buffer.getvalue()


def _gnu_tar_archive(job: Path) -> bytes:
    return subprocess.run(["tar", "-C", str(job), "-czf", "-", "."], capture_output=True, check=True).stdout


@pytest.mark.parametrize(
    "make_archive", [_racetrack_cli_archive, _gnu_tar_archive], ids=["racetrack-cli", "gnu-tar"]
)
def test_archives_made_by_other_tools_unpack(tmp_path: Path, make_archive: Callable[[Path], bytes]) -> None:
    job = tmp_path / "job"
    (job / "sub").mkdir(parents=True)
    (job / "a.txt").write_text("same inode")
    (job / "a.txt").chmod(0o664)
    os.link(job / "a.txt", job / "sub" / "b.txt")  # archived as a hard link to the first name
    os.symlink("../a.txt", job / "sub" / "link")
    archive = make_archive(job)

    root = unpack_build_context(base64.encodebytes(archive).decode(), tmp_path / "dest")  # with newlines

    assert (root / "sub" / "b.txt").read_text() == (root / "sub" / "link").read_text() == "same inode"
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) == [
        "a.txt",
        "sub",
        "sub/b.txt",
        "sub/link",
    ]
    assert stat.S_IMODE((root / "a.txt").stat().st_mode) == 0o644


LIMIT = 64 * 1024
MALICIOUS: dict[str, tuple[Callable[[], str], str]] = {
    "dotdot": (lambda: _targz(_entry("../evil.txt")), r"'\.\.' in its path"),
    "nested dotdot": (lambda: _targz(_entry("a/../../evil.txt")), r"'\.\.' in its path"),
    "absolute": (lambda: _targz(_entry("/tmp/trackside-evil.txt")), "absolute path"),
    "symlink absolute": (
        lambda: _targz(_entry("l", tarfile.SYMTYPE, link="/etc/passwd")),
        "symbolic link pointing outside",
    ),
    "symlink up": (
        lambda: _targz(_entry("d/l", tarfile.SYMTYPE, link="../../outside")),
        "symbolic link pointing outside",
    ),
    "symlink chain escape": (
        lambda: _targz(_entry("y", tarfile.SYMTYPE, link="x/.."), _entry("x", tarfile.SYMTYPE, link=".")),
        "symbolic link pointing outside",
    ),
    "write through symlink": (
        lambda: _targz(
            _entry("sub", tarfile.DIRTYPE), _entry("d", tarfile.SYMTYPE, link="sub"), _entry("d/f")
        ),
        "through a file or link",
    ),
    "hardlink absolute": (lambda: _targz(_entry("h", tarfile.LNKTYPE, link="/etc/passwd")), "hard link"),
    "hardlink up": (lambda: _targz(_entry("h", tarfile.LNKTYPE, link="../outside")), "hard link"),
    "hardlink to no member": (
        lambda: _targz(_entry("h", tarfile.LNKTYPE, link="later.txt"), _entry("later.txt")),
        "hard link",
    ),
    "char device": (lambda: _targz(_entry("tty", tarfile.CHRTYPE)), "device file or fifo"),
    "block device": (lambda: _targz(_entry("sda", tarfile.BLKTYPE)), "device file or fifo"),
    "fifo": (lambda: _targz(_entry("pipe", tarfile.FIFOTYPE)), "device file or fifo"),
    "duplicate": (lambda: _targz(_entry("a.txt"), _entry("./a.txt")), "twice"),
    "oversized file (gzip bomb)": (
        lambda: _targz(_entry("zeros", data=bytes(LIMIT + 1))),
        "unpacks to more than 65536 bytes",
    ),
    "oversized in total": (
        lambda: _targz(*(_entry(f"f{i}", data=bytes(LIMIT // 4)) for i in range(5))),
        "unpacks to more than 65536 bytes",
    ),
    "too many entries": (lambda: _targz(*(_entry(f"f{i}") for i in range(21))), "more than 20 entries"),
    "bad base64": (lambda: "this is *not* base64!", "not valid base64"),
    "empty": (lambda: "", "the build context is empty"),
    "bad gzip": (lambda: base64.b64encode(b"plain text, not gzip").decode(), "not a valid gzip stream"),
    "truncated gzip": (
        lambda: base64.b64encode(
            base64.b64decode(_targz(_entry("a", data=os.urandom(4000))))[:-100]
        ).decode(),
        "not a valid",
    ),
    "not a tar": (
        lambda: base64.b64encode(gzip.compress(os.urandom(3000))).decode(),
        "not a valid tar archive",
    ),
    "packed too large": (
        lambda: base64.b64encode(os.urandom(LIMIT + 10)).decode(),
        r"larger than 65536 bytes \(packed\)",
    ),
}


@pytest.mark.parametrize("case", list(MALICIOUS))
def test_malicious_build_contexts_are_refused_leaving_nothing(tmp_path: Path, case: str) -> None:
    make, expected = MALICIOUS[case]
    archive = make()
    parent = tmp_path / "a" / "b"
    parent.mkdir(parents=True)

    with pytest.raises(SourceError, match=expected):
        unpack_build_context(archive, parent / "dest", max_bytes=LIMIT, max_entries=20)

    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == ["a", "a/b"]
    assert not Path("/tmp/trackside-evil.txt").exists()


def test_a_refused_context_leaves_an_existing_empty_dest_empty(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(SourceError):
        unpack_build_context(_targz(_entry("ok.txt"), _entry("../evil")), dest)
    assert dest.is_dir() and list(tmp_path.rglob("*")) == [dest]

    (dest / "x").write_text("occupied")
    with pytest.raises(SourceError, match="is not empty"):
        unpack_build_context(_targz(_entry("ok.txt")), dest)
    assert (dest / "x").read_text() == "occupied"


def test_links_inside_the_context_are_kept(tmp_path: Path) -> None:
    archive = _targz(
        _entry("lib", tarfile.DIRTYPE),
        _entry("lib/real.py", data=b"X = 1\n"),
        _entry("alias.py", tarfile.SYMTYPE, link="lib/real.py"),
        _entry("lib/up.py", tarfile.SYMTYPE, link="../alias.py"),
        _entry("copy.py", tarfile.LNKTYPE, link="lib/real.py"),
    )
    root = unpack_build_context(archive, tmp_path / "dest")
    assert (root / "alias.py").read_text() == (root / "lib" / "up.py").read_text() == "X = 1\n"
    assert (root / "copy.py").stat().st_ino == (root / "lib" / "real.py").stat().st_ino
    assert stat.S_IMODE((root / "lib" / "real.py").stat().st_mode) == 0o644
