"""Kubernetes' controllers and kubelet, played on an `ApiServerStandIn` for tests.

`FakeCluster` makes pods for the Deployments the runner creates (Pending until a test moves them
on, or, with `run_jobs=True`, as real job processes: `python -m trackside_wrapper run` on a
loopback address of its own at the job port 7000, with the environment the pod spec names,
its output as the pod's log). With `kaniko=True` it also plays the Kaniko build Job: it fetches
the uploaded build context from the lifecycle over HTTP with the build token from the build's
Secret, exactly as the init container does, unpacks it as the image's contents, writes build
output to the pod's log and ends the Job (or fails it as `kaniko_failure` says).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.kubernetes.apiserver_standin import ApiServerStandIn

Json = dict[str, Any]
JOB_PORT = 7000
NAMESPACE = "trackside-jobs"


def now_text(seconds_ago: float = 0.0) -> str:
    return (datetime.now(UTC) - timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def free_loopback_address() -> str:
    """A 127.x.y.z address whose port 7000 is free (job pods all listen on 7000)."""
    for _ in range(200):
        address = f"127.{random.randint(1, 254)}.{random.randint(0, 255)}.{random.randint(1, 254)}"
        with socket.socket() as probe:
            try:
                probe.bind((address, JOB_PORT))
            except OSError:
                continue
            return address
    raise RuntimeError("no free loopback address for a job pod")


@dataclass
class KanikoFailure:
    container: str = "kaniko"  # or "context"
    reason: str = "Error"  # or OOMKilled
    exit_code: int = 1
    log: tuple[str, ...] = ("error building image: pip install failed",)
    job_reason: str = "BackoffLimitExceeded"  # or DeadlineExceeded
    waiting: str | None = None  # e.g. "ImagePullBackOff": the pod never starts


@dataclass
class FakeCluster:
    api: ApiServerStandIn
    work_dir: Path
    namespace: str = NAMESPACE
    run_jobs: bool = False
    kaniko: bool = False
    kaniko_failure: KanikoFailure | None = None
    pull_fails: bool = False  # job pods cannot pull their image
    kaniko_at_once: bool = False  # the build Job ends while it is being created
    kaniko_log: tuple[str, ...] = ("INFO Retrieving image manifest python:3.12-slim", "INFO Pushing image")
    images: dict[str, Path] = field(default_factory=dict)  # image reference -> its code directory
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)  # pod name -> job process
    fetched_contexts: list[str] = field(default_factory=list)  # URLs the build pods fetched
    on_pod: Callable[[Json], None] | None = None  # called for each new job pod (tests move it on)
    _threads: list[threading.Thread] = field(default_factory=list)
    _stopped: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.api.on_create("deployments", self._deployment_created)
        self.api.on_delete("pods", self._pod_deleted)
        if self.kaniko:
            self.api.on_create("jobs", self._job_created)

    def close(self) -> None:
        self._stopped.set()
        for process in list(self.processes.values()):
            _stop(process)
        self.processes.clear()

    # ---- Deployments -> pods -------------------------------------------------------------------

    def _deployment_created(self, api: ApiServerStandIn, deployment: Json) -> None:
        replicas = int(deployment["spec"].get("replicas") or 1)
        for _ in range(replicas):
            self.add_pod(deployment)

    def add_pod(self, deployment: Json) -> Json:
        template = deployment["spec"]["template"]
        name = f"{deployment['metadata']['name']}-{secrets.token_hex(3)}-{secrets.token_hex(2)}"[:63]
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": self.namespace,
                "labels": dict(template["metadata"]["labels"]),
                "annotations": dict(template["metadata"].get("annotations") or {}),
                "creationTimestamp": now_text(),
            },
            "spec": template["spec"],
            "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}]},
        }
        stored = self.api.put_object("pods", pod)
        if self.run_jobs:
            self._start_job_process(stored)
        elif self.on_pod is not None:
            self.on_pod(stored)
        return stored

    def pods(self, label_selector: str | None = None) -> list[Json]:
        return self.api.objects("pods", self.namespace, label_selector)

    def set_pod_status(self, pod: str, status: Json) -> None:
        self.api.update_status("pods", self.namespace, pod, status)

    def running(self, pod: str, ip: str, ready: bool = True, restarts: int = 0) -> None:
        self.set_pod_status(
            pod,
            {
                "phase": "Running",
                "podIP": ip,
                "conditions": [
                    {"type": "PodScheduled", "status": "True"},
                    {"type": "Ready", "status": "True" if ready else "False"},
                ],
                "containerStatuses": [
                    {
                        "name": "job",
                        "ready": ready,
                        "restartCount": restarts,
                        "state": {"running": {"startedAt": now_text()}},
                    }
                ],
            },
        )

    def crash_loop(
        self, pod: str, restarts: int, exit_code: int = 1, reason: str = "Error", log: tuple[str, ...] = ()
    ) -> None:
        if log:
            self.api.append_log(self.namespace, pod, "job", *log, previous=True)
        self.set_pod_status(
            pod,
            {
                "phase": "Running",
                "podIP": "10.0.0.9",
                "conditions": [
                    {"type": "PodScheduled", "status": "True"},
                    {"type": "Ready", "status": "False"},
                ],
                "containerStatuses": [
                    {
                        "name": "job",
                        "ready": False,
                        "restartCount": restarts,
                        "state": {
                            "waiting": {
                                "reason": "CrashLoopBackOff",
                                "message": "back-off 40s restarting failed container",
                            }
                        },
                        "lastState": {"terminated": {"reason": reason, "exitCode": exit_code}},
                    }
                ],
            },
        )

    def waiting(self, pod: str, reason: str, message: str) -> None:
        self.set_pod_status(
            pod,
            {
                "phase": "Pending",
                "conditions": [{"type": "PodScheduled", "status": "True"}],
                "containerStatuses": [
                    {
                        "name": "job",
                        "ready": False,
                        "restartCount": 0,
                        "state": {"waiting": {"reason": reason, "message": message}},
                    }
                ],
            },
        )

    def unschedulable(self, pod: str, message: str, seconds_ago: float = 0.0) -> None:
        self.set_pod_status(
            pod,
            {
                "phase": "Pending",
                "conditions": [
                    {
                        "type": "PodScheduled",
                        "status": "False",
                        "reason": "Unschedulable",
                        "message": message,
                        "lastTransitionTime": now_text(seconds_ago),
                    }
                ],
            },
        )

    # ---- job processes (the kubelet) -------------------------------------------------------------

    def _env_of(self, container: Json) -> dict[str, str]:
        env: dict[str, str] = {}
        for item in container.get("env") or []:
            if "value" in item:
                env[item["name"]] = item["value"]
                continue
            ref = item["valueFrom"]["secretKeyRef"]
            secret = self.api.get("secrets", self.namespace, ref["name"])
            if secret is None:
                raise RuntimeError(f"CreateContainerConfigError: secret {ref['name']!r} not found")
            env[item["name"]] = base64.b64decode(secret["data"][ref["key"]]).decode()
        return env

    def _start_job_process(self, pod: Json) -> None:
        name = pod["metadata"]["name"]
        container = pod["spec"]["containers"][0]
        code_dir = None if self.pull_fails else self.images.get(container["image"])
        if code_dir is None:  # what the kubelet says after the first failed pull
            self.waiting(name, "ImagePullBackOff", f'Back-off pulling image "{container["image"]}"')
            return
        address = free_loopback_address()
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(self.work_dir),
            **self._env_of(container),
        }
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "trackside_wrapper",
                "run",
                str(code_dir),
                "--host",
                address,
                "--port",
                str(JOB_PORT),
            ],
            cwd=code_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes[name] = process
        self.running(name, address, ready=False)
        self._spawn(self._pump_log, name, process)
        self._spawn(self._probe_ready, name, address, process)

    def _pump_log(self, pod: str, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            try:
                self.api.append_log(self.namespace, pod, "job", raw.decode(errors="replace").rstrip("\n"))
            except Exception:
                return  # the pod is gone

    def _probe_ready(self, pod: str, address: str, process: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + 60
        while not self._stopped.is_set() and process.poll() is None and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://{address}:{JOB_PORT}/ready", timeout=1) as answer:
                    if answer.status == 200:
                        if self.api.get("pods", self.namespace, pod) is not None:
                            self.running(pod, address, ready=True)
                        return
            except OSError:
                pass
            time.sleep(0.1)

    def _pod_deleted(self, api: ApiServerStandIn, pod: Json) -> None:
        process = self.processes.pop(pod["metadata"]["name"], None)
        if process is not None:
            threading.Thread(target=_stop, args=(process,), daemon=True).start()

    # ---- Kaniko ------------------------------------------------------------------------------------

    def _job_created(self, api: ApiServerStandIn, job: Json) -> None:
        if self.kaniko_at_once:
            self._run_build(job)  # over before the builder's first look at it
        else:
            self._spawn(self._run_build, job)

    def _run_build(self, job: Json) -> None:
        template = job["spec"]["template"]
        pod_name = f"{job['metadata']['name']}-{secrets.token_hex(3)}"[:63]
        labels = {**template["metadata"]["labels"], "job-name": job["metadata"]["name"]}
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": pod_name,
                "namespace": self.namespace,
                "labels": labels,
                "creationTimestamp": now_text(),
            },
            "spec": template["spec"],
            "status": {"phase": "Pending"},
        }
        self.api.put_object("pods", pod)
        failure = self.kaniko_failure
        if failure is not None and failure.waiting:
            self.set_pod_status(
                pod_name,
                {
                    "phase": "Pending",
                    "containerStatuses": [
                        {
                            "name": "kaniko",
                            "state": {
                                "waiting": {"reason": failure.waiting, "message": "Back-off pulling image"}
                            },
                        }
                    ],
                },
            )
            return
        init = template["spec"]["initContainers"][0]
        env = self._env_of(init)
        self._container_state(pod_name, context="running")
        if "CONTEXT_URL" in env:
            request = urllib.request.Request(
                env["CONTEXT_URL"], headers={"X-Trackside-Build-Token": env["BUILD_TOKEN"]}
            )
            with urllib.request.urlopen(request, timeout=10) as answer:
                archive = answer.read()
            self.fetched_contexts.append(env["CONTEXT_URL"])
            self.api.append_log(self.namespace, pod_name, "context", f"fetched {len(archive)} bytes")
        else:
            archive = b""
            self.api.append_log(self.namespace, pod_name, "context", f"cloned {env.get('GIT_REMOTE')}")
        if failure is not None and failure.container == "context":
            self.api.append_log(self.namespace, pod_name, "context", *failure.log)
            self._end_build(job, pod_name, failure)
            return
        self._container_state(pod_name, context="done", kaniko="running")
        args = template["spec"]["containers"][0]["args"]
        destination = next(a.split("=", 1)[1] for a in args if a.startswith("--destination="))
        self.api.append_log(self.namespace, pod_name, "kaniko", *self.kaniko_log)
        if failure is not None:
            self.api.append_log(self.namespace, pod_name, "kaniko", *failure.log)
            self._end_build(job, pod_name, failure)
            return
        digest = "sha256:" + hashlib.sha256(archive or destination.encode()).hexdigest()
        if archive:
            image_dir = self.work_dir / "images" / secrets.token_hex(6)
            with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
                tar.extractall(image_dir, filter="data")
            self.images[f"{destination}@{digest}"] = image_dir / "code"
        self.api.append_log(self.namespace, pod_name, "kaniko", f"INFO Pushed {destination}@{digest}")
        self._container_state(pod_name, context="done", kaniko="done", message=digest)
        self.api.end_log(self.namespace, pod_name, "context")
        self.api.end_log(self.namespace, pod_name, "kaniko")
        self.api.update_status(
            "jobs",
            self.namespace,
            job["metadata"]["name"],
            {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]},
        )

    def _end_build(self, job: Json, pod_name: str, failure: KanikoFailure) -> None:
        terminated = {
            "reason": failure.reason,
            "exitCode": failure.exit_code,
            "message": "\n".join(failure.log),
        }
        states: dict[str, Json] = {
            "context": {"terminated": {"exitCode": 0, "reason": "Completed"}},
            "kaniko": {},
        }
        states[failure.container] = {"terminated": terminated}
        self.set_pod_status(
            pod_name,
            {
                "phase": "Failed",
                "initContainerStatuses": [{"name": "context", "state": states["context"]}],
                "containerStatuses": [
                    {
                        "name": "kaniko",
                        "state": states["kaniko"] or {"waiting": {"reason": "PodInitializing"}},
                    }
                ],
            },
        )
        self.api.end_log(self.namespace, pod_name, "context")
        self.api.end_log(self.namespace, pod_name, "kaniko")
        self.api.update_status(
            "jobs",
            self.namespace,
            job["metadata"]["name"],
            {"failed": 1, "conditions": [{"type": "Failed", "status": "True", "reason": failure.job_reason}]},
        )

    def _container_state(self, pod: str, context: str, kaniko: str | None = None, message: str = "") -> None:
        def state(what: str | None, done_message: str = "") -> Json:
            if what == "running":
                return {"running": {"startedAt": now_text()}}
            if what == "done":
                return {"terminated": {"exitCode": 0, "reason": "Completed", "message": done_message}}
            return {"waiting": {"reason": "PodInitializing"}}

        self.set_pod_status(
            pod,
            {
                "phase": "Running"
                if kaniko == "running" or context == "running"
                else ("Succeeded" if kaniko == "done" else "Pending"),
                "initContainerStatuses": [{"name": "context", "state": state(context)}],
                "containerStatuses": [{"name": "kaniko", "state": state(kaniko, message)}],
            },
        )

    def _spawn(self, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()


def _stop(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(5)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    except ChildProcessError:
        pass
