"""Jobs as containers (infrastructure_target docker, real podman): sample jobs deployed through a real
`trackside up`, called through its gateway, redeployed code-only, killed, deleted, and taken over
by a lifecycle that starts after the previous one died."""

from __future__ import annotations

import json
import os
import secrets
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.containers.conftest import ContainerPlatform, manifest
from tests.containers.podman import BASE_IMAGE, image_exists, podman, podman_json
from tests.gitservers import commit_files, head_commit, make_repo

pytestmark = pytest.mark.slow

API_KEY = "container-api-key-7d1f0c"
DATABASE_PASSWORD = "container-db-password-93b2e1"


@pytest.fixture(scope="module")
def deployed(container_platform: ContainerPlatform, sample_repos: dict[str, Path]) -> ContainerPlatform:
    """adder, model and env-secret deployed as containers (the first deploys pay for the image layers)."""
    p = container_platform
    started = time.monotonic()
    ids = {
        "adder": p.deploy({"manifest": manifest("adder", sample_repos["adder"])}),
        "env-secret": p.deploy(
            {
                "manifest": manifest(
                    "env-secret",
                    sample_repos["env-secret"],
                    runtime_env={"GREETING": "hello", "FEATURE_FLAGS": "fast,verbose"},
                    resources={"memory_max": "256Mi", "cpu_max": "500m"},
                ),
                "secret_vars": {"runtime_env": {"API_KEY": API_KEY, "DATABASE_PASSWORD": DATABASE_PASSWORD}},
            }
        ),
    }
    for name, deployment_id in ids.items():
        done = p.wait(deployment_id)
        assert done["status"] == "done", (name, done, p.build_log(name)[-3000:])
    first = time.monotonic() - started
    started = time.monotonic()
    extra = {"jobtype_extra": {"entrypoint_path": "entrypoint.py", "requirements_path": "requirements.txt"}}
    done = p.wait(p.deploy({"manifest": manifest("model", sample_repos["model"], **extra)}))
    assert done["status"] == "done", (done, p.build_log("model")[-3000:])
    print(
        f"\nfirst deploys (adder + env-secret): {first:.1f} s; model (numpy): {time.monotonic() - started:.1f} s"
    )
    return p


def test_jobs_in_containers_answer_through_the_gateway(deployed: ContainerPlatform) -> None:
    r = deployed.call("adder", {"numbers": [40, 2]})
    assert r.status_code == 200 and r.json() == 42, r.text

    r = deployed.call("model", {"houses": [[100, 3], [55.5, 2]]})
    assert r.status_code == 200, r.text
    assert len(r.json()) == 2 and all(isinstance(v, float) for v in r.json())

    r = deployed.call("env-secret", {})
    assert r.status_code == 200, r.text
    assert r.json() == {
        "runtime_env": {"GREETING": "hello", "FEATURE_FLAGS": "fast,verbose"},
        "secrets": {
            "API_KEY": {"set": True, "length": len(API_KEY)},
            "DATABASE_PASSWORD": {"set": True, "length": len(DATABASE_PASSWORD)},
        },
    }
    for name in ("adder", "model", "env-secret"):
        job = deployed.job(name)
        assert job["status"] == "running" and job["infrastructure_target"] == "docker", job


def test_containers_are_named_labelled_confined_and_keep_secrets_out_of_inspect(
    deployed: ContainerPlatform, sample_repos: dict[str, Path]
) -> None:
    [container] = deployed.containers("env-secret")
    assert "env-secret-0.0.1" in container["Name"]
    labels = container["Config"]["Labels"]
    assert labels["trackside.job.name"] == "env-secret" and labels["trackside.job.version"] == "0.0.1"
    assert container["Config"]["User"] == "10001:10001"  # not root
    assert container["HostConfig"]["RestartPolicy"]["Name"] == "on-failure"
    assert container["HostConfig"]["Memory"] == 256 * 1024 * 1024
    assert container["HostConfig"]["NanoCpus"] == 500_000_000 or container["HostConfig"]["CpuQuota"] == 50_000
    bindings = container["HostConfig"]["PortBindings"]["7000/tcp"]
    assert [b["HostIp"] for b in bindings] == ["127.0.0.1"]

    inspected = podman("container", "inspect", container["Id"])
    image = podman("image", "inspect", container["Image"])
    for secret in (API_KEY, DATABASE_PASSWORD):
        assert secret not in inspected and secret not in image
    assert "JOB_NAME=env-secret" in json.dumps(container["Config"]["Env"])  # plain settings are visible

    image_labels = podman_json("image", "inspect", container["Image"])[0]["Labels"]
    assert image_labels["trackside.job.name"] == "env-secret"
    assert image_labels["trackside.job.version"] == "0.0.1"
    assert image_labels["trackside.git.commit"] == head_commit(sample_repos["env-secret"])
    assert len(image_labels["trackside.dependency.fingerprint"]) == 64
    config = podman_json("image", "inspect", container["Image"])[0]["Config"]
    assert config["StopSignal"] == "SIGTERM"


def test_the_build_log_is_the_engines_output_and_the_job_log_comes_from_the_engine(
    deployed: ContainerPlatform,
) -> None:
    build_log = deployed.build_log("model")
    assert "STEP 1/" in build_log and f"FROM {BASE_IMAGE}" in build_log
    assert "pip-install.sh -r requirements.txt" in build_log and "COMMIT " in build_log

    logs = deployed.api.get("/api/v1/job/adder/0.0.1/logs", params={"tail": 200}).json()["logs"]
    assert "[replica 0]" in logs and "job adder 0.0.1 ready" in logs, logs
    assert "[runner]" in logs


def _layers(image: str) -> list[str]:
    return list(podman_json("image", "inspect", image)[0]["RootFS"]["Layers"])


def _steps(build_log: str) -> list[tuple[str, bool]]:
    """(instruction, came from the cache) of each step of a podman build log."""
    steps: list[tuple[str, bool]] = []
    for line in build_log.splitlines():
        if line.startswith("STEP "):
            steps.append((line.partition(": ")[2], False))
        elif line.startswith("--> Using cache") and steps:
            steps[-1] = (steps[-1][0], True)
    return steps


def test_a_code_only_redeploy_rebuilds_only_the_code_layer(
    deployed: ContainerPlatform, sample_repos: dict[str, Path]
) -> None:
    [before] = deployed.containers("adder")
    old_image = before["Image"]
    old_layers = _layers(old_image)
    source = (sample_repos["adder"] / "entrypoint.py").read_text()
    changed = source.replace("return sum(numbers) + offset", "return sum(numbers) + offset + 1000")
    assert changed != source
    # new to the engine's layer cache too, which outlives the test run
    changed += f"\n# {secrets.token_hex(8)}\n"
    commit_files(sample_repos["adder"], {"entrypoint.py": changed}, "code only")

    started = time.monotonic()
    done = deployed.wait(
        deployed.deploy({"manifest": manifest("adder", sample_repos["adder"]), "force": True})
    )
    elapsed = time.monotonic() - started
    assert done["status"] == "done", done
    print(f"\ncode-only redeploy of adder as a container: {elapsed:.1f} s")

    r = deployed.call("adder", {"numbers": [40, 2]})
    assert r.status_code == 200 and r.json() == 1042, r.text
    [after] = deployed.wait_until(
        "the old container retired",
        lambda: len(deployed.containers("adder")) == 1 and deployed.containers("adder"),
    )
    new_image = after["Image"]
    assert new_image != old_image
    new_layers = _layers(new_image)
    assert len(new_layers) == len(old_layers)
    assert (
        new_layers[:-1] == old_layers[:-1] and new_layers[-1] != old_layers[-1]
    )  # only the code layer is new

    steps = _steps(deployed.build_log("adder"))
    code = next(i for i, (step, _) in enumerate(steps) if step.startswith("COPY --chown=10001:10001 code/"))
    assert all(cached for _, cached in steps[1:code]), steps  # steps[0] is FROM
    assert not steps[code][1], steps
    # the old image goes once its container has: nothing uses it any more
    deployed.wait_until("the old image removed", lambda: not image_exists(old_image))


def test_a_killed_container_comes_back(deployed: ContainerPlatform) -> None:
    [container] = deployed.containers("model")
    pid = container["State"]["Pid"]
    assert pid > 0
    os.kill(pid, signal.SIGKILL)  # the job's process dies as in a crash (not a `podman stop`)

    def back() -> dict[str, Any] | None:
        [now] = deployed.containers("model")
        restarted = now["State"]["Running"] and now["State"]["Pid"] not in (0, pid)
        return (
            now if restarted and deployed.call("model", {"houses": [[100, 3]]}).status_code == 200 else None
        )

    now = deployed.wait_until("the killed container back and answering", back, timeout=90)
    assert now["Id"] == container["Id"]  # restarted, not replaced
    assert now["RestartCount"] >= 1
    deployed.wait_until("the job reported running", lambda: deployed.job("model")["status"] == "running")


def test_delete_removes_the_container_its_secret_and_its_image(deployed: ContainerPlatform) -> None:
    [container] = deployed.containers("env-secret")
    image = container["Image"]
    r = deployed.api.delete("/api/v1/job/env-secret/0.0.1")
    assert r.status_code == 200, r.text
    assert deployed.containers("env-secret") == []
    assert not image_exists(image)
    secrets = podman("secret", "ls", "--format", "{{.Name}}").split()
    assert not [s for s in secrets if "env-secret" in s and deployed.lifecycle_id in s]
    assert deployed.call("env-secret", {}).status_code == 404


def test_a_job_that_fails_to_load_fails_its_deploy_saying_why_and_leaves_nothing(
    deployed: ContainerPlatform,
) -> None:
    repo = make_repo(
        deployed.root / "repos" / "broken",
        {
            "entrypoint.py": (
                "class Broken:\n    def __init__(self) -> None:\n"
                "        raise RuntimeError('the model file is missing')\n\n"
                "    def perform(self) -> int:\n        return 1\n"
            )
        },
    )
    done = deployed.wait(deployed.deploy({"manifest": manifest("broken", repo)}))
    assert done["status"] == "failed", done
    assert "the model file is missing" in done["error"] and "entrypoint.py" in done["error"], done
    assert deployed.containers("broken") == []
    assert podman("images", "--quiet", f"--filter=reference={deployed.repository}/broken") == ""
    assert deployed.api.get("/api/v1/job/broken/0.0.1").status_code == 404


def test_a_new_lifecycle_adopts_running_containers_and_removes_strays(deployed: ContainerPlatform) -> None:
    [adder] = deployed.containers("adder")
    lifecycle_id = deployed.lifecycle_id
    assert deployed.up.stop(signal.SIGKILL) == -signal.SIGKILL  # the lifecycle dies, its containers run on
    stray = podman(
        "run",
        "--detach",
        "--label",
        f"trackside.lifecycle={lifecycle_id}",
        "--label",
        "trackside.job.name=ghost",
        BASE_IMAGE,
        *("sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.1; done"),  # stops at once when asked
    ).strip()

    deployed.start()
    deployed.wait_until(
        "adder serving again", lambda: deployed.call("adder", {"numbers": [1]}).status_code == 200
    )
    [still] = deployed.containers("adder")
    assert (
        still["Id"] == adder["Id"] and still["State"]["Pid"] == adder["State"]["Pid"]
    )  # adopted, not restarted
    assert deployed.call("model", {"houses": [[100, 3]]}).status_code == 200
    assert stray not in podman("ps", "--all", "--quiet", "--no-trunc").split()
    assert image_exists(BASE_IMAGE)  # the stray's image is no job image: it stays
    assert deployed.job("adder")["status"] == "running"

    # a lifecycle that stops takes its containers with it; the next one starts them from their images
    deployed.up.stop()
    assert deployed.containers() == []
    deployed.start()
    deployed.wait_until("adder back", lambda: deployed.call("adder", {"numbers": [1]}).status_code == 200)
    [again] = deployed.containers("adder")
    assert again["Id"] != adder["Id"] and again["Image"] == adder["Image"]  # no rebuild
