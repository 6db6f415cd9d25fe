"""Servers under test as child processes: start pinned to a core, wait for /ready, sample CPU and
memory from /proc, and stop them (the whole process group) no matter how the harness exits."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class ServerFailed(Exception):
    """A server exited, never became ready, or answered wrongly; the message has its log's tail."""


@dataclass(frozen=True)
class Cores:
    """Where the server and the load generator run. `None`: not pinned (fewer than two cores)."""

    server: int | None
    load: int | None

    @classmethod
    def detect(cls) -> Cores:
        available = sorted(os.sched_getaffinity(0))
        if len(available) < 2:
            return cls(None, None)
        # Prefer the layout measured in notes/machine.md: server on CPU 1, load on CPU 0.
        load, server = (0, 1) if {0, 1} <= set(available) else (available[0], available[1])
        return cls(server, load)

    @property
    def pinned(self) -> bool:
        return self.server is not None


def pin_command(command: Sequence[str], core: int | None) -> list[str]:
    return ["taskset", "-c", str(core), *command] if core is not None else list(command)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def child_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The harness's environment, except that children read and write .pyc files: with
    PYTHONDONTWRITEBYTECODE every start would recompile the wrapper and inflate cold starts."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(extra or {})
    return env


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    started_at: float

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def fail(self, why: str) -> ServerFailed:
        return ServerFailed(f"{self.name}: {why}\n--- last lines of {self.log_path} ---\n{self.log_tail()}")

    def request(
        self, method: str, path: str, body: bytes | None = None, timeout: float = 5.0
    ) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            headers = {"Content-Type": "application/json"} if body is not None else {}
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def wait_ready(self, timeout: float = 60.0) -> float:
        """Seconds from process start until GET /ready first answered 200."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                status, _ = self.request("GET", "/ready", timeout=1.0)
                if status == 200:
                    return time.perf_counter() - self.started_at
            except (OSError, http.client.HTTPException):
                pass
            if _exited(self.pid):
                raise self.fail("exited before it was ready")
            if time.monotonic() > deadline:
                raise self.fail(f"not ready within {timeout:.0f} s")
            time.sleep(0.003)

    def stop(self) -> None:
        if self.process.returncode is not None:
            return  # already reaped: its process group id may belong to someone else by now
        pid = self.process.pid
        _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while not _exited(pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        # The leader is a zombie (or still running) until reaped, so the group id is still ours:
        # kill whatever else the server started, then reap it.
        _signal_group(pid, signal.SIGKILL)
        self.process.wait()


def _exited(pid: int) -> bool:
    """Whether the child has exited, without reaping it."""
    return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT | os.WNOHANG) is not None


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def start_server(
    name: str,
    command: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    log_dir: Path,
    port: int,
    core: int | None,
) -> Server:
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}-{port}.log"
    with open(log_path, "wb") as log:
        started_at = time.perf_counter()
        # A session of its own, so that stopping kills the server's whole process group.
        process = subprocess.Popen(
            pin_command(command, core),
            cwd=cwd,
            env=dict(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return Server(name, port, process, log_path, started_at)


class ServerGroup:
    """Every server started through it is stopped when the `with` block ends, however it ends."""

    def __init__(self, log_dir: Path, core: int | None) -> None:
        self.log_dir = log_dir
        self.core = core
        self.servers: list[Server] = []

    def __enter__(self) -> ServerGroup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()

    def start(self, name: str, command: Sequence[str], cwd: Path, env: Mapping[str, str]) -> Server:
        port = free_port()
        argv = [part.replace("{port}", str(port)) for part in command]
        server = start_server(name, argv, cwd=cwd, env=env, log_dir=self.log_dir, port=port, core=self.core)
        self.servers.append(server)
        return server

    def stop(self, server: Server) -> None:
        server.stop()
        if server in self.servers:
            self.servers.remove(server)

    def stop_all(self) -> None:
        while self.servers:
            self.servers.pop().stop()


@contextmanager
def terminate_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM/SIGHUP into KeyboardInterrupt so that cleanup runs as it does on Ctrl-C."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# ---- /proc sampling ----------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat from field 3 (state) on; the command name may contain spaces."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def process_tree(root: int) -> list[int]:
    """root and all its live descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    tree, pending = [], [root]
    while pending:
        pid = pending.pop()
        tree.append(pid)
        pending.extend(children.get(pid, ()))
    return tree


def cpu_seconds(root: int) -> float:
    """utime+stime of the process and its descendants, plus what their exited children used."""
    ticks = 0
    for pid in process_tree(root):
        fields = _stat_fields(pid)
        if fields is not None:
            # fields[11:15] are utime, stime, cutime, cstime (stat fields 14-17)
            ticks += sum(int(f) for f in fields[11:15])
    return ticks / CLOCK_TICKS


def rss_bytes(root: int) -> int:
    """VmRSS of the process and its descendants."""
    total = 0
    for pid in process_tree(root):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
                break
    return total
