"""Supervision of one generation of a job: its replica processes, their probes and restarts.

One thread per generation owns every process of it (spawning, probing, restarting, stopping), so
no two threads ever act on the same process; other threads only read `snapshot()`.
`SupervisedGeneration` is that thread and the probing, which the container runner's generations
(container_generation) share.
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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import IO, Any, Generic, Protocol, TypeVar

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


class EventSink(Protocol):
    def event(self, text: str) -> None: ...


class LineSink(EventSink, Protocol):
    def write(self, line: str) -> None: ...


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

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None


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


class ProbedReplica(Protocol):
    """What the supervision of a generation reads and writes of each of its replicas."""

    slot: int
    port: int
    ready: bool
    answered: bool  # /live answered since it last started
    probe_failures: int
    restarts: int
    failures: int
    last_error: str | None

    @property
    def pid(self) -> int | None: ...


R = TypeVar("R", bound=ProbedReplica)


class SupervisedGeneration(Generic[R]):
    """The replicas of one (name, version, deployment_timestamp) and the one thread that owns
    them: it tends to each replica in turn (`_tend`), and to all of them once stopped (`_finish`)."""

    join_grace = 10.0  # how much longer than stop_timeout `join` waits for the thread

    def __init__(
        self,
        spec: RunSpec,
        replicas: list[R],
        host: str,
        ports: PortAllocator,
        sink: EventSink,
        settings: SupervisionSettings,
        thread_name: str,
    ) -> None:
        self.spec = spec
        self._replicas = replicas
        self._url_host = f"[{host}]" if ":" in host else host
        self._ports = ports
        self._sink = sink
        self._settings = settings
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=thread_name, daemon=True)

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
                    pid=r.pid,
                )
                for r in self._replicas
            ]

    def request_stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    def join(self) -> None:
        self._thread.join(self._settings.stop_timeout + self.join_grace)

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
            self._finish()

    def _tend(self, r: R, client: httpx.Client) -> None:
        """Start, restart or `_probe` one replica, whichever is due."""
        raise NotImplementedError

    def _finish(self) -> None:
        """Stop every replica (the generation is being stopped), then `_all_stopped`."""
        raise NotImplementedError

    def _all_stopped(self) -> None:
        with self._lock:
            for r in self._replicas:
                r.ready = False
                self._forget_process(r)
        for r in self._replicas:
            self._ports.release(r.port)

    def _forget_process(self, r: R) -> None:
        """The replica has no process any more (called holding the lock)."""
        raise NotImplementedError

    def _probe(self, r: R, client: httpx.Client, now: float) -> None:
        """`/live`, then, when it reports this generation, `/ready`."""
        base = f"http://{self._url_host}:{r.port}"
        try:
            live = client.get(f"{base}/live")
        except httpx.HTTPError as e:
            self._unanswered(r, now, f"/live: {e.__class__.__name__}")
            return
        body = _json(live)
        if live.status_code == 500 and body.get("live") is False:
            error = body.get("error") or live.text[:500]
            self._load_failed(r, f"the job failed to load: {error}", now)
            return
        if live.status_code != 200:
            self._unanswered(r, now, f"/live answered {live.status_code}")
            return
        with self._lock:
            r.answered = True
            r.probe_failures = 0
            self._live_answered(r, now)
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
        if ready:
            self._became_ready(r)

    def _count_failure(
        self, r: R, reason: str, now: float, retry_at: Callable[[float], None], next_step: str
    ) -> None:
        """Count a failure of `r`, and have `retry_at` schedule the next try (it gets the time,
        backing off exponentially, and is called holding the lock); `next_step` names it."""
        s = self._settings
        with self._lock:
            r.failures += 1
            delay = min(s.backoff_initial * 2 ** (r.failures - 1), s.backoff_max)
            r.last_error = reason
            r.ready = False
            retry_at(now + delay)
        summary = reason.splitlines()[0].rstrip(":")
        self._sink.event(f"replica {r.slot} failed: {summary}; {next_step} in {delay:.1f} s")

    def _unanswered(self, r: R, now: float, why: str) -> None:
        """`/live` did not answer, or not with 200."""
        raise NotImplementedError

    def _load_failed(self, r: R, reason: str, now: float) -> None:
        """The replica runs but its job failed to load: it must be restarted."""
        raise NotImplementedError

    def _live_answered(self, r: R, now: float) -> None:
        """`/live` answered 200 (called holding the lock)."""

    def _became_ready(self, r: R) -> None:
        """`/ready` answered 200."""


class Generation(SupervisedGeneration[_Replica]):
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
        self._registry = registry
        self._env = dict(env)
        self._host = host
        self._lines = sink
        super().__init__(
            spec,
            [_Replica(slot=slot, port=ports.allocate()) for slot in slots],
            host,
            ports,
            sink,
            settings,
            thread_name=f"supervise-{spec.job_name}-{spec.job_version}",
        )

    # ---- the supervisor thread ---------------------------------------------------------------

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
                self._lines.write(prefix + line)
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
        def restart_at(when: float) -> None:
            r.restart_due = True
            r.next_start = when

        self._count_failure(r, reason, now, restart_at, "restarting")

    def _terminate(self, r: _Replica, reason: str, now: float) -> None:
        """Have the runner restart a process that runs but cannot serve."""
        assert r.process is not None
        with self._lock:
            r.kill_reason = reason
            r.kill_at = now + self._settings.failed_kill_after
            r.last_error = reason
            r.ready = False
        _signal_group(r.process, signal.SIGTERM)

    def _load_failed(self, r: _Replica, reason: str, now: float) -> None:
        self._terminate(r, reason, now)

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

    def _finish(self) -> None:
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
        self._all_stopped()

    def _forget_process(self, r: _Replica) -> None:
        r.process = None


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
