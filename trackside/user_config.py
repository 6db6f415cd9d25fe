"""The CLI user's configuration: `$XDG_CONFIG_HOME/trackside/config.yaml` (default ~/.config).

    remote: http://127.0.0.1:7200          # the current remote (`trackside remote set`)
    aliases:                                # `trackside remote alias NAME URL`
      prod: https://trackside.example.com/lifecycle
    tokens:                                 # `trackside login`, one per remote (its base URL)
      http://127.0.0.1:7200: ...
    git_credentials:                        # per repository URL (or a URL prefix such as an org)
      https://github.com/me/jobs:
        username: me
        password: ghp_...

The file holds secrets: it is written atomically (temp file + rename) with mode 600 in a
directory of mode 700, and a file that others may read is refused rather than used.

The remote in use is, first to last: `--remote` (a URL or an alias), `$TRACKSIDE_REMOTE`, the
config's `remote`, `http://127.0.0.1:7200`. Its token: `$TRACKSIDE_TOKEN`, else the config's.
"""

from __future__ import annotations

import ipaddress
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from trackside.cli.exit_codes import CommandFailed, ExitCode

DEFAULT_REMOTE = "http://127.0.0.1:7200"
REMOTE_ENV = "TRACKSIDE_REMOTE"
TOKEN_ENV = "TRACKSIDE_TOKEN"
CONFIG_DIR_ENV = "XDG_CONFIG_HOME"

_ALIAS = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,62}$")
# how the lifecycle API may be reached below a remote's base URL, longest first
_API_SUFFIXES = ("/lifecycle/api/v1", "/api/v1", "/lifecycle")


# ---- remotes ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Remote:
    """A lifecycle the CLI talks to.

    `base` is the platform's root (the gateway is `base/pub`), `api` the lifecycle API root.
    Given `http://h:7200`, `http://h:7200/lifecycle` or `http://h:7200/lifecycle/api/v1`, `base` is
    `http://h:7200`; tokens are kept per `base`.
    """

    url: str  # as the user gave it, without trailing slashes
    base: str
    api: str

    @classmethod
    def parse(cls, text: str) -> Remote:
        url = text.strip().rstrip("/")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise CommandFailed(
                f"not a remote URL: {text!r} (expected http(s)://HOST[:PORT][/lifecycle], or an alias)",
                ExitCode.USAGE,
            )
        if parts.query or parts.fragment:
            raise CommandFailed(f"a remote URL has no query or fragment: {text!r}", ExitCode.USAGE)
        for suffix in _API_SUFFIXES:
            if parts.path.endswith(suffix):
                base = url[: -len(suffix)]
                api = url if suffix != "/lifecycle" else url + "/api/v1"
                return cls(url, base, api)
        return cls(url, url, url + "/lifecycle/api/v1")

    @property
    def host(self) -> str:
        return urlsplit(self.base).hostname or ""

    @property
    def is_loopback(self) -> bool:
        """On this machine (`trackside up` on localhost): uploads are the default build context."""
        host = self.host
        if host == "localhost" or host.endswith(".localhost"):
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False


@dataclass(frozen=True)
class ResolvedRemote:
    remote: Remote
    source: str  # "option", "env", "config" or "default": where it came from
    alias: str | None = None


# ---- the file ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class GitCredentials:
    username: str
    password: str = field(repr=False)


@dataclass
class UserConfig:
    path: Path
    remote: str | None = None
    aliases: dict[str, str] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict, repr=False)
    git_credentials: dict[str, GitCredentials] = field(default_factory=dict, repr=False)

    # -- remotes and tokens

    def resolve_remote(
        self, option: str | None = None, environ: Mapping[str, str] | None = None
    ) -> ResolvedRemote:
        env = os.environ if environ is None else environ
        for given, source in ((option, "option"), (env.get(REMOTE_ENV), "env"), (self.remote, "config")):
            if given and given.strip():
                name = given.strip()
                if name in self.aliases:
                    return ResolvedRemote(Remote.parse(self.aliases[name]), source, name)
                if "://" not in name:
                    where = {"option": "--remote", "env": f"${REMOTE_ENV}", "config": str(self.path)}[source]
                    known = ", ".join(sorted(self.aliases)) or "none yet: `trackside remote alias NAME URL`"
                    raise CommandFailed(
                        f"{where}: {name!r} is neither a URL nor a known alias (aliases: {known})",
                        ExitCode.USAGE,
                    )
                return ResolvedRemote(Remote.parse(name), source)
        return ResolvedRemote(Remote.parse(DEFAULT_REMOTE), "default")

    def token_for(self, remote: Remote, environ: Mapping[str, str] | None = None) -> str | None:
        env = os.environ if environ is None else environ
        from_env = env.get(TOKEN_ENV, "").strip()
        return from_env or self.tokens.get(remote.base) or None

    def alias_of(self, remote: Remote) -> str | None:
        for name, url in self.aliases.items():
            if Remote.parse(url).base == remote.base:
                return name
        return None

    def set_alias(self, name: str, url: str) -> Remote:
        if not _ALIAS.match(name):
            raise CommandFailed(
                f"not an alias name: {name!r} (a letter, then letters, digits, '.', '_' or '-')",
                ExitCode.USAGE,
            )
        remote = Remote.parse(url)
        self.aliases[name] = remote.url
        return remote

    # -- git credentials

    def git_credentials_for(self, repo_url: str) -> GitCredentials | None:
        """The credentials for `repo_url`: an exact entry, else the longest entry that is a path
        prefix of it (`https://github.com/org` covers `https://github.com/org/repo`)."""
        wanted = _repo_key(repo_url)
        best: tuple[int, GitCredentials] | None = None
        for url, credentials in self.git_credentials.items():
            key = _repo_key(url)
            covers = wanted == key or wanted.startswith(key + "/")
            if covers and (best is None or len(key) > best[0]):
                best = (len(key), credentials)
        return best[1] if best else None

    # -- the file

    def to_document(self) -> dict[str, Any]:
        document: dict[str, Any] = {}
        if self.remote:
            document["remote"] = self.remote
        if self.aliases:
            document["aliases"] = dict(sorted(self.aliases.items()))
        if self.tokens:
            document["tokens"] = dict(sorted(self.tokens.items()))
        if self.git_credentials:
            document["git_credentials"] = {
                url: {"username": c.username, "password": c.password}
                for url, c in sorted(self.git_credentials.items())
            }
        return document

    def save(self) -> None:
        write_private_yaml(self.path, self.to_document())


def _repo_key(url: str) -> str:
    return url.strip().rstrip("/").removesuffix(".git").rstrip("/")


def config_path(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    base = env.get(CONFIG_DIR_ENV, "").strip()
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".config"
    return root / "trackside" / "config.yaml"


def load_config(path: Path | None = None) -> UserConfig:
    """The config at `path` (default: `config_path()`); an empty one when there is no file yet.

    Raises CommandFailed (exit 1) when the file is readable by others or is not a valid config."""
    file = config_path() if path is None else path
    try:
        fd = os.open(file, os.O_RDONLY)
    except FileNotFoundError:
        return UserConfig(file)
    except OSError as e:
        raise CommandFailed(f"cannot read the config file {file}: {e.strerror or e}") from None
    with os.fdopen(fd, "rb") as handle:
        mode = stat.S_IMODE(os.fstat(handle.fileno()).st_mode)
        if mode & 0o077:
            raise CommandFailed(
                f"the config file {file} holds tokens and is readable by others (mode {mode:03o}); "
                f"make it private with: chmod 600 {file}"
            )
        text = handle.read().decode("utf-8", "replace")
    return _parse(file, text)


def _parse(file: Path, text: str) -> UserConfig:
    import yaml

    def bad(what: str) -> CommandFailed:
        return CommandFailed(f"the config file {file} is not valid: {what}")

    try:
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        document = yaml.load(text, Loader=loader) or {}  # a safe loader (the C one when built)
    except yaml.YAMLError as e:
        raise bad(f"invalid YAML ({e})") from None
    if not isinstance(document, dict):
        raise bad("expected a mapping of settings (remote, aliases, tokens, git_credentials)")
    unknown = sorted(str(k) for k in document if k not in ("remote", "aliases", "tokens", "git_credentials"))
    if unknown:
        raise bad(
            f"unknown setting(s) {', '.join(unknown)} (known: remote, aliases, tokens, git_credentials)"
        )
    remote = document.get("remote")
    if remote is not None and not isinstance(remote, str):
        raise bad("remote: expected a URL or an alias")
    config = UserConfig(file, remote=remote)
    for key in ("aliases", "tokens"):
        values = document.get(key) or {}
        if not isinstance(values, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in values.items()
        ):
            raise bad(f"{key}: expected a mapping of text to text")
        setattr(config, key, dict(values))
    credentials = document.get("git_credentials") or {}
    if not isinstance(credentials, dict):
        raise bad("git_credentials: expected a mapping of repository URL to {username, password}")
    for url, entry in credentials.items():
        if (
            not isinstance(url, str)
            or not isinstance(entry, dict)
            or not isinstance(entry.get("username"), str)
            or not isinstance(entry.get("password"), str)
        ):
            raise bad(f"git_credentials: {url}: expected {{username: ..., password: ...}}")
        config.git_credentials[url] = GitCredentials(entry["username"], entry["password"])
    return config


def write_private_yaml(path: Path, document: Mapping[str, Any]) -> None:
    """Write `document` to `path` as YAML, mode 600, atomically; the directory is made mode 700."""
    import tempfile

    import yaml

    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    text = yaml.safe_dump(dict(document), sort_keys=False, default_flow_style=False, allow_unicode=True)
    fd, temporary = tempfile.mkstemp(prefix=".config-", suffix=".tmp", dir=path.parent)  # mode 600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
