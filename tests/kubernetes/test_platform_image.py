"""The platform image: the Dockerfile read instruction by instruction (no registry is reachable here
to build it in the suite), checked against the lock, the manifests that run it and .dockerignore;
and `make image` choosing an engine and failing with a clear message when there is none."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import stat
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO

from .manifests import KustomizeTree, pod_spec

DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
COMPONENTS = ("lifecycle", "pub", "dashboard")


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str
    stage: int  # index of the FROM it belongs to; -1 before the first FROM

    def words(self) -> list[str]:
        if self.arguments.startswith("["):
            return list(json.loads(self.arguments))
        return shlex.split(self.arguments)


def parse(text: str) -> list[Instruction]:
    """Dockerfile instructions: comments dropped, continuation lines joined."""
    instructions: list[Instruction] = []
    stage = -1
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        whole = (pending + line).strip()
        pending = ""
        keyword, _, arguments = whole.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        instructions.append(Instruction(keyword, re.sub(r"\s+", " ", arguments.strip()), stage))
    assert not pending, "the Dockerfile ends inside a continued line"
    return instructions


@pytest.fixture(scope="module")
def dockerfile() -> list[Instruction]:
    return parse(DOCKERFILE.read_text())


def args_before_from(instructions: list[Instruction]) -> dict[str, str]:
    found = {}
    for i in instructions:
        if i.keyword == "ARG" and i.stage == -1:
            name, _, default = i.arguments.partition("=")
            found[name] = default
    return found


def final_stage(instructions: list[Instruction]) -> list[Instruction]:
    last = max(i.stage for i in instructions)
    return [i for i in instructions if i.stage == last]


def env_of(stage: list[Instruction]) -> dict[str, str]:
    env: dict[str, str] = {}
    for i in stage:
        if i.keyword == "ENV":
            for word in i.words():
                name, _, value = word.partition("=")
                env[name] = value
    return env


def test_the_base_image_is_pinned_by_an_argument(dockerfile: list[Instruction]) -> None:
    defaults = args_before_from(dockerfile)
    base = defaults["PYTHON_IMAGE"]
    match = re.fullmatch(
        r"[\w.-]+(?:/[\w.-]+)+:(\d+)\.(\d+)\.(\d+)-slim-bookworm(@sha256:[0-9a-f]{64})?", base
    )
    assert match, f"PYTHON_IMAGE={base}: a full version (or a digest), never a moving tag"
    # the image's Python satisfies the project's minimum (3.11.4: tarfile's extraction filters)
    minimum = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    floor = re.fullmatch(r">=(\d+)\.(\d+)(?:\.(\d+))?", minimum.strip())
    assert floor, minimum
    wanted = (int(floor[1]), int(floor[2]), int(floor[3] or 0))
    assert wanted >= (3, 11, 4), minimum
    assert (int(match[1]), int(match[2]), int(match[3])) >= wanted
    for stage in {i.stage for i in dockerfile if i.stage >= 0}:
        (start,) = [i for i in dockerfile if i.stage == stage and i.keyword == "FROM"]
        assert start.words()[0] == "${PYTHON_IMAGE}", start


def test_uv_is_the_version_that_wrote_the_lock(dockerfile: list[Instruction]) -> None:
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    (uv,) = [p for p in lock["package"] if p["name"] == "uv"]
    assert args_before_from(dockerfile)["UV_VERSION"] == uv["version"]
    syncs = [i.arguments for i in dockerfile if i.keyword == "RUN" and "uv sync" in i.arguments]
    assert syncs and all("--frozen" in s and "--no-dev" in s for s in syncs), "exactly the lock, no dev tools"


def test_it_runs_as_the_user_the_pods_expect(dockerfile: list[Instruction], tree: KustomizeTree) -> None:
    stage = final_stage(dockerfile)
    users = [i for i in stage if i.keyword == "USER"]
    assert users, "the runtime stage must not run as root"
    uid, _, gid = users[-1].arguments.partition(":")
    assert uid.isdigit() and int(uid) != 0, "numeric, so Kubernetes can check runAsNonRoot"
    assert gid.isdigit() and int(gid) != 0
    assert all(i.keyword != "RUN" for i in stage[stage.index(users[-1]) :]), "nothing runs as root after USER"
    for name in ("base", "local", "production"):
        rendered = tree.rendered[name]
        for component in COMPONENTS:
            security = pod_spec(rendered.find("Deployment", component))["securityContext"]
            assert (security["runAsUser"], security["runAsGroup"]) == (int(uid), int(gid)), (name, component)


def test_the_image_serves_what_the_deployments_run(
    dockerfile: list[Instruction], tree: KustomizeTree
) -> None:
    stage = final_stage(dockerfile)
    env = env_of(stage)
    assert env["PATH"].startswith("/app/.venv/bin:"), "`trackside` on the PATH"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1", "read-only root filesystem"
    (cmd,) = [i for i in stage if i.keyword == "CMD"]
    assert cmd.words()[:2] == ["trackside", "serve"]
    assert not [i for i in stage if i.keyword == "ENTRYPOINT"], (
        "a Deployment's command is the whole command line"
    )
    exposed = {int(p) for i in stage if i.keyword == "EXPOSE" for p in i.words()}
    rendered = tree.rendered["local"]
    for component in COMPONENTS:
        (container,) = pod_spec(rendered.find("Deployment", component))["containers"]
        assert {p["containerPort"] for p in container["ports"]} <= exposed
    lifecycle = rendered.find("Deployment", "lifecycle")
    config = rendered.container_env(lifecycle, pod_spec(lifecycle)["containers"][0])
    assert env["TRACKSIDE_DATA_DIR"] == config["TRACKSIDE_DATA_DIR"]


def test_health_is_left_to_the_deployments_probes(dockerfile: list[Instruction]) -> None:
    # one image, three components on three ports: no single HEALTHCHECK fits (Kubernetes ignores it)
    assert [i for i in dockerfile if i.keyword == "HEALTHCHECK"] == []


def test_no_secret_is_built_into_the_image(dockerfile: list[Instruction]) -> None:
    for i in dockerfile:
        if i.keyword in ("ARG", "ENV", "LABEL"):
            names = (
                [w.partition("=")[0] for w in i.words()]
                if i.keyword != "ARG"
                else [i.arguments.partition("=")[0]]
            )
            for name in names:
                assert not re.search(r"SECRET|TOKEN|PASSWORD|CREDENTIAL|_KEY$", name, re.I), i
        assert "tst_" not in i.arguments, i
        if i.keyword in ("COPY", "ADD"):
            assert not re.search(r"kustomize|\.env\b|secret", i.arguments, re.I), i


def ignored(path: str, patterns: list[str]) -> bool:
    """.dockerignore's rule: the last pattern that matches decides (`!` re-includes)."""
    result = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        body = pattern.lstrip("!").rstrip("/")
        candidates = [path, *("/".join(path.split("/")[:n]) for n in range(1, path.count("/") + 1))]
        if any(fnmatch.fnmatch(c, body) or fnmatch.fnmatch(c, body.replace("**/", "")) for c in candidates):
            result = not negated
    return result


def dockerignore() -> list[str]:
    return [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]


def test_the_build_context_holds_what_the_dockerfile_copies_and_no_more(
    dockerfile: list[Instruction],
) -> None:
    patterns = dockerignore()
    assert patterns[0] == "*", "an allow-list: a new file at the root stays out unless named"
    for i in dockerfile:
        if i.keyword == "COPY" and not i.arguments.startswith("--from"):
            *sources, _ = i.words()
            for source in sources:
                assert (REPO / source).exists(), f"{source} (copied by the Dockerfile) does not exist"
                assert not ignored(source, patterns), f"{source} is copied but .dockerignore leaves it out"
    for private in (
        "kustomize/overlays/local/secrets/trackside.env",
        ".venv/bin/python",
        ".git/config",
        "tests/conftest.py",
        ".tools/bin/uv",
        "lifecycle/__pycache__/config.cpython-311.pyc",
    ):
        assert ignored(private, patterns), private
    for needed in ("uv.lock", "lifecycle/config.py", "wrappers/python3/trackside_wrapper/__init__.py"):
        assert not ignored(needed, patterns), needed


# ---- make image -----------------------------------------------------------------------------------


def make_image(*variables: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", "-C", str(REPO), "image", *variables],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "MAKEFLAGS": ""},
    )


def fake_engine(tmp_path: Path, info_status: int, build_status: int) -> tuple[Path, Path]:
    """A stand-in for podman/docker that records its arguments (a real build needs a registry)."""
    calls = tmp_path / "calls"
    engine = tmp_path / "engine"
    engine.write_text(
        "#!/bin/sh\n"
        f'printf "%s\\n" "$*" >> "{calls}"\n'
        f'[ "$1" = info ] && exit {info_status}\n'
        f'[ "$1" = build ] && exit {build_status}\n'
        "exit 3\n"
    )
    engine.chmod(engine.stat().st_mode | stat.S_IXUSR)
    return engine, calls


def test_make_image_without_an_engine_says_so() -> None:
    done = make_image("CONTAINER_ENGINE=")
    assert done.returncode != 0
    assert "neither podman nor docker is installed" in done.stderr


def test_make_image_with_an_engine_that_cannot_run_says_so(tmp_path: Path) -> None:
    engine, calls = fake_engine(tmp_path, info_status=1, build_status=0)
    done = make_image(f"CONTAINER_ENGINE={engine}")
    assert done.returncode != 0
    assert f"{engine} cannot reach a container engine" in done.stderr
    assert calls.read_text().splitlines() == ["info"], "no build attempted"


def test_make_image_builds_the_dockerfile_with_the_given_base(tmp_path: Path) -> None:
    engine, calls = fake_engine(tmp_path, info_status=0, build_status=0)
    done = make_image(
        f"CONTAINER_ENGINE={engine}",
        "IMAGE=registry.example.com/trackside",
        "IMAGE_TAG=0.1.0",
        "PYTHON_IMAGE=localhost/python-base:bookworm",
    )
    assert done.returncode == 0, done.stderr
    info, build = calls.read_text().splitlines()
    assert info == "info"
    assert build == (
        "build --file Dockerfile --tag registry.example.com/trackside:0.1.0 "
        "--build-arg PYTHON_IMAGE=localhost/python-base:bookworm ."
    )
    assert "built registry.example.com/trackside:0.1.0" in done.stdout


def test_make_image_explains_a_failed_build(tmp_path: Path) -> None:
    engine, calls = fake_engine(tmp_path, info_status=0, build_status=125)
    done = make_image(f"CONTAINER_ENGINE={engine}")
    assert done.returncode != 0
    assert "the build failed" in done.stderr and "PYTHON_IMAGE=" in done.stderr
    assert calls.read_text().splitlines()[1] == "build --file Dockerfile --tag trackside:dev ."


@pytest.fixture(scope="module")
def tree(module_tmp: Path) -> KustomizeTree:
    return KustomizeTree(module_tmp)
