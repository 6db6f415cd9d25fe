"""The overlays' Secret: `kustomize/new-secrets.sh` makes it from the template, git never sees it,
an overlay without it does not render, and the template's placeholders stop the platform at start
with a message naming what is wrong."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from dashboard.config import MIN_SECRET_LENGTH as DASHBOARD_SECRET_LENGTH
from lifecycle.auth.gateway_credential import MIN_SECRET_LENGTH as GATEWAY_SECRET_LENGTH
from lifecycle.auth.tokens import TOKEN_PREFIX
from tests.conftest import REPO, free_port

from .manifests import (
    KUSTOMIZE,
    OVERLAYS,
    PRODUCTION_DATABASE_URL,
    Rendered,
    copy_tree,
    kustomize,
    new_secrets,
    pod_spec,
    read_env_file,
    render,
    tree_dir,
)

TRACKSIDE = Path(sys.executable).parent / "trackside"


def example_keys(overlay: str) -> list[str]:
    return list(read_env_file(tree_dir(KUSTOMIZE, overlay) / "secrets" / "trackside.env.example"))


def made(
    tmp_path: Path, overlay: str, env: dict[str, str] | None = None
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    root = copy_tree(tmp_path / "kustomize")
    if env is None and overlay == "production":
        env = {"TRACKSIDE_DATABASE_URL": PRODUCTION_DATABASE_URL}
    done = new_secrets(tree_dir(root, overlay), env)
    return tree_dir(root, overlay) / "secrets" / "trackside.env", done


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_it_writes_every_key_of_the_template_privately(tmp_path: Path, overlay: str) -> None:
    path, done = made(tmp_path, overlay)
    assert done.returncode == 0, done.stderr
    values = read_env_file(path)
    assert list(values) == example_keys(overlay)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    Fernet(values["secret-key"].encode())  # raises unless a valid key
    token = values["gateway-token"]
    assert token.startswith(TOKEN_PREFIX) and len(token) - len(TOKEN_PREFIX) >= GATEWAY_SECRET_LENGTH
    assert len(values["dashboard-secret"]) >= DASHBOARD_SECRET_LENGTH
    if overlay == "local":
        password = values["postgres-password"]
        assert len(password) >= 32
        assert values["database-url"] == (
            f"postgresql://trackside:{password}@postgres.trackside.svc.cluster.local:5432/trackside"
        )
    else:
        assert values["database-url"] == PRODUCTION_DATABASE_URL
    assert "trackside.env" in done.stdout
    for value in values.values():
        assert value not in done.stdout + done.stderr, "a secret value was printed"


def test_every_run_makes_new_values(tmp_path: Path) -> None:
    first, _ = made(tmp_path / "a", "local")
    second, _ = made(tmp_path / "b", "local")
    a, b = read_env_file(first), read_env_file(second)
    assert all(a[key] != b[key] for key in a)


def test_it_never_overwrites_existing_secrets(tmp_path: Path) -> None:
    path, _ = made(tmp_path, "local")
    before = path.read_text()
    again = new_secrets(path.parent.parent)
    assert again.returncode == 2
    assert "already exists" in again.stderr and "never overwritten" in again.stderr
    assert path.read_text() == before


def test_production_needs_the_operators_database(tmp_path: Path) -> None:
    path, done = made(tmp_path / "none", "production", env={})
    assert done.returncode == 2
    assert "TRACKSIDE_DATABASE_URL=postgresql://" in done.stderr
    assert not path.exists()
    path, done = made(tmp_path / "mysql", "production", env={"TRACKSIDE_DATABASE_URL": "mysql://u:p@h/db"})
    assert done.returncode == 2
    assert "must start with postgresql://" in done.stderr
    assert "u:p@h" not in done.stderr, "the URL holds a password: never echoed"
    assert not path.exists() and not list(path.parent.glob("*.tmp.*"))


def test_it_refuses_a_directory_that_is_no_overlay(tmp_path: Path) -> None:
    root = copy_tree(tmp_path / "kustomize")
    done = new_secrets(tmp_path, script=root / "new-secrets.sh")
    assert done.returncode == 2
    assert "trackside.env.example not found" in done.stderr


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_git_never_sees_the_secrets(overlay: str) -> None:
    secrets = tree_dir(KUSTOMIZE, overlay) / "secrets"

    def ignored(path: Path) -> bool:
        done = subprocess.run(
            ["git", "check-ignore", "--quiet", "--no-index", str(path.relative_to(REPO))], cwd=REPO
        )
        assert done.returncode in (0, 1)
        return done.returncode == 0

    assert ignored(secrets / "trackside.env")
    assert not ignored(secrets / "trackside.env.example")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_an_overlay_without_its_secrets_does_not_render(tmp_path: Path, overlay: str) -> None:
    root = copy_tree(tmp_path / "kustomize")
    done = kustomize(tree_dir(root, overlay))
    assert done.returncode != 0
    assert "secrets/trackside.env" in done.stderr
    assert done.stdout == ""


# ---- the placeholders, if someone copies the template as it is --------------------------------


@pytest.fixture(scope="module")
def with_placeholders(module_tmp: Path) -> Rendered:
    root = copy_tree(module_tmp / "placeholders")
    overlay = tree_dir(root, "local")
    (overlay / "secrets" / "trackside.env").write_text(
        (overlay / "secrets" / "trackside.env.example").read_text()
    )
    return Rendered("local", render(overlay))


@pytest.fixture(scope="module")
def good_values(module_tmp: Path) -> dict[str, str]:
    path, done = made(module_tmp / "good", "local")
    assert done.returncode == 0, done.stderr
    return read_env_file(path)


ENV_OF_KEY = {
    "secret-key": "TRACKSIDE_SECRET_KEY",
    "gateway-token": "TRACKSIDE_GATEWAY_TOKEN",
    "dashboard-secret": "TRACKSIDE_DASHBOARD_SECRET",
    "database-url": "TRACKSIDE_DATABASE_URL",
}


@pytest.mark.parametrize(
    ("component", "placeholder", "message"),
    [
        ("lifecycle", "secret-key", "TRACKSIDE_SECRET_KEY"),
        ("lifecycle", "gateway-token", "TRACKSIDE_GATEWAY_TOKEN"),
        ("lifecycle", "database-url", "database-url.change-me.invalid"),
        ("dashboard", "dashboard-secret", "TRACKSIDE_DASHBOARD_SECRET"),
    ],
)
def test_a_placeholder_stops_the_component_naming_it(
    with_placeholders: Rendered,
    good_values: dict[str, str],
    tmp_path: Path,
    component: str,
    placeholder: str,
    message: str,
) -> None:
    deployment = with_placeholders.find("Deployment", component)
    (container,) = pod_spec(deployment)["containers"]
    env = with_placeholders.container_env(deployment, container)
    for key, variable in ENV_OF_KEY.items():  # every other secret valid: only this one is wrong
        if key != placeholder and variable in env:
            env[variable] = good_values[key]
    if placeholder != "database-url" and "TRACKSIDE_DATABASE_URL" in env:
        del env["TRACKSIDE_DATABASE_URL"]  # the default SQLite file in the data dir
    env.update(
        {
            "TRACKSIDE_DATA_DIR": str(tmp_path / "data"),
            "TRACKSIDE_INFRASTRUCTURE_TARGET": "",
            "TRACKSIDE_LIFECYCLE_URL": f"http://127.0.0.1:{free_port()}",
        }
    )
    command = [str(TRACKSIDE), *container["command"][1:]]
    command[command.index("--host") + 1] = "127.0.0.1"
    command[command.index("--port") + 1] = str(free_port())
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=90,
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path), **env},
    )
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert message in output
