"""A lifecycle for tests: a ControlPlane on a private data dir behind the real API, and a client
that deploys, waits for deployments and calls the jobs they start."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from fastapi.testclient import TestClient

from lifecycle.api.app import create_app
from lifecycle.config import LifecycleConfig
from lifecycle.control_plane import ControlPlane
from lifecycle.secrets import SecretBox
from lifecycle.store import jobs as job_store
from lifecycle.store.models import JobStatus
from tests.conftest import free_port

API = "/api/v1"


def lifecycle_config(data_dir: Path, allow_file_remotes: bool = True) -> LifecycleConfig:
    return LifecycleConfig(
        data_dir=data_dir,
        database_url=f"sqlite:///{data_dir / 'trackside.db'}",
        secret_key=SecretBox.generate_key(),
        allow_file_remotes=allow_file_remotes,
    )


def job_manifest(name: str, remote: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": name,
        "owner_email": "sample@example.com",
        "jobtype": "python3:latest",
        "version": "0.0.1",
        "git": {"remote": remote},
        "jobtype_extra": {"entrypoint_path": "entrypoint.py"},
    }
    body.update(extra)
    return body


class Platform:
    def __init__(self, client: TestClient, plane: ControlPlane, token: str) -> None:
        self.client = client
        self.plane = plane
        self.token = token
        self.data = plane.config.data_dir

    def headers(self, token: str | None = None) -> dict[str, str]:
        return {"X-Racetrack-Auth": token or self.token}

    def post_deploy(self, manifest: dict[str, Any], token: str | None = None, **body: Any) -> httpx.Response:
        return self.client.post(
            f"{API}/deploy", json={"manifest": manifest, **body}, headers=self.headers(token)
        )

    def deploy(self, manifest: dict[str, Any], **body: Any) -> str:
        """Start a deployment (body: force, build_context, secret_vars ...); its id."""
        r = self.post_deploy(manifest, **body)
        assert r.status_code == 202, r.text
        deployment_id: str = r.json()["id"]
        return deployment_id

    def wait(self, deployment_id: str, timeout: float = 180) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            r = self.client.get(f"{API}/deploy/{deployment_id}", headers=self.headers())
            assert r.status_code == 200, r.text
            body: dict[str, Any] = r.json()
            if body["status"] != "in_progress":
                return body
            assert time.monotonic() < deadline, f"deployment still {body['phase']} after {timeout}s"
            time.sleep(0.05)

    def deploy_and_wait(self, manifest: dict[str, Any], **body: Any) -> dict[str, Any]:
        return self.wait(self.deploy(manifest, **body))

    def build_log(self, name: str, version: str = "latest") -> str:
        r = self.client.get(f"{API}/job/{name}/{version}/build-logs", headers=self.headers())
        assert r.status_code == 200, r.text
        logs: str = r.json()["logs"]
        return logs

    def address(self, name: str, version: str = "0.0.1") -> str:
        replicas = self.plane.runner.serving(name, version)
        assert replicas, f"{name} {version} has no ready replica"
        return replicas[0].address

    def call(self, name: str, payload: dict[str, Any], version: str = "0.0.1") -> Any:
        r = httpx.post(self.address(name, version) + "/api/v1/perform", json=payload, timeout=10)
        assert r.status_code == 200, r.text
        return r.json()


@contextmanager
def running_platform(
    data_dir: Path,
    pub_url: str = "http://127.0.0.1:7200/pub",
    git_env: dict[str, str] | None = None,
    allow_file_remotes: bool = True,
) -> Iterator[Platform]:
    plane = ControlPlane(lifecycle_config(data_dir, allow_file_remotes), pub_url=pub_url, git_env=git_env)
    report = plane.start()
    assert report.admin_token
    try:
        with TestClient(create_app(plane)) as client:
            yield Platform(client, plane, report.admin_token)
    finally:
        plane.stop()


class TracksideUp:
    """`python -m trackside up` as a real process on a free port, with an authenticated client of its
    lifecycle API (`client`, based at /lifecycle)."""

    def __init__(
        self, data_dir: Path, log: Path, env: dict[str, str] | None = None, port: int | None = None
    ) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log
        with open(log, "ab") as out:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "trackside",
                    "up",
                    "--port",
                    str(self.port),
                    "--data-dir",
                    str(data_dir),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            )
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(self.url + "/lifecycle/live").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert self.process.poll() is None, self.output()
            assert time.monotonic() < deadline, self.output()
            time.sleep(0.1)
        self.token = (data_dir / "admin-token").read_text().strip()
        self.client = httpx.Client(
            base_url=self.url + "/lifecycle", headers={"X-Racetrack-Auth": self.token}, timeout=30
        )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def deploy(self, manifest: dict[str, Any], force: bool = False) -> str:
        r = self.client.post("/api/v1/deploy", json={"manifest": manifest, "force": force})
        assert r.status_code == 202, r.text
        return str(r.json()["id"])

    def deployment(self, deployment_id: str) -> dict[str, Any]:
        body: dict[str, Any] = self.client.get(f"/api/v1/deploy/{deployment_id}").json()
        return body

    def wait(self, deployment_id: str, until: str | None = None, timeout: float = 180) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            body = self.deployment(deployment_id)
            if body["status"] != "in_progress" or (until is not None and body["phase"] == until):
                return body
            assert time.monotonic() < deadline, body
            time.sleep(0.1)

    def job_pids(self, name: str, version: str) -> set[int]:
        logs = self.client.get(f"/api/v1/job/{name}/{version}/logs", params={"tail": 1000}).json()["logs"]
        return {int(pid) for pid in re.findall(r"\(pid (\d+)\)", logs)}

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.client.close()
        self.process.send_signal(sig)
        return self.process.wait(30)


class ServedComponent:
    """`python -m trackside serve COMPONENT` on a free port (or `port`), its output in `log`,
    waited for until it answers its probe."""

    PROBES = {"lifecycle": "/lifecycle/live", "pub": "/pub/live", "dashboard": "/dashboard/live"}

    def __init__(self, component: str, log: Path, env: dict[str, str], port: int | None = None) -> None:
        self.component = component
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        with open(log, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "trackside", "serve", component, "--port", str(self.port)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
            )
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(self.url + self.PROBES[component]).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert self.process.poll() is None, self.output()
            assert time.monotonic() < deadline, self.output()
            time.sleep(0.1)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(30)


def store_only_job(
    plane: ControlPlane, name: str, version: str, status: JobStatus = JobStatus.RUNNING, **extra: Any
) -> None:
    """A job version in the store only: no process runs for it (listings, permissions, routing)."""
    with plane.db.session() as session:
        job_store.create_job(
            session,
            name=name,
            version=version,
            manifest_yaml="",
            manifest={},
            owner_email="owner@example.com",
            status=status,
            **extra,
        )
