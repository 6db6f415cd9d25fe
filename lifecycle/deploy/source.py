"""A job's source: a shallow git checkout, or the build context uploaded with the deploy request.

Both end as a directory the builder reads (the job's root). Everything that can go wrong raises
`SourceError` with a message the user can act on; no message and no log line ever contains the
git password (token).

Git (`fetch_git`)
    `git clone --depth 1 --single-branch [--branch B]` into an empty destination.
    * Credentials go through GIT_ASKPASS: a tiny shell script written to a private temp directory
      (0700) that prints the username/password from environment variables of the git process.
      Chosen over `http.extraHeader` (GIT_CONFIG_*) because git then sends them only when the
      server asks for them (a 401), through its own credential machinery, and the script answers
      only for the remote's own scheme://host[:port] (a redirect to another host gets nothing),
      whereas an extra header goes with every request. The secret never reaches the URL, argv,
      .git/config, the script file or the log; only the environment of git and its children,
      which only the same user (or root) can read. `credential.helper` is reset (nothing stored).
    * Remotes: https always; http with a warning in the log; file:// URLs and local paths only
      when `allow_file_remotes`; ssh (ssh://, user@host:path), git:// and other transports are
      refused (not supported yet). A URL with credentials in it is refused without echoing them.
      git's own `protocol.allow` is narrowed to the one scheme in use.
    * git runs with GIT_TERMINAL_PROMPT=0, stdin closed, LC_ALL=C (its messages are matched to
      name the failure), in its own process group (a timeout kills git and its helpers).

Build context (`unpack_build_context`; the CLI packs it with trackside.build_context)
    base64 of a tar.gz of the job directory. Limits: 50 MiB packed and 50 MiB unpacked (counted
    while decompressing, headers are not trusted), 20,000 entries. Allowed entries: regular
    files, directories, symbolic links that stay inside the context (relative, checked again
    on the final tree with realpath) and hard links to a regular file earlier in the archive.
    Refused: absolute names, `..`, duplicate names, writing through a link, devices, fifos,
    sparse files. Extraction goes to a private staging directory next to `dest` with tarfile's
    `data` filter on top of these checks, and is renamed into place only when all of it passed.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import io
import os
import posixpath
import queue
import re
import shutil
import signal
import subprocess
import tarfile
import tempfile
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, cast
from urllib.parse import urlsplit

Log = Callable[[str], None]

MiB = 1024 * 1024
MAX_CONTEXT_BYTES = 50 * MiB
MAX_CONTEXT_ENTRIES = 20_000
GIT_TIMEOUT = 300.0

_MAX_LOGGED_GIT_LINES = 400
_MAX_LINE = 1000


class SourceError(Exception):
    """The job's source could not be fetched or unpacked. The message is for the user; it never
    contains a secret."""


@dataclass(frozen=True)
class GitCredentials:
    username: str
    password: str = field(repr=False)  # the token; never printed, not even in a repr


@dataclass(frozen=True)
class FetchedSource:
    root: Path  # the job's root: the checkout (or context) joined with git.directory
    commit: str | None  # the commit that was fetched; None for an uploaded build context


# =============================================================================================
# git
# =============================================================================================


@dataclass(frozen=True)
class _Remote:
    url: str  # what git gets (a local path is turned into a file:// URL)
    scheme: str  # https, http or file
    shown: str  # for messages and logs (no query string)
    origin: str  # scheme://host[:port] as git names it in credential prompts ("" for file)


_SSH_SCHEMES = {"ssh", "git+ssh", "ssh+git"}
_SCP_LIKE = re.compile(r"^[^/]*:")  # git reads "host:path" (a colon before any slash) as ssh
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _parse_remote(remote: str, allow_file_remotes: bool) -> _Remote:
    remote = remote.strip()
    if not remote:
        raise SourceError("git.remote is empty")
    if _CONTROL.search(remote):
        raise SourceError("git.remote contains control characters")
    local_refused = SourceError(
        "git remotes on the lifecycle's own filesystem (file:// URLs and paths) are disabled on "
        "this lifecycle; use an https:// URL, or deploy from your working directory"
    )
    if "://" not in remote:
        if _SCP_LIKE.match(remote):
            raise SourceError(
                "git.remote looks like an SSH address (host:path); SSH remotes are not supported yet: "
                "use the https:// URL of the repository, with a token as git credentials if it is private"
            )
        if not allow_file_remotes:
            raise local_refused
        path = Path(remote).expanduser().absolute()
        return _Remote(path.as_uri(), "file", str(path), "")

    parts = urlsplit(remote)
    scheme = parts.scheme.lower()
    if scheme in _SSH_SCHEMES or scheme == "git":
        raise SourceError(
            f"{scheme}:// git remotes are not supported yet: use the https:// URL of the repository, "
            "with a token as git credentials if it is private"
        )
    if "@" in parts.netloc:
        raise SourceError(
            "git.remote contains credentials (user@ or user:password@ before the host); remove them "
            "from the URL and pass them separately as git credentials (username and token)"
        )
    if scheme == "file":
        if not allow_file_remotes:
            raise local_refused
        if parts.netloc not in ("", "localhost"):
            raise SourceError(f"file:// URLs must name a local path, not a host ({parts.netloc!r})")
        return _Remote(remote, "file", remote, "")
    if scheme not in ("https", "http"):
        raise SourceError(f"git.remote scheme {scheme!r} is not supported: use an https:// URL")
    try:
        parts.port  # noqa: B018 - validates the port
    except ValueError:
        raise SourceError(f"git.remote has an invalid port: {parts.netloc!r}") from None
    if not parts.hostname:
        raise SourceError("git.remote has no host name")
    shown = f"{scheme}://{parts.netloc}{parts.path}" + ("?…" if parts.query else "")
    return _Remote(remote, scheme, shown, f"{scheme}://{parts.netloc}")


def _check_branch(branch: str | None) -> None:
    if branch is None:
        return
    if not branch or branch.startswith("-") or _CONTROL.search(branch) or " " in branch or ".." in branch:
        raise SourceError(f"git.branch {branch!r} is not a valid branch name")


def _job_subpath(directory: str | None) -> PurePosixPath:
    """git.directory as a relative path inside the repository ("" and "." mean the root)."""
    if directory is None or directory.strip() in ("", ".", "./"):
        return PurePosixPath(".")
    path = PurePosixPath(directory.strip())
    if path.is_absolute() or ".." in path.parts or _CONTROL.search(directory):
        raise SourceError(f"git.directory {directory!r} must be a relative path inside the repository")
    return path


# The askpass helper holds no secret itself: git runs it with the prompt as $1 and it prints the
# value of an environment variable of the git process, only for the remote's scheme://host.
_ASKPASS_SCRIPT = """#!/bin/sh
case "$1" in
  "Username for '$TRACKSIDE_GIT_ORIGIN'"*)
    printf '%s\\n' "$TRACKSIDE_GIT_USERNAME" ;;
  "Password for '$TRACKSIDE_GIT_ORIGIN'"* | "Password for '$TRACKSIDE_GIT_SCHEME://"*"@$TRACKSIDE_GIT_HOST'"*)
    printf '%s\\n' "$TRACKSIDE_GIT_PASSWORD" ;;
  *)
    exit 1 ;;
esac
"""

# Variables of the lifecycle's environment git may keep: trust settings and nothing that could
# redirect it (GIT_DIR, GIT_CONFIG_*, GIT_ASKPASS, GIT_TRACE* ...).
_INHERITED_GIT_VARIABLES = {"GIT_SSL_CAINFO", "GIT_SSL_CAPATH"}


def _git_env(
    remote: _Remote,
    credentials: GitCredentials | None,
    askpass: Path | None,
    extra_env: dict[str, str] | None,
) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if (not k.startswith("GIT_") or k in _INHERITED_GIT_VARIABLES)
        and k not in ("SSH_ASKPASS", "LANGUAGE")
        and not k.startswith("TRACKSIDE_GIT_")
    }
    env.update(extra_env or {})
    config = {
        "credential.helper": "",  # no helper: credentials are neither looked up nor stored
        "core.askPass": "",
        "core.hooksPath": os.devnull,
        "advice.detachedHead": "false",
        "protocol.allow": "never",
        f"protocol.{remote.scheme}.allow": "always",
    }
    env.update(
        {
            "GIT_TERMINAL_PROMPT": "0",
            "GCM_INTERACTIVE": "never",
            "LC_ALL": "C",
            "GIT_ASKPASS": str(askpass) if askpass is not None else "",  # "" = never ask anyone
            "GIT_CONFIG_COUNT": str(len(config)),
        }
    )
    for i, (key, value) in enumerate(config.items()):
        env[f"GIT_CONFIG_KEY_{i}"] = key
        env[f"GIT_CONFIG_VALUE_{i}"] = value
    if credentials is not None and askpass is not None:
        scheme, _, host = remote.origin.partition("://")
        env.update(
            {
                "TRACKSIDE_GIT_ORIGIN": remote.origin,
                "TRACKSIDE_GIT_SCHEME": scheme,
                "TRACKSIDE_GIT_HOST": host,
                "TRACKSIDE_GIT_USERNAME": credentials.username,
                "TRACKSIDE_GIT_PASSWORD": credentials.password,
            }
        )
    return env


class _Sanitiser:
    """Makes a line of git output safe to log: no secret, no URL credentials, no terminal codes."""

    _URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s]+@")
    _ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")

    def __init__(self, credentials: GitCredentials | None) -> None:
        self._secrets = [credentials.password] if credentials and credentials.password else []

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        text = self._URL_USERINFO.sub(r"\1***@", text)
        text = _CONTROL.sub("", self._ANSI.sub("", text))
        return text if len(text) <= _MAX_LINE else text[:_MAX_LINE] + "…"


@dataclass
class _GitRun:
    returncode: int
    lines: list[str]  # sanitised output (the last few hundred lines)


def _run_git(args: list[str], env: dict[str, str], log: Log, clean: _Sanitiser, deadline: float) -> _GitRun:
    """Run git in its own process group; pass its output to `log` line by line (sanitised) from
    this thread; kill the whole group when `deadline` (time.monotonic) passes."""
    try:
        proc = subprocess.Popen(
            ["git", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    except FileNotFoundError:
        raise SourceError("git is not installed on the lifecycle's machine") from None
    assert proc.stdout is not None
    lines: queue.Queue[bytes | None] = queue.Queue()
    reader = threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True)
    reader.start()
    kept: deque[str] = deque(maxlen=_MAX_LOGGED_GIT_LINES)
    logged = 0
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise subprocess.TimeoutExpired(proc.args, 0)
            try:
                raw = lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if raw is None:
                break
            for piece in raw.decode("utf-8", "replace").replace("\r", "\n").split("\n"):
                line = clean(piece).rstrip()
                if not line:
                    continue
                kept.append(line)
                logged += 1
                if logged <= _MAX_LOGGED_GIT_LINES:
                    log(f"git: {line}")
                elif logged == _MAX_LOGGED_GIT_LINES + 1:
                    log("git: … (further output not logged)")
        returncode = proc.wait(timeout=max(1.0, deadline - time.monotonic()))  # output done: exiting
    finally:
        if proc.poll() is None:
            _kill_group(proc)
        reader.join(5)
        proc.stdout.close()
    return _GitRun(returncode, list(kept))


def _pump(stream: IO[bytes], lines: queue.Queue[bytes | None]) -> None:
    try:
        for raw in iter(lambda: stream.readline(65536), b""):
            lines.put(raw)
    except (OSError, ValueError):
        pass
    finally:
        lines.put(None)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()
    proc.wait()


def _failure_message(
    run: _GitRun, remote: _Remote, branch: str | None, credentials: GitCredentials | None
) -> str:
    out = "\n".join(run.lines)
    where = remote.shown
    if "not found in upstream" in out or "Could not find remote branch" in out:
        return f"branch {branch!r} does not exist in {where}"
    if "could not read Username" in out or "could not read Password" in out:
        if credentials is None:
            return (
                f"{where} requires authentication: deploy with git credentials "
                "(a username and a token as password)"
            )
        return (
            f"authentication to {where} failed: the server asked for credentials for a different "
            "address (a redirect?) and the git credentials are only given to the remote's own host"
        )
    if "Authentication failed" in out:
        return f"authentication to {where} failed: check the git username and token (password)"
    if "returned error: 403" in out:
        return f"access to {where} was denied (HTTP 403): the git credentials may lack read access"
    if (
        re.search(r"repository '.*' (not found|does not exist)", out)
        or "does not appear to be a git repository" in out
        or "returned error: 404" in out
    ):
        return f"git repository {where} not found (check git.remote, and the credentials for a private repository)"
    if "Could not resolve host" in out:
        return f"cannot resolve the host of git.remote {where}: check the URL"
    if any(
        s in out
        for s in (
            "Failed to connect",
            "Couldn't connect",
            "Connection refused",
            "No route to host",
            "timed out",
        )
    ):
        return f"cannot connect to {where}: the git server is unreachable"
    if any(s in out for s in ("SSL", "certificate", "TLS")):
        tail = run.lines[-1] if run.lines else ""
        return f"TLS connection to {where} failed ({tail.removeprefix('fatal: ')})"
    if re.search(r"returned error: 5\d\d", out):
        return f"the git server of {where} failed (HTTP 5xx); try again later"
    tail = next((line for line in reversed(run.lines) if line.startswith(("fatal:", "error:"))), "")
    tail = tail or (run.lines[-1] if run.lines else f"exit status {run.returncode}")
    return f"git clone of {where} failed: {tail}"


def _prepare_empty_dir(dest: Path, what: str) -> bool:
    """Make sure `dest` can be filled: absent (its parent is created) or an empty directory.
    Returns True when it existed before."""
    if dest.is_symlink() or (dest.exists() and not dest.is_dir()):
        raise SourceError(f"cannot {what}: {dest} exists and is not a directory")
    if dest.exists():
        if any(dest.iterdir()):
            raise SourceError(f"cannot {what}: {dest} is not empty")
        return True
    dest.parent.mkdir(parents=True, exist_ok=True)
    return False


def _empty(dest: Path, existed: bool) -> None:
    """Undo a partial fill: leave `dest` as it was (empty, or absent)."""
    if dest.is_dir() and not dest.is_symlink():
        shutil.rmtree(dest, ignore_errors=True)
    if existed:
        dest.mkdir(parents=True, exist_ok=True)


def fetch_git(
    remote: str,
    branch: str | None,
    directory: str | None,
    dest: Path,
    credentials: GitCredentials | None,
    log: Log,
    *,
    allow_file_remotes: bool,
    extra_env: dict[str, str] | None = None,
    timeout: float = GIT_TIMEOUT,
) -> FetchedSource:
    """Shallow-clone `branch` (None: the remote's default branch; a tag works too) of `remote`
    into `dest` (absent or empty); return the job's root (`dest/directory`) and the commit.

    `extra_env` is added to git's environment (e.g. GIT_SSL_CAINFO for a private CA); it cannot
    switch off the prompt, askpass and config settings above. On failure `dest` is left as it
    was and SourceError says what went wrong.
    """
    target = _parse_remote(remote, allow_file_remotes)
    _check_branch(branch)
    subpath = _job_subpath(directory)
    if credentials is not None and not credentials.password:
        raise SourceError("git credentials need a password (a token)")
    existed = _prepare_empty_dir(dest, "clone the job's repository")
    clean = _Sanitiser(credentials)

    if target.scheme == "http":
        log(
            f"warning: {target.shown} uses plain http: the code"
            + (" and the git credentials travel" if credentials else " travels")
            + " unencrypted; prefer https"
        )
    log(f"cloning {target.shown} (branch: {branch or 'the default branch'}, depth 1)")
    askpass_dir = Path(tempfile.mkdtemp(prefix="trackside-askpass-")) if credentials else None
    try:
        askpass = None
        if askpass_dir is not None:
            askpass = askpass_dir / "askpass.sh"
            fd = os.open(askpass, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o700)
            with os.fdopen(fd, "w") as script:
                script.write(_ASKPASS_SCRIPT)
        env = _git_env(target, credentials, askpass, extra_env)
        args = ["clone", "--depth", "1", "--single-branch", "--no-tags"]
        if branch is not None:
            args.append(f"--branch={branch}")
        args += ["--", target.url, str(dest)]
        deadline = time.monotonic() + timeout
        try:
            run = _run_git(args, env, log, clean, deadline)
            if run.returncode != 0:
                raise SourceError(_failure_message(run, target, branch, credentials))
            head = _run_git(
                ["-C", str(dest), "rev-parse", "--verify", "HEAD"], env, _discard, clean, deadline
            )
        except subprocess.TimeoutExpired:
            raise SourceError(f"fetching {target.shown} timed out after {timeout:g} s") from None
        commit = head.lines[-1] if head.returncode == 0 and head.lines else None
        if commit is None or not re.fullmatch(r"[0-9a-f]{40}([0-9a-f]{24})?", commit):
            raise SourceError(f"{target.shown} has no commits" + (f" on branch {branch!r}" if branch else ""))
        log(f"fetched commit {commit}")
        root = _job_root(dest, subpath, directory, target, commit)
    except BaseException:
        _empty(dest, existed)
        raise
    finally:
        if askpass_dir is not None:
            shutil.rmtree(askpass_dir, ignore_errors=True)
    return FetchedSource(root, commit)


def _discard(_line: str) -> None:
    pass


def _job_root(
    dest: Path, subpath: PurePosixPath, directory: str | None, remote: _Remote, commit: str
) -> Path:
    if subpath == PurePosixPath("."):
        return dest
    root = dest.joinpath(*subpath.parts)
    at = f"{remote.shown} at commit {commit[:12]}"
    if not root.resolve().is_relative_to(dest.resolve()):
        raise SourceError(
            f"git.directory {directory!r} leads outside the repository (a symbolic link) in {at}"
        )
    if not root.is_dir():
        missing = "is not a directory" if root.exists() else "does not exist"
        raise SourceError(f"git.directory {directory!r} {missing} in {at}")
    return root


# =============================================================================================
# build context
# =============================================================================================


class _TooLarge(SourceError):
    pass


class _LimitedReader:
    """Reads a stream and refuses to hand out more than `limit` bytes in total (what tarfile's
    stream mode needs of a file: `read`)."""

    def __init__(self, stream: gzip.GzipFile, limit: int) -> None:
        self._stream = stream
        self._limit = limit
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        chunk = self._stream.read(size if size is not None and size >= 0 else self._limit + 1)
        self.count += len(chunk)
        if self.count > self._limit:
            raise _TooLarge(f"the build context unpacks to more than {_size(self._limit)}")
        return chunk


def _size(n: int) -> str:
    return f"{n / MiB:g} MiB" if n >= MiB else f"{n} bytes"


def _decode(archive_b64: str, limit: int) -> bytes:
    text = "".join(archive_b64.split())
    if len(text) > 4 * (limit // 3 + 1) + 4:
        raise SourceError(f"the build context is larger than {_size(limit)} (packed)")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise SourceError("the build context is not valid base64") from None
    if len(raw) > limit:
        raise SourceError(f"the build context is larger than {_size(limit)} (packed)")
    if not raw:
        raise SourceError("the build context is empty")
    return raw


def unpack_build_context(
    archive_b64: str,
    dest: Path,
    *,
    max_bytes: int = MAX_CONTEXT_BYTES,
    max_packed_bytes: int | None = None,
    max_entries: int = MAX_CONTEXT_ENTRIES,
) -> Path:
    """Unpack a base64 tar.gz of a job directory into `dest` (absent or empty); return `dest`.

    `max_bytes` bounds the unpacked tar stream, `max_packed_bytes` (default: `max_bytes`) the
    decoded archive. On any refusal `dest` is left as it was and nothing else is written.
    """
    raw = _decode(archive_b64, max_bytes if max_packed_bytes is None else max_packed_bytes)
    _prepare_empty_dir(dest, "unpack the build context")
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.unpacking-", dir=dest.parent))
    try:
        _extract(raw, staging, max_bytes, max_entries)
        _check_links_stay_inside(staging)
        staging.chmod(0o755)
        os.replace(staging, dest)  # an empty directory at dest is replaced atomically
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return dest


def _extract(raw: bytes, staging: Path, max_bytes: int, max_entries: int) -> None:
    limited = _LimitedReader(gzip.GzipFile(fileobj=io.BytesIO(raw), mode="rb"), max_bytes)
    seen: dict[str, str] = {}  # normalised name -> "dir" | "implied" (a parent) | "file" | "link"
    total = 0
    try:
        with tarfile.open(fileobj=cast("IO[bytes]", limited), mode="r|", errorlevel=2) as tar:
            for count, member in enumerate(tar, start=1):
                if count > max_entries:
                    raise SourceError(f"the build context has more than {max_entries} entries")
                total += max(member.size, 0)
                if total > max_bytes:
                    raise _TooLarge(f"the build context unpacks to more than {_size(max_bytes)}")
                checked = _checked_member(member, seen)
                if checked is not None:
                    tar.extract(checked, staging, set_attrs=True, filter="data")
    except SourceError:
        raise
    except tarfile.FilterError as e:
        raise SourceError(f"the build context has an unsafe entry: {e}") from None
    except (gzip.BadGzipFile, EOFError, zlib.error):
        raise SourceError("the build context is not a valid gzip stream") from None
    except tarfile.TarError as e:
        raise SourceError(f"the build context is not a valid tar archive ({e})") from None
    except OSError as e:
        raise SourceError(f"could not unpack the build context: {e.strerror or e}") from None


def _checked_member(member: tarfile.TarInfo, seen: dict[str, str]) -> tarfile.TarInfo | None:
    """Our own checks of one entry (before tarfile's data filter); returns the entry to extract
    with a normalised name and plain permissions, or None for the archive's root directory."""
    name = member.name
    shown = repr(name[:200])
    if name.startswith("/") or PurePosixPath(name).is_absolute():
        raise SourceError(f"the build context has an entry with an absolute path: {shown}")
    if ".." in name.split("/"):
        raise SourceError(f"the build context has an entry with '..' in its path: {shown}")
    norm = posixpath.normpath(name)
    if norm == ".":
        if member.isdir():
            return None
        raise SourceError(f"the build context has an entry without a name: {shown}")
    if norm in seen and not (seen[norm] == "implied" and member.isdir()):
        raise SourceError(f"the build context has the entry {shown} twice")
    parts = norm.split("/")
    for i in range(1, len(parts)):
        parent = "/".join(parts[:i])
        if seen.setdefault(parent, "implied") not in ("dir", "implied"):
            raise SourceError(f"the build context writes {shown} through a file or link")

    if member.issparse():
        raise SourceError(f"the build context has a sparse file: {shown}")
    if member.isreg():
        kind, mode = "file", 0o755 if member.mode & 0o100 else 0o644
    elif member.isdir():
        kind, mode = "dir", 0o755
    elif member.issym():
        target = member.linkname
        inside = posixpath.normpath(posixpath.join(posixpath.dirname(norm), target))
        if not target or target.startswith("/") or inside == ".." or inside.startswith("../"):
            raise SourceError(f"the build context has a symbolic link pointing outside it: {shown}")
        kind, mode = "link", 0o777
    elif member.islnk():
        target = posixpath.normpath(member.linkname) if member.linkname else ""
        if seen.get(target) != "file":
            raise SourceError(
                f"the build context has a hard link {shown} that does not point to a file earlier in it"
            )
        kind, mode = "file", 0o644
        return _remember(member.replace(name=norm, linkname=target, deep=False), norm, kind, seen)
    else:
        raise SourceError(f"the build context has a device file or fifo: {shown}")
    return _remember(member.replace(name=norm, mode=mode, deep=False), norm, kind, seen)


def _remember(member: tarfile.TarInfo, norm: str, kind: str, seen: dict[str, str]) -> tarfile.TarInfo:
    seen[norm] = kind
    return member


def _check_links_stay_inside(root: Path) -> None:
    """The final tree: every symbolic link resolves (following chains) to a place inside."""
    real_root = os.path.realpath(root)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            path = os.path.join(dirpath, name)
            if os.path.islink(path):
                resolved = os.path.realpath(path)
                if os.path.commonpath([real_root, resolved]) != real_root:
                    rel = os.path.relpath(path, root)
                    raise SourceError(f"the build context has a symbolic link pointing outside it: {rel!r}")
