"""LifecycleConfig.from_env: defaults, the data dir (700) and the generated key file (600)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from lifecycle.config import ConfigError, LifecycleConfig
from lifecycle.secrets import SecretBox


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_defaults_in_a_new_data_dir(tmp_path: Path) -> None:
    data_dir = tmp_path / "new" / "data"
    config = LifecycleConfig.from_env(embedded=True, environ={"TRACKSIDE_DATA_DIR": str(data_dir)})
    assert config.data_dir == data_dir
    assert _mode(data_dir) == 0o700
    assert config.database_url == f"sqlite:///{data_dir}/trackside.db"
    assert config.allow_file_remotes is True
    assert config.auth_cache_ttl == 5
    key_file = data_dir / "secret.key"
    assert _mode(key_file) == 0o600
    assert key_file.read_text().strip() == config.secret_key
    SecretBox.from_config(config)  # a usable Fernet key
    assert config.secret_key not in repr(config)


def test_the_key_is_generated_once(tmp_path: Path) -> None:
    env = {"TRACKSIDE_DATA_DIR": str(tmp_path)}
    assert (
        LifecycleConfig.from_env(environ=env).secret_key == LifecycleConfig.from_env(environ=env).secret_key
    )


def test_settings_from_the_environment(tmp_path: Path) -> None:
    config = LifecycleConfig.from_env(
        embedded=True,
        environ={
            "TRACKSIDE_DATA_DIR": str(tmp_path),
            "TRACKSIDE_DATABASE_URL": "postgresql+psycopg://u@db/trackside",
            "TRACKSIDE_SECRET_KEY": "a passphrase that is long enough",
            "TRACKSIDE_ALLOW_FILE_REMOTES": "false",
            "TRACKSIDE_AUTH_CACHE_TTL": "0.5",
        },
    )
    assert config.database_url == "postgresql+psycopg://u@db/trackside"
    assert config.secret_key == "a passphrase that is long enough"
    assert not (tmp_path / "secret.key").exists()
    assert (config.allow_file_remotes, config.auth_cache_ttl) == (False, 0.5)


def test_file_remotes_are_off_by_default_outside_embedded_mode(tmp_path: Path) -> None:
    assert not LifecycleConfig.from_env(
        embedded=False, environ={"TRACKSIDE_DATA_DIR": str(tmp_path)}
    ).allow_file_remotes


def test_the_default_data_dir_follows_xdg(tmp_path: Path) -> None:
    config = LifecycleConfig.from_env(environ={"XDG_DATA_HOME": str(tmp_path)})
    assert config.data_dir == tmp_path / "trackside"


@pytest.mark.parametrize(
    ("name", "value"), [("TRACKSIDE_ALLOW_FILE_REMOTES", "maybe"), ("TRACKSIDE_AUTH_CACHE_TTL", "soon")]
)
def test_bad_values_name_the_variable(tmp_path: Path, name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        LifecycleConfig.from_env(environ={"TRACKSIDE_DATA_DIR": str(tmp_path), name: value})
