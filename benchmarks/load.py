"""Load generation with wrk: a Lua script that POSTs a JSON body and prints its results as JSON."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .processes import pin_command

RESULT_MARKER = "WRK_RESULT "

_SCRIPT = """
wrk.method = "POST"
wrk.body = [==[%(body)s]==]
wrk.headers["Content-Type"] = "application/json"
%(extra_headers)s

local threads = {}
function setup(thread)
  table.insert(threads, thread)
end
%(status_hooks)s
function done(summary, latency, requests)
  local statuses = {}
  for _, thread in ipairs(threads) do
    local counts = thread:get("statuses")
    if counts then
      for code, n in pairs(counts) do statuses[code] = (statuses[code] or 0) + n end
    end
  end
  local parts = {}
  for code, n in pairs(statuses) do parts[#parts + 1] = string.format('"%%d": %%d', code, n) end
  local e = summary.errors
  io.write(string.format(
    '\\n%(marker)s{"requests": %%d, "duration_us": %%d, "p50_us": %%.1f, "p99_us": %%.1f, ' ..
    '"max_us": %%.1f, "mean_us": %%.1f, "errors": {"connect": %%d, "read": %%d, "write": %%d, ' ..
    '"status": %%d, "timeout": %%d}, "statuses": {%%s}}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.max, latency.mean, e.connect, e.read, e.write, e.status, e.timeout,
    table.concat(parts, ", ")))
end
"""

# A response() hook makes wrk parse every response in Lua, which costs load-generator CPU; it is
# only defined where per-status counts matter (the 429 scenario).
_STATUS_HOOKS = """
function init(args)
  statuses = {}
end
function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end
"""


class WrkMissing(Exception):
    pass


class WrkFailed(Exception):
    pass


@dataclass(frozen=True)
class LoadResult:
    concurrency: int
    requests: int
    duration_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    non_2xx: int
    socket_errors: int
    statuses: dict[int, int] = field(default_factory=dict)
    # wrk's own CPU time: near duration_s means the load generator, not the server, was the limit
    client_cpu_s: float = 0.0

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    def count(self, status: int) -> int:
        return self.statuses.get(status, 0)


def ensure_wrk() -> str:
    """The wrk executable; installs it with apt-get when missing and running as root."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise WrkMissing(
            "wrk is not installed: install it (Debian/Ubuntu: `apt-get install -y wrk`, "
            "macOS: `brew install wrk`) and run again"
        )
    print(
        "wrk is not installed: installing it with `apt-get update && apt-get install -y wrk` ...", flush=True
    )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "wrk"]):
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise WrkMissing(f"`{' '.join(command)}` failed ({done.returncode}):\n{done.stderr[-2000:]}")
    found = shutil.which("wrk")
    if not found:
        raise WrkMissing("apt-get installed wrk but it is not on PATH")
    print(f"wrk installed at {found}", flush=True)
    return found


def wrk_version(wrk: str) -> str:
    # `wrk -v` prints the version banner and exits with status 1
    done = subprocess.run([wrk, "-v"], capture_output=True, text=True)
    return (done.stdout or done.stderr).splitlines()[0].strip() if (done.stdout or done.stderr) else "unknown"


class Wrk:
    def __init__(self, executable: str, core: int | None, work_dir: Path) -> None:
        self.executable = executable
        self.core = core
        self.work_dir = work_dir

    def _script(self, body: bytes, count_statuses: bool, headers: dict[str, str] | None = None) -> Path:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        extra = "\n".join(
            f"wrk.headers[ [==[{name}]==] ] = [==[{value}]==]" for name, value in (headers or {}).items()
        )
        text = _SCRIPT % {
            "extra_headers": extra,
            "body": body.decode(),
            "status_hooks": _STATUS_HOOKS if count_statuses else "",
            "marker": RESULT_MARKER,
        }
        with tempfile.NamedTemporaryFile("w", suffix=".lua", dir=self.work_dir, delete=False) as f:
            f.write(text)
        return Path(f.name)

    def run(
        self,
        url: str,
        body: bytes,
        concurrency: int,
        duration_s: int,
        count_statuses: bool = False,
        headers: dict[str, str] | None = None,
    ) -> LoadResult:
        """POST `body` to `url` over `concurrency` keep-alive connections for `duration_s` seconds.

        wrk only takes whole seconds, so the duration is an int.
        """
        script = self._script(body, count_statuses, headers)
        try:
            command = [
                self.executable,
                "-t1",
                f"-c{concurrency}",
                f"-d{duration_s}s",
                "--timeout",
                "10s",
                "-s",
                str(script),
                url,
            ]
            before = _children_cpu_s()
            done = subprocess.run(
                pin_command(command, self.core), capture_output=True, text=True, timeout=duration_s + 60
            )
            client_cpu_s = _children_cpu_s() - before
        finally:
            script.unlink(missing_ok=True)
        line = next((ln for ln in done.stdout.splitlines() if ln.startswith(RESULT_MARKER)), None)
        if done.returncode != 0 or line is None:
            raise WrkFailed(f"wrk failed ({done.returncode}): {done.stdout[-1500:]}{done.stderr[-1500:]}")
        data = json.loads(line.removeprefix(RESULT_MARKER))
        errors = data["errors"]
        return LoadResult(
            concurrency=concurrency,
            requests=int(data["requests"]),
            duration_s=data["duration_us"] / 1e6,
            p50_ms=data["p50_us"] / 1000,
            p99_ms=data["p99_us"] / 1000,
            max_ms=data["max_us"] / 1000,
            non_2xx=int(errors["status"]),
            socket_errors=sum(int(errors[k]) for k in ("connect", "read", "write", "timeout")),
            statuses={int(k): int(v) for k, v in data["statuses"].items()},
            client_cpu_s=client_cpu_s,
        )


def _children_cpu_s() -> float:
    # Only reaped children count, and the servers are not reaped while wrk runs: the delta is wrk's.
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime
