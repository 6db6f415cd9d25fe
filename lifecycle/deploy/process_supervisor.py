"""Supervision of one generation of a job: its replica processes, their probes and restarts.

One thread per generation owns every process of it (spawning, probing, restarting, stopping), so
no two threads ever act on the same process; other threads only read `snapshot()`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import IO, Any, Protocol

import httpx

from .process_registry import ProcessRegistry
from .runner import ReplicaState, RunSpec

_OUTPUT_TAIL = 40
_ERROR_TAIL = 15
_ADDRESS_IN_USE = ("address already in use", "errno 98")


@dataclass(frozen=True)
class SupervisionSettings:
    backoff_initial: float = 0.2
    backoff_max: float = 5.0
    stable_after: float = 10.0  # a process up this long starts a new failure count
    probe_interval: float = 0.4  # while every replica is ready
    startup_probe_interval: float = 0.1  # while some replica is not
    probe_timeout: float = 1.0
    unresponsive_after: int = 5  # failed /live probes in a row, once it had answered
    startup_timeout: float = 300.0  # never answered /live at all
    failed_kill_after: float = 3.0  # SIGTERM → SIGKILL for a replica restarted by the runner
    stop_timeout: float = 10.0  # SIGTERM → SIGKILL when stopping


class LineSink(Protocol):
    def write(self, line: str) -> None: ...
    def event(self, text: str) -> None: ...


class PortAllocator:
    """Free loopback ports, never the same one to two replicas of this runner at once."""

    def __init__(self, host: str) -> None:
        self._host = host
        self._taken: set[int] = set()
        self._lock = threading.Lock()

    def allocate(self) -> int:
        with self._lock:
            for _ in range(100):
                with socket.socket(socket.AF_INET6 if ":" in self._host else socket.AF_INET) as s:
                    s.bind((self._host, 0))
                    port = int(s.getsockname()[1])
                if port not in self._taken:
                    self._taken.add(port)
                    return port
        raise RuntimeError("no free port")

    def release(self, port: int) -> None:
        with self._lock:
            self._taken.discard(port)


@dataclass
class _Replica:
    slot: int  # its number in the version's log
    port: int
    process: subprocess.Popen[bytes] | None = None
    reader: threading.Thread | None = None
    output: deque[str] = field(default_factory=lambda: deque(maxlen=_OUTPUT_TAIL))
    started_at: float = 0.0
    next_start: float = 0.0
    restart_due: bool = False
    restarts: int = 0
    failures: int = 0
    bind_retries: int = 0
    last_error: str | None = None
    ready: bool = False
    answered: bool = False  # /live answered since this process started
    probe_failures: int = 0
    kill_reason: str | None = None
    kill_at: float = 0.0


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


def _signal_group(process: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)


class Generation:
    """The replicas of one (name, version, deployment_timestamp)."""

    def __init__(
        self,
        spec: RunSpec,
        env: Mapping[str, str],
        host: str,
        ports: PortAllocator,
        sink: LineSink,
        slots: list[int],
        settings: SupervisionSettings,
        registry: ProcessRegistry | None = None,
    ) -> None:
        self.spec = spec
        self._registry = registry
        self._env = dict(env)
        self._host = host
        self._url_host = f"[{host}]" if ":" in host else host
        self._ports = ports
        self._sink = sink
        self._settings = settings
        self._replicas = [_Replica(slot=slot, port=ports.allocate()) for slot in slots]
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"supervise-{spec.job_name}-{spec.job_version}", daemon=True
        )

    # ---- called from other threads ---------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def snapshot(self) -> list[ReplicaState]:
        with self._lock:
            return [
                ReplicaState(
                    address=f"http://{self._url_host}:{r.port}",
                    ready=r.ready,
                    restarts=r.restarts,
                    last_error=r.last_error,
                    deployment_timestamp=self.spec.deployment_timestamp,
                    failures=r.failures,
                    pid=r.process.pid if r.process is not None else None,
                )
                for r in self._replicas
            ]

    def request_stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    def join(self) -> None:
        self._thread.join(self._settings.stop_timeout + 10)

    # ---- the supervisor thread ---------------------------------------------------------------

    def _run(self) -> None:
        timeout = httpx.Timeout(self._settings.probe_timeout)
        client = httpx.Client(timeout=timeout, trust_env=False)
        try:
            while not self._stopping.is_set():
                for replica in self._replicas:
                    if self._stopping.is_set():
                        break
                    try:
                        self._tend(replica, client)
                    except Exception as e:  # keep supervising the others; say what went wrong
                        with self._lock:
                            replica.last_error = f"runner error: {e.__class__.__name__}: {e}"
                        self._sink.event(f"replica {replica.slot}: {replica.last_error}")
                all_ready = all(r.ready for r in self._replicas)
                s = self._settings
                self._wake.wait(s.probe_interval if all_ready else s.startup_probe_interval)
                self._wake.clear()
        finally:
            # closed first, so the probe connections' TIME_WAIT stays on our side, not on the port
            client.close()
            self._terminate_all()

    def _tend(self, r: _Replica, client: httpx.Client) -> None:
        now = time.monotonic()
        if r.process is None:
            if now >= r.next_start:
                self._spawn(r)
            return
        code = r.process.poll()
        if code is not None:
            self._exited(r, code)
        elif r.kill_reason is not None:
            if now >= r.kill_at:
                _signal_group(r.process, signal.SIGKILL)
        else:
            self._probe(r, client, now)

    def _spawn(self, r: _Replica) -> None:
        build = self.spec.build
        command = [
            str(build.python),
            *("-m", "trackside_wrapper", "run", str(build.code_dir)),
            *("--host", self._host, "--port", str(r.port)),
        ]
        try:
            process = subprocess.Popen(
                command,
                cwd=build.code_dir,
                env=self._env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: the job's children go with it
            )
        except (OSError, ValueError) as e:  # ValueError: an environment value no process can take
            self._failed(r, f"cannot start {build.python}: {e}", time.monotonic())
            return
        if self._registry is not None:
            self._registry.record(process.pid)
        with self._lock:
            if r.restart_due:
                r.restarts += 1
                r.restart_due = False
            r.process = process
            r.started_at = time.monotonic()
            r.answered = False
            r.probe_failures = 0
            r.kill_reason = None
            r.output.clear()
        assert process.stdout is not None
        r.reader = threading.Thread(target=self._pump, args=(r, process.stdout), daemon=True)
        r.reader.start()
        self._sink.event(f"replica {r.slot} started on port {r.port} (pid {process.pid})")

    def _pump(self, r: _Replica, stream: IO[bytes]) -> None:
        prefix = f"[replica {r.slot}] "
        with stream:
            for raw in iter(lambda: stream.readline(65536), b""):
                line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                with self._lock:
                    r.output.append(line)
                self._sink.write(prefix + line)
        self._wake.set()  # the process has (most likely) exited: tend to it now

    def _output_tail(self, r: _Replica, lines: int) -> list[str]:
        with self._lock:
            return list(r.output)[-lines:]

    def _exited(self, r: _Replica, code: int) -> None:
        assert r.process is not None
        _signal_group(r.process, signal.SIGKILL)  # whatever the job left behind
        if self._registry is not None:
            self._registry.forget(r.process.pid)
        if r.reader is not None:
            # its last lines tell a taken port from a crash: give a loaded machine time to read them
            # (the group was just killed, so the pipe closes unless something escaped the group)
            r.reader.join(timeout=5.0)
        now = time.monotonic()
        uptime = now - r.started_at
        output = self._output_tail(r, _ERROR_TAIL)
        with self._lock:
            r.process = None
            r.ready = False
        bind_failed = any(m in line.lower() for line in output for m in _ADDRESS_IN_USE)
        if r.kill_reason is None and not r.answered and bind_failed and r.bind_retries < 5:
            old = r.port
            with self._lock:
                r.port = self._ports.allocate()
                r.bind_retries += 1
                r.next_start = now
            self._ports.release(old)
            self._sink.event(f"replica {r.slot}: port {old} is taken, moving to port {r.port}")
            return
        r.bind_retries = 0
        if uptime >= self._settings.stable_after:
            r.failures = 0
        reason = r.kill_reason
        if reason is None:
            reason = _describe_exit(code)
            if output:
                reason += ":\n" + "\n".join(output)
        self._failed(r, reason, now)

    def _failed(self, r: _Replica, reason: str, now: float) -> None:
        s = self._settings
        with self._lock:
            r.failures += 1
            delay = min(s.backoff_initial * 2 ** (r.failures - 1), s.backoff_max)
            r.last_error = reason
            r.ready = False
            r.restart_due = True
            r.next_start = now + delay
        summary = reason.splitlines()[0].rstrip(":")
        self._sink.event(f"replica {r.slot} failed: {summary}; restarting in {delay:.1f} s")

    def _terminate(self, r: _Replica, reason: str, now: float) -> None:
        """Have the runner restart a process that runs but cannot serve."""
        assert r.process is not None
        with self._lock:
            r.kill_reason = reason
            r.kill_at = now + self._settings.failed_kill_after
            r.last_error = reason
            r.ready = False
        _signal_group(r.process, signal.SIGTERM)

    def _probe(self, r: _Replica, client: httpx.Client, now: float) -> None:
        base = f"http://{self._url_host}:{r.port}"
        try:
            live = client.get(f"{base}/live")
        except httpx.HTTPError as e:
            self._unanswered(r, now, f"/live: {e.__class__.__name__}")
            return
        body = _json(live)
        if live.status_code == 500 and body.get("live") is False:
            error = body.get("error") or live.text[:500]
            self._terminate(r, f"the job failed to load: {error}", now)
            return
        if live.status_code != 200:
            self._unanswered(r, now, f"/live answered {live.status_code}")
            return
        with self._lock:
            r.answered = True
            r.probe_failures = 0
        reported = body.get("deployment_timestamp")
        if reported != self.spec.deployment_timestamp:
            with self._lock:
                r.ready = False
                r.last_error = (
                    f"port {r.port} serves deployment {reported}, expected {self.spec.deployment_timestamp}"
                )
            return
        try:
            ready = client.get(f"{base}/ready").status_code == 200
        except httpx.HTTPError:
            ready = False
        with self._lock:
            r.ready = ready
            if ready:
                r.last_error = None

    def _unanswered(self, r: _Replica, now: float, why: str) -> None:
        s = self._settings
        if r.answered:
            with self._lock:
                r.probe_failures += 1
                if r.probe_failures >= 2:
                    r.ready = False
            if r.probe_failures >= s.unresponsive_after:
                self._terminate(r, f"stopped answering ({why})", now)
        elif now - r.started_at > s.startup_timeout:
            self._terminate(r, f"did not answer /live within {s.startup_timeout:.0f} s", now)

    def _terminate_all(self) -> None:
        running = [r for r in self._replicas if r.process is not None]
        for r in running:
            assert r.process is not None
            _signal_group(r.process, signal.SIGTERM)
        deadline = time.monotonic() + self._settings.stop_timeout
        for r in running:
            assert r.process is not None
            try:
                r.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(r.process, signal.SIGKILL)
                r.process.wait()
            _signal_group(r.process, signal.SIGKILL)
            if self._registry is not None:
                self._registry.forget(r.process.pid)
            if r.reader is not None:
                r.reader.join(timeout=1.0)
        with self._lock:
            for r in self._replicas:
                r.process = None
                r.ready = False
        for r in self._replicas:
            self._ports.release(r.port)


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
