"""A whole embedded platform for gateway tests: a ControlPlane, and the lifecycle API with the
gateway at /pub served by real uvicorn on a free loopback port (in a thread); jobs are deployed
from file:// git repositories through the API, as `trackside up` would."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from lifecycle.api.app import create_app
from lifecycle.config import LifecycleConfig
from lifecycle.control_plane import ControlPlane
from lifecycle.secrets import SecretBox
from pub.app import ASGIApp, Gateway, GatewayConfig
from pub.dispatch import PathDispatcher
from tests.conftest import free_port
from tests.gitservers import file_url, make_repo
from trackside.embedded_registry import EmbeddedRegistry

API = "/lifecycle/api/v1"

# A job that tells what it received: perform() names the process; the raw ASGI webview echoes
# method, path, query, headers and a digest of the body, streams, sleeps and echoes WebSockets.
ECHO = """
import asyncio
import hashlib
import json
import os
import time


class Echo:
    def __init__(self):
        flag = os.environ.get("INIT_FLAG")
        while flag and not os.path.exists(flag):  # a version that stays `starting` until told
            time.sleep(0.05)

    def perform(self, text: str = "") -> dict:
        return {"job": os.environ["JOB_NAME"], "version": os.environ["JOB_VERSION"], "pid": os.getpid(),
                "text": text}

    def docs_input_example(self) -> dict:
        return {"text": "hi"}

    def webview_app(self, base_url: str):
        async def websocket(scope, receive, send):
            await receive()
            protocols = scope.get("subprotocols") or []
            await send({"type": "websocket.accept", "subprotocol": protocols[0] if protocols else None})
            while True:
                message = await receive()
                if message["type"] == "websocket.disconnect":
                    return
                text = message.get("text")
                if text == "close":
                    await send({"type": "websocket.close", "code": 4001})
                    return
                if text == "headers":
                    seen = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
                    await send({"type": "websocket.send", "text": json.dumps(seen)})
                elif text is not None:
                    await send({"type": "websocket.send", "text": text.upper()})
                else:
                    await send({"type": "websocket.send", "bytes": message["bytes"][::-1]})

        async def app(scope, receive, send):
            if scope["type"] == "websocket":
                await websocket(scope, receive, send)
                return
            if scope["type"] != "http":
                return
            sub = scope["path"][len(base_url):]
            query = dict(p.split("=", 1) for p in scope["query_string"].decode().split("&") if "=" in p)
            if sub == "/stream":
                size = int(query.get("mb", "1")) * 1024 * 1024
                await send({"type": "http.response.start", "status": 200,
                            "headers": [(b"content-type", b"application/octet-stream")]})
                chunk = bytes(range(256)) * 256
                sent = 0
                while sent < size:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    sent += len(chunk)
                    if sent == len(chunk) and "pause" in query:
                        await asyncio.sleep(float(query["pause"]))
                await send({"type": "http.response.body", "body": b""})
                return
            if sub == "/sleep":
                await asyncio.sleep(float(query.get("s", "1")))
            digest = hashlib.sha256()
            size = 0
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    return
                digest.update(message.get("body", b""))
                size += len(message.get("body", b""))
                if not message.get("more_body"):
                    break
            body = json.dumps({
                "job": os.environ["JOB_NAME"], "version": os.environ["JOB_VERSION"], "pid": os.getpid(),
                "method": scope["method"], "path": scope["path"], "query": scope["query_string"].decode(),
                "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]],
                "size": size, "sha256": digest.hexdigest(),
            }).encode()
            await send({"type": "http.response.start", "status": 200, "headers": [
                (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})

        return app
"""


class ServerThread:
    """uvicorn serving `app` on a free port from a thread of this process."""

    def __init__(self, app: ASGIApp, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            http="httptools",
            ws="wsproto",
            log_config=None,
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=2,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name=f"uvicorn-{self.port}", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


class GatewayPlatform:
    def __init__(self, plane: ControlPlane, server: ServerThread, gateway: Gateway, token: str) -> None:
        self.plane = plane
        self.server = server
        self.gateway = gateway
        self.url = server.url
        self.port = server.port
        self.token = token
        self.api = httpx.Client(base_url=self.url + API, headers={"X-Racetrack-Auth": token}, timeout=30)

    def pub(self, name: str, version: str, path: str) -> str:
        return f"{self.url}/pub/job/{name}/{version}{path}"

    def deploy(self, manifest: dict[str, Any], force: bool = False) -> str:
        r = self.api.post("/deploy", json={"manifest": manifest, "force": force})
        assert r.status_code == 202, r.text
        return str(r.json()["id"])

    def deployment(self, deployment_id: str) -> dict[str, Any]:
        body: dict[str, Any] = self.api.get(f"/deploy/{deployment_id}").json()
        return body

    def wait(self, deployment_id: str, phase: str | None = None, timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            body = self.deployment(deployment_id)
            if body["status"] != "in_progress" or (phase is not None and body.get("phase") == phase):
                return body
            assert time.monotonic() < deadline, body
            time.sleep(0.05)

    def issue_esc_token(self, esc: str, family: str | None) -> str:
        assert self.api.post("/escs", json={"name": esc}).status_code == 201
        token: str = self.api.post(f"/escs/{esc}/tokens", json={}).json()["token"]
        if family is not None:
            grant = {"subject_type": "esc", "subject_name": esc, "scope": "call_job", "job_family": family}
            r = self.api.post("/permissions", json=grant)
            assert r.status_code == 201, r.text
        return token

    def replica_pids(self, name: str, version: str) -> list[int]:
        return [r.pid for r in self.plane.runner.serving(name, version) if r.pid is not None]

    def job_logs(self, name: str, version: str) -> str:
        logs: str = self.api.get(f"/job/{name}/{version}/logs", params={"tail": 2000}).json()["logs"]
        return logs


def config(data_dir: Path) -> LifecycleConfig:
    return LifecycleConfig(
        data_dir=data_dir,
        database_url=f"sqlite:///{data_dir / 'trackside.db'}",
        secret_key=SecretBox.generate_key(),
        allow_file_remotes=True,
    )


@contextmanager
def gateway_platform(
    data_dir: Path, gateway_config: GatewayConfig | None = None
) -> Iterator[GatewayPlatform]:
    """The lifecycle and the gateway on one port (as `trackside up` serves them)."""
    port = free_port()
    plane = ControlPlane(config(data_dir), pub_url=f"http://127.0.0.1:{port}/pub")
    report = plane.start()
    assert report.admin_token
    gateway = Gateway(EmbeddedRegistry(plane), gateway_config)
    server: ServerThread | None = None
    try:
        server = ServerThread(PathDispatcher({"/pub": gateway}, create_app(plane)), port)
        yield GatewayPlatform(plane, server, gateway, report.admin_token)
    finally:
        if server is not None:
            server.stop()
        plane.stop()


def echo_repo(directory: Path) -> str:
    return file_url(make_repo(directory, {"entrypoint.py": ECHO, "requirements.txt": ""}))


def manifest(name: str, version: str, remote: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "owner_email": "gateway@example.com",
        "jobtype": "python3:latest",
        "version": version,
        "git": {"remote": remote},
        "jobtype_extra": {"entrypoint_path": "entrypoint.py"},
        **extra,
    }
