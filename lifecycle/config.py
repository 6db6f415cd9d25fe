"""LifecycleConfig: where the lifecycle keeps its data, which database it uses and its secret key."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.fernet import Fernet

SECRET_KEY_FILE = "secret.key"
DATABASE_FILE = "trackside.db"
DEFAULT_AUTH_CACHE_TTL = 5.0

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class ConfigError(ValueError):
    """A setting from the environment has a value the lifecycle cannot use."""


@dataclass(frozen=True)
class LifecycleConfig:
    data_dir: Path
    database_url: str
    secret_key: str = field(repr=False)
    allow_file_remotes: bool = True
    auth_cache_ttl: float = DEFAULT_AUTH_CACHE_TTL

    @classmethod
    def from_env(cls, embedded: bool = True, environ: Mapping[str, str] | None = None) -> LifecycleConfig:
        """Read TRACKSIDE_* variables; create the data dir (mode 700) and the key file when needed.

        TRACKSIDE_DATA_DIR (default $XDG_DATA_HOME/trackside or ~/.local/share/trackside),
        TRACKSIDE_DATABASE_URL (default a SQLite file in the data dir), TRACKSIDE_SECRET_KEY
        (default a Fernet key generated once into DATA_DIR/secret.key, mode 600),
        TRACKSIDE_ALLOW_FILE_REMOTES (default: true when embedded), TRACKSIDE_AUTH_CACHE_TTL (seconds).
        """
        env = os.environ if environ is None else environ
        data_dir = Path(env.get("TRACKSIDE_DATA_DIR") or _default_data_dir(env)).expanduser().absolute()
        ensure_private_dir(data_dir)
        database_url = env.get("TRACKSIDE_DATABASE_URL") or f"sqlite:///{data_dir / DATABASE_FILE}"
        secret_key = env.get("TRACKSIDE_SECRET_KEY") or load_or_create_key_file(data_dir / SECRET_KEY_FILE)
        return cls(
            data_dir=data_dir,
            database_url=database_url,
            secret_key=secret_key,
            allow_file_remotes=_bool(env, "TRACKSIDE_ALLOW_FILE_REMOTES", default=embedded),
            auth_cache_ttl=_seconds(env, "TRACKSIDE_AUTH_CACHE_TTL", default=DEFAULT_AUTH_CACHE_TTL),
        )


def _default_data_dir(env: Mapping[str, str]) -> Path:
    xdg = env.get("XDG_DATA_HOME")
    return Path(xdg) / "trackside" if xdg else Path.home() / ".local" / "share" / "trackside"


def ensure_private_dir(path: Path) -> None:
    """Create `path` readable by its owner only; an existing directory keeps its mode."""
    if path.is_dir():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        return
    path.chmod(0o700)  # mkdir's mode is filtered by the umask


def write_private_file(path: Path, content: str) -> bool:
    """Write `content` to a new file of mode 600; False (and nothing written) when it exists.

    The content is written to a temporary file first and linked into place, so a concurrent reader
    never sees a half-written file.
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(content)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        return True
    finally:
        tmp.unlink()


def load_or_create_key_file(path: Path) -> str:
    """The Fernet key stored in `path`, generated on first use."""
    if not path.exists():
        write_private_file(path, Fernet.generate_key().decode() + "\n")
    key = path.read_text().strip()
    if not key:
        raise ConfigError(f"the secret key file {path} is empty; delete it to generate a new key")
    return key


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {raw!r}") from None
    if value < 0:
        raise ConfigError(f"{name} must not be negative, got {raw!r}")
    return value
