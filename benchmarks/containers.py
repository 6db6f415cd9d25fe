"""The container benchmark (`--only containers`): deploy to running when jobs run as containers
(`TRACKSIDE_INFRASTRUCTURE_TARGET=docker`), built and run by podman (or docker).

One `python -m trackside up` with the docker target deploys the adder (with `six` as its one
requirement, from a local git repository):
  * cold base: the first deploy with `--no-cache`: every layer above the base image is built
    (the wrapper's dependencies and the job's requirements installed with pip; pip's download
    cache, a build cache mount, may be warm from earlier runs);
  * warm deps: a new version with a one-line code change: the dependency layers come from the
    engine's cache, the code layer is new, and a new container starts;
  * code-only: a one-line change redeployed over a running version (force): the code layer is
    rebuilt, the new container starts next to the old one and takes over.

The base image is TRACKSIDE_IMAGE_BASE (default python:{python_version}-slim, which needs a
registry); on a machine without one, point it at a local image (the container tests make
`localhost/trackside-test/python-base:bookworm-python3-v1`). CONTAINERS_CONF is passed through;
when unset, a containers.conf with runc and lowered ulimits is written to the work dir (what
podman needs on machines whose cgroup layout crun rejects). The builds' pip steps use
TRACKSIDE_BUILD_NETWORK (default host).
"""

from __future__ import annotations

import os
import secrets
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .deploy_timing import DeployFailed, DeployTiming, JobRepo, phase_times, timed_deploy, wait_deployed
from .lifecycle import REQUIREMENT, LifecycleFailed, LifecycleProcess, LifecycleUnavailable
from .processes import child_environment

Log = Callable[[str], None]

CONTAINERS_KEY = "containers"
DEFAULT_BASE = "python:{python_version}-slim"
CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]
[engine]
runtime = "runc"
"""


@dataclass(frozen=True)
class ContainerSettings:
    repeats: int = 3  # warm-deps deploys and code-only redeploys; medians are reported


@dataclass
class ContainerResults:
    engine: str
    base_image: str
    cold: DeployTiming
    warm_deps: list[DeployTiming]
    code_only: list[DeployTiming]

    @staticmethod
    def median(timings: list[DeployTiming]) -> float | None:
        return statistics.median(t.total_s for t in timings) if timings else None

    @staticmethod
    def build_median(timings: list[DeployTiming]) -> float | None:
        samples = [s for t in timings if (s := t.phase("building the environment")) is not None]
        return statistics.median(samples) if samples else None


def check_prerequisites(work_dir: Path) -> dict[str, str]:
    """The environment of the lifecycle; LifecycleUnavailable when no engine or base image is there."""
    engine = os.environ.get("TRACKSIDE_CONTAINER_ENGINE") or shutil.which("podman") or shutil.which("docker")
    if not engine:
        raise LifecycleUnavailable("no container engine: apt-get install -y podman buildah runc")
    env = child_environment({"TRACKSIDE_CONTAINER_ENGINE": engine})
    if not env.get("CONTAINERS_CONF"):
        work_dir.mkdir(parents=True, exist_ok=True)
        conf = work_dir / "containers.conf"
        conf.write_text(CONTAINERS_CONF)
        env["CONTAINERS_CONF"] = str(conf)
    base = (env.get("TRACKSIDE_IMAGE_BASE") or DEFAULT_BASE).format(
        python_version=f"{sys.version_info[0]}.{sys.version_info[1]}"
    )
    found = subprocess.run([engine, "image", "exists", base], env=env, capture_output=True, check=False)
    if found.returncode != 0:
        raise LifecycleUnavailable(
            f"the base image {base} is not on this machine: pull it, or set TRACKSIDE_IMAGE_BASE to a "
            "local image (the container tests make localhost/trackside-test/python-base:bookworm-python3-v1)"
        )
    env.update(
        TRACKSIDE_INFRASTRUCTURE_TARGET="docker",
        TRACKSIDE_IMAGE_BASE=base,
        TRACKSIDE_BUILD_NETWORK=env.get("TRACKSIDE_BUILD_NETWORK") or "host",
    )
    return env


def _no_cache_deploy(lifecycle: LifecycleProcess, manifest: dict[str, Any]) -> DeployTiming:
    started = time.perf_counter()
    r = lifecycle.client.post("/deploy", json={"manifest": manifest, "build_flags": ["--no-cache"]})
    if r.status_code != 202:
        raise lifecycle.fail(f"POST /deploy answered {r.status_code}: {r.text}")
    deployment_id = str(r.json()["id"])
    deployment = wait_deployed(lifecycle, deployment_id, started, timeout_s=900)
    total = time.perf_counter() - started
    return DeployTiming(deployment_id, total, phase_times(deployment), False)


def run(settings: ContainerSettings, work_dir: Path, log_dir: Path, log: Log) -> ContainerResults:
    root = work_dir / "containers" / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    env = check_prerequisites(work_dir)
    repository = f"localhost/trackside-bench-{secrets.token_hex(4)}"
    env["TRACKSIDE_IMAGE_REPOSITORY"] = repository
    engine = env["TRACKSIDE_CONTAINER_ENGINE"]
    lifecycle = LifecycleProcess("containers", root / "data", log_dir / "containers-lifecycle.log", env)
    try:
        repo = JobRepo.create(root / "adder-repo", REQUIREMENT)
        log(f"containers: cold deploy (--no-cache, base {env['TRACKSIDE_IMAGE_BASE']}) ...")
        cold = _no_cache_deploy(lifecycle, repo.manifest("adder", "1.0.0"))
        log(f"  cold base: {cold.total_s:.1f} s")
        warm: list[DeployTiming] = []
        for i in range(settings.repeats):
            repo.change_one_line()
            warm.append(timed_deploy(lifecycle, repo.manifest("adder", f"1.1.{i}"), force=False))
            log(f"  warm deps (new version 1.1.{i}): {warm[-1].total_s:.1f} s")
        code_only: list[DeployTiming] = []
        for _ in range(settings.repeats):
            repo.change_one_line()
            code_only.append(timed_deploy(lifecycle, repo.manifest("adder", "1.0.0"), force=True))
            log(f"  code-only redeploy: {code_only[-1].total_s:.1f} s")
    except DeployFailed as e:
        raise LifecycleFailed(f"containers: {e}") from None
    finally:
        lifecycle.stop()
        images = subprocess.run(
            [engine, "images", "--quiet", f"--filter=reference={repository}/*"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.split()
        for image in dict.fromkeys(images):
            subprocess.run(
                [engine, "rmi", "--force", "--no-prune", image], env=env, capture_output=True, check=False
            )
        shutil.rmtree(root, ignore_errors=True)
    return ContainerResults(Path(engine).name, env["TRACKSIDE_IMAGE_BASE"], cold, warm, code_only)


def render(results: ContainerResults) -> str:
    def row(what: str, timings: list[DeployTiming]) -> str:
        total = ContainerResults.median(timings)
        build = ContainerResults.build_median(timings)
        return f"| {what} | {len(timings)} | {total or 0:.1f} | {build or 0:.1f} |"

    return "\n".join(
        [
            f"Containers ({results.engine}, base {results.base_image}): deploy to running, seconds (median)",
            "",
            "| deploy | runs | total s | building s |",
            "|---|---|---|---|",
            row("cold base (--no-cache)", [results.cold]),
            row("warm deps (new version)", results.warm_deps),
            row("code-only (force)", results.code_only),
        ]
    )


def to_json(results: ContainerResults) -> dict[str, Any]:
    def timings(items: list[DeployTiming]) -> list[dict[str, Any]]:
        return [{"total_s": t.total_s, "phases": {p.name: p.seconds for p in t.phases}} for t in items]

    return {
        "engine": results.engine,
        "base_image": results.base_image,
        "cold_s": results.cold.total_s,
        "warm_deps_median_s": ContainerResults.median(results.warm_deps),
        "code_only_median_s": ContainerResults.median(results.code_only),
        "cold": timings([results.cold]),
        "warm_deps": timings(results.warm_deps),
        "code_only": timings(results.code_only),
    }
