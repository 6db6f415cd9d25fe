"""The python3 job image recipe (trackside_wrapper.job_image), without an engine: the rendered
Dockerfile, the staged build context and its dependency fingerprint, the env files and the wheel."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
from trackside_wrapper.job_image import (
    ImageRecipe,
    RecipeError,
    base_image_for,
    env_file,
    image_tag,
    stage_context,
    write_wrapper_wheel,
)


def _job(tmp_path: Path, requirements: str = "numpy>=1.26\n") -> Path:
    job = tmp_path / "job"
    job.mkdir()
    (job / "entrypoint.py").write_text("class Job:\n    def perform(self) -> int:\n        return 1\n")
    (job / "requirements.txt").write_text(requirements)
    return job


def _recipe(**changes: Any) -> ImageRecipe:
    base = ImageRecipe(
        job_name="adder",
        job_version="1.2.3",
        base_image="python:3.11-slim",
        requirements_path="requirements.txt",
        git_commit="0123abcd" * 5,
    )
    return dataclasses.replace(base, **changes)


def _instructions(dockerfile: str) -> list[str]:
    joined = re.sub(r"\\\n", " ", dockerfile)
    return [line for line in joined.splitlines() if line and not line.startswith("#")]


def test_the_dockerfile_puts_dependencies_first_the_code_last_and_runs_as_a_user(tmp_path: Path) -> None:
    staged = stage_context(_recipe(system_dependencies=("libgomp1",)), _job(tmp_path), tmp_path / "ctx")
    steps = _instructions(staged.dockerfile)
    keywords = [step.split()[0] for step in steps]
    assert steps[0] == "FROM python:3.11-slim"
    apt = next(i for i, s in enumerate(steps) if "apt-get install" in s)
    requirements = next(i for i, s in enumerate(steps) if s.startswith("COPY requirements/"))
    code = next(i for i, s in enumerate(steps) if s.startswith("COPY --chown=10001:10001 code/"))
    assert "libgomp1" in steps[apt] and apt < requirements < code
    # nothing that changes the file system comes after the code
    assert all(k not in ("RUN", "COPY", "ADD") for k in keywords[code + 1 :])
    assert "ARG" not in keywords
    assert "USER 10001:10001" in steps and "STOPSIGNAL SIGTERM" in steps
    assert steps[-1].startswith("LABEL ")
    for label in (
        'trackside.job.name="adder"',
        'trackside.job.version="1.2.3"',
        f'trackside.git.commit="{"0123abcd" * 5}"',
        f'trackside.dependency.fingerprint="{staged.fingerprint}"',
    ):
        assert label in steps[-1]
    # build variables reach pip steps through the secret mount only
    assert all("--mount=type=secret,id=build_env" in s for s in steps if "pip-install.sh" in s)


def test_the_context_holds_only_what_the_layers_need(tmp_path: Path) -> None:
    job = _job(tmp_path)
    (job / ".env").write_text("API_KEY=secret\n")
    (job / "notes.tmp").write_text("scratch\n")
    (job / "__pycache__").mkdir()
    (job / "__pycache__" / "entrypoint.cpython-311.pyc").write_bytes(b"\0")
    staged = stage_context(
        _recipe(),
        job,
        tmp_path / "ctx",
        left_out=[".env"],
        only=[PurePosixPath("entrypoint.py"), PurePosixPath("requirements.txt"), PurePosixPath(".env")],
    )
    context = staged.directory
    assert sorted(p.name for p in (context / "code").iterdir()) == ["entrypoint.py", "requirements.txt"]
    assert (context / "requirements" / "requirements.txt").read_text() == "numpy>=1.26\n"
    assert sorted(p.name for p in (context / "support").iterdir()) == ["pip-install.sh", "start.sh"]
    assert [p.name for p in (context / "wheels").iterdir()] == ["trackside_wrapper-0.1.0-py3-none-any.whl"]
    assert "uvicorn" in (context / "wrapper-requirements.txt").read_text()


def test_the_fingerprint_ignores_the_code_and_follows_the_dependencies(tmp_path: Path) -> None:
    job = _job(tmp_path)

    def fingerprint(name: str, recipe: ImageRecipe | None = None) -> str:
        return stage_context(recipe or _recipe(), job, tmp_path / name).fingerprint

    first = fingerprint("a")
    (job / "entrypoint.py").write_text("class Job:\n    def perform(self) -> int:\n        return 2\n")
    assert fingerprint("b") == first
    assert fingerprint("c", _recipe(git_commit="fedcba98" * 5, job_version="9.9.9")) == first
    assert fingerprint("d", _recipe(system_dependencies=("curl",))) != first
    assert fingerprint("e", _recipe(build_env_digest="abc123")) != first
    assert fingerprint("f", _recipe(base_image="python:3.12-slim")) != first
    (job / "requirements.txt").write_text("numpy>=2\n")
    assert fingerprint("g") != first


def test_requirements_includes_are_staged_and_escapes_refused(tmp_path: Path) -> None:
    job = _job(tmp_path, "-r base.txt\n-c constraints/pins.txt\n")
    (job / "base.txt").write_text("numpy\n")
    (job / "constraints").mkdir()
    (job / "constraints" / "pins.txt").write_text("numpy<3\n")
    staged = stage_context(_recipe(), job, tmp_path / "ctx")
    staged_files = sorted(
        p.relative_to(staged.directory / "requirements").as_posix()
        for p in (staged.directory / "requirements").rglob("*")
        if p.is_file()
    )
    assert staged_files == ["base.txt", "constraints/pins.txt", "requirements.txt"]

    with pytest.raises(RecipeError, match="outside the job's directory"):
        stage_context(_recipe(requirements_path="../requirements.txt"), job, tmp_path / "ctx2")
    with pytest.raises(RecipeError, match=re.escape("'missing.txt' not found")):
        stage_context(_recipe(requirements_path="missing.txt"), job, tmp_path / "ctx3")
    with pytest.raises(RecipeError, match=re.escape("system_dependencies: 'curl; rm -rf /'")):
        stage_context(_recipe(system_dependencies=("curl; rm -rf /",)), job, tmp_path / "ctx4")
    (job / "escape").symlink_to("/etc")
    with pytest.raises(RecipeError, match="escape links outside"):
        stage_context(_recipe(), job, tmp_path / "ctx5")


def test_env_files_survive_a_posix_shell(tmp_path: Path) -> None:
    values = {"PLAIN": "abc", "QUOTES": 'it\'s "quoted" $HOME `x`', "LINES": "one\ntwo", "EMPTY": ""}
    path = tmp_path / "env"
    path.write_text(env_file(values))
    script = 'set -a; . "$1"; set +a; for n in PLAIN QUOTES LINES EMPTY; do printf "%s=%s\\0" "$n" "$(printenv $n)"; done'
    out = subprocess.run(
        ["/bin/sh", "-c", script, "sh", str(path)], capture_output=True, check=True, env={"PATH": os.defpath}
    ).stdout.decode()
    assert dict(item.split("=", 1) for item in out.split("\0") if item) == values
    with pytest.raises(RecipeError, match="runtime_env: '1BAD'"):
        env_file({"1BAD": "x"}, "runtime_env")


def test_tags_and_base_images(tmp_path: Path) -> None:
    fingerprint = "ab" * 32
    assert image_tag("localhost/trackside/", "adder", "1.0.0+build.5", fingerprint) == (
        "localhost/trackside/adder:1.0.0_build.5-abababababab"
    )
    assert base_image_for("python:{python_version}-slim", "3.12") == "python:3.12-slim"
    with pytest.raises(RecipeError, match="only the placeholder"):
        base_image_for("python:{version}", "3.12")


def test_the_wrapper_wheel_is_reproducible_and_complete(tmp_path: Path) -> None:
    first = write_wrapper_wheel(tmp_path / "a")
    second = write_wrapper_wheel(tmp_path / "b")
    assert first.read_bytes() == second.read_bytes()
    with zipfile.ZipFile(first) as wheel:
        names = wheel.namelist()
        metadata = wheel.read("trackside_wrapper-0.1.0.dist-info/METADATA").decode()
    assert "trackside_wrapper/cli.py" in names and "trackside_wrapper/job_image/Dockerfile.template" in names
    assert "trackside_wrapper-0.1.0.dist-info/RECORD" in names
    assert "Requires-Dist: uvicorn" in metadata and "watchfiles" not in metadata  # extras stay out
    assert not [n for n in names if n.endswith(".pyc")]
