"""The gateway's cost: one job served directly, through Trackside's gateway with a token (auth
cache warm) and through nginx as a plain reverse proxy, side by side in one run.

The job is the async adder deployed through `trackside up`; the job, the gateway's process and
nginx share the server core, wrk runs on the other.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from .lifecycle import LifecycleProcess, lifecycle_environment
from .load import LoadResult, Wrk
from .processes import free_port, pin_command
from .report import Ratio

JOB_DIR = Path(__file__).resolve().parent / "jobs" / "adder_async"
JOB_NAME = "adder-async"
BODY = b'{"numbers": [40, 2]}'
PERFORM = "/api/v1/perform"


class NginxMissing(Exception):
    pass


def ensure_nginx() -> str:
    found = shutil.which("nginx") or (Path("/usr/sbin/nginx").exists() and "/usr/sbin/nginx")
    if found:
        return str(found)
    print("nginx is not installed: installing Debian's nginx with apt-get ...", flush=True)
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "nginx"]):
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            env={"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
        )
        if done.returncode != 0:
            raise NginxMissing(f"`{' '.join(command)}` failed: {done.stderr[-800:]}")
    found = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(found).exists():
        raise NginxMissing("nginx is still missing after apt-get install")
    return found


_NGINX_CONF = """
worker_processes 1;
user root;
daemon off;
pid %(prefix)s/nginx.pid;
error_log %(prefix)s/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path %(prefix)s/body;
    proxy_temp_path %(prefix)s/proxy;
    upstream job { server %(upstream)s; keepalive 128; }
    server {
        listen 127.0.0.1:%(port)d;
        location / {
            proxy_pass http://job;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
"""


class Nginx:
    def __init__(self, executable: str, upstream: str, core: int | None, work_dir: Path) -> None:
        self.prefix = Path(tempfile.mkdtemp(prefix="nginx-", dir=work_dir))
        self.port = free_port()
        conf = self.prefix / "nginx.conf"
        conf.write_text(_NGINX_CONF % {"prefix": self.prefix, "upstream": upstream, "port": self.port})
        self.process = subprocess.Popen(
            pin_command([executable, "-p", str(self.prefix), "-c", str(conf)], core),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 10
        while True:
            try:
                httpx.get(self.url + "/live", timeout=1)
                return
            except httpx.TransportError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    error = self.process.stderr.read().decode() if self.process.stderr else ""
                    self.stop()
                    raise RuntimeError(f"nginx did not start: {error[-800:]}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        shutil.rmtree(self.prefix, ignore_errors=True)


def _git_repo(path: Path) -> str:
    path.mkdir(parents=True)
    shutil.copy(JOB_DIR / "adder_async.py", path / "adder_async.py")
    env = {
        "GIT_AUTHOR_NAME": "bench",
        "GIT_AUTHOR_EMAIL": "b@example.com",
        "GIT_COMMITTER_NAME": "bench",
        "GIT_COMMITTER_EMAIL": "b@example.com",
        "PATH": "/usr/bin:/bin",
        "HOME": str(path),
    }
    for args in (["init", "-q", "--initial-branch=master"], ["add", "."], ["commit", "-q", "-m", "job"]):
        subprocess.run(["git", "-C", str(path), *args], check=True, env=env, capture_output=True)
    return path.resolve().as_uri()


def _pin(pid: int, core: int | None) -> None:
    if core is not None:
        subprocess.run(["taskset", "-a", "-p", "-c", str(core), str(pid)], capture_output=True, check=False)


def _auth_misses(gateway_metrics: str) -> float:
    """Sum of the gateway's auth-cache miss counters (metric names containing auth and miss)."""
    total = 0.0
    for line in gateway_metrics.splitlines():
        if line.startswith("#"):
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if "auth" in name and "miss" in name and not name.endswith("_created"):
            total += float(line.rsplit(" ", 1)[1])
    return total


@dataclass
class GatewayResults:
    points: dict[str, list[LoadResult]] = field(default_factory=dict)  # path -> one per concurrency
    auth_misses_during_load: float | None = None
    job_address: str = ""
    notes: list[str] = field(default_factory=list)


def run(
    wrk: Wrk,
    work_dir: Path,
    concurrency: tuple[int, ...],
    duration_s: int,
    warmup_s: int,
    server_core: int | None,
) -> GatewayResults:
    nginx_bin = ensure_nginx()
    results = GatewayResults()
    run_dir = Path(tempfile.mkdtemp(prefix="gateway-", dir=work_dir))
    lifecycle = LifecycleProcess(
        "gateway",
        run_dir / "data",
        run_dir / "lifecycle.log",
        lifecycle_environment(Path.home() / ".cache" / "uv"),
    )
    nginx: Nginx | None = None
    try:
        manifest: dict[str, Any] = {
            "name": JOB_NAME,
            "owner_email": "bench@example.com",
            "jobtype": "python3:latest",
            "version": "1.0.0",
            "git": {"remote": _git_repo(run_dir / "repo")},
            "jobtype_extra": {"entrypoint_path": "adder_async.py"},
        }
        deployment = lifecycle.deploy(manifest)
        deadline = time.monotonic() + 300
        while (status := lifecycle.deployment(deployment))["status"] == "in_progress":
            if time.monotonic() > deadline:
                raise lifecycle.fail("the job was not deployed within 300 s")
            time.sleep(0.1)
        if status["status"] != "done":
            raise lifecycle.fail(f"deploy failed: {status.get('error')}")
        logs = lifecycle.client.get(f"/job/{JOB_NAME}/1.0.0/logs", params={"tail": 1000}).json()["logs"]
        port = re.findall(r"started on port (\d+) \(pid (\d+)\)", logs)[-1]
        results.job_address = f"127.0.0.1:{port[0]}"
        _pin(int(port[1]), server_core)
        _pin(lifecycle.pid, server_core)
        nginx = Nginx(nginx_bin, results.job_address, server_core, run_dir)
        token = str(lifecycle.client.headers["X-Racetrack-Auth"])
        gateway = f"{lifecycle.url}/pub/job/{JOB_NAME}/latest{PERFORM}"
        check = httpx.post(gateway, content=BODY, headers={"X-Racetrack-Auth": token}, timeout=10)
        if check.status_code != 200:
            raise lifecycle.fail(f"the gateway answered {check.status_code}: {check.text[:300]}")
        targets = {
            "direct": (f"http://{results.job_address}{PERFORM}", None),
            "gateway": (gateway, {"X-Racetrack-Auth": token}),
            "nginx": (f"{nginx.url}{PERFORM}", None),
        }
        misses_before = _auth_misses(httpx.get(f"{lifecycle.url}/pub/metrics").text)
        for label, (url, headers) in targets.items():
            points = []
            for c in concurrency:
                if warmup_s:
                    wrk.run(url, BODY, c, warmup_s, headers=headers)
                points.append(wrk.run(url, BODY, c, duration_s, headers=headers))
            results.points[label] = points
        results.auth_misses_during_load = (
            _auth_misses(httpx.get(f"{lifecycle.url}/pub/metrics").text) - misses_before
        )
    finally:
        if nginx is not None:
            nginx.stop()
        lifecycle.stop()
        shutil.rmtree(run_dir, ignore_errors=True)  # its data dir holds a whole job environment
    return results


def ratios(results: GatewayResults) -> list[Ratio]:
    direct, gateway, nginx = (results.points.get(k) for k in ("direct", "gateway", "nginx"))
    out: list[Ratio] = []
    if direct and gateway:
        added = gateway[0].p50_ms - direct[0].p50_ms
        out.append(Ratio(f"gateway adds at p50, c={gateway[0].concurrency}", added, "ms", 1.0, False))
    if gateway and nginx:
        share = gateway[-1].rps / nginx[-1].rps if nginx[-1].rps else 0.0
        out.append(Ratio(f"gateway/nginx throughput, c={gateway[-1].concurrency}", share, "x", 0.5, True))
    return out


def render(results: GatewayResults) -> str:
    lines = [
        "Gateway: one async job direct, through the gateway (token, auth cache warm) and through nginx",
        "",
        f"{'path':<10} {'c':>4} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8} {'errors':>7}",
    ]
    for label, points in results.points.items():
        for p in points:
            lines.append(
                f"{label:<10} {p.concurrency:>4} {p.rps:>8.0f} {p.p50_ms:>8.2f} {p.p99_ms:>8.2f} "
                f"{p.non_2xx:>8} {p.socket_errors:>7}"
            )
    if results.auth_misses_during_load is not None:
        lines.append("")
        served = sum(p.requests for p in results.points.get("gateway", []))
        lines.append(
            f"auth cache misses while under load: {results.auth_misses_during_load:.0f} for {served} gateway "
            "requests (a decision is looked up once per cache TTL, 5 s; a cached one makes no lifecycle "
            "or database call)"
        )
    return "\n".join(lines)


def to_json(results: GatewayResults) -> dict[str, Any]:
    return {
        "job_address": results.job_address,
        "auth_misses_during_load": results.auth_misses_during_load,
        "points": {
            k: [
                {
                    "concurrency": p.concurrency,
                    "rps": p.rps,
                    "p50_ms": p.p50_ms,
                    "p99_ms": p.p99_ms,
                    "requests": p.requests,
                    "non_2xx": p.non_2xx,
                    "socket_errors": p.socket_errors,
                }
                for p in v
            ]
            for k, v in results.points.items()
        },
    }
