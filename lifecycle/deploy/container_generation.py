"""Supervision of one generation of a job in containers: creating its replica containers, probing
them as the embedded runner probes its processes, and bringing back the ones that fail.

The engine's restart policy restarts a container whose process dies; this supervisor also covers
what the policy does not: a container that is gone or was stopped behind the runner's back, one
whose job failed to load (`/live` reports it, the process stays up), and one that stopped
answering. One thread per generation owns its containers; other threads only read `snapshot()`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from .container_engine import ContainerInfo, EngineCli, EngineError
from .process_supervisor import PortAllocator, SupervisionSettings
from .runner import ReplicaState, RunSpec

# the labels of a job's container (besides those its image carries)
LABEL_MANAGED = "trackside.managed"
LABEL_LIFECYCLE = "trackside.lifecycle"
LABEL_NAME = "trackside.job.name"
LABEL_VERSION = "trackside.job.version"
LABEL_DEPLOYMENT = "trackside.deployment"
LABEL_REPLICA = "trackside.replica"
LABEL_PORT = "trackside.port"
_ERROR_TAIL = 15
_ADDRESS_IN_USE = ("address already in use", "port is already allocated", "bind:")


class EventSink(Protocol):
    def event(self, text: str) -> None: ...


@dataclass(frozen=True)
class ContainerPlan:
    """How to create the containers of a generation, computed once by the runner."""

    run_args: Callable[[int, str, int], list[str]]  # (slot, name, port) -> `run` arguments
    prepare: Callable[[str], None]  # before creating container `name` (its runtime env secret)
    cleanup: Callable[[list[str]], None]  # after removing containers (their secrets, env files)
    on_removed: Callable[[str], None]  # called with the image once the generation's containers are gone


@dataclass
class _Replica:
    slot: int
    name: str
    port: int
    ready: bool = False
    answered: bool = False  # /live answered since the container last started
    started_at: float = 0.0
    restarts: int = 0
    failures: int = 0
    engine_restarts: int = 0  # the engine's RestartCount when last seen
    last_error: str | None = None
    next_action: float = 0.0
    action: str | None = "create"  # create | start | restart, due at next_action
    probe_failures: int = 0
    pid: int | None = None
    last_inspect: float = 0.0
    port_retries: int = 0


class ContainerGeneration:
    """The replicas of one (name, version, deployment_timestamp), each a container."""

    def __init__(
        self,
        spec: RunSpec,
        engine: EngineCli,
        plan: ContainerPlan,
        names: list[tuple[int, str]],
        ports: PortAllocator,
        sink: EventSink,
        settings: SupervisionSettings,
        adopted: dict[str, ContainerInfo] | None = None,
        stop_containers: Callable[[], bool] = lambda: True,
    ) -> None:
        self.spec = spec
        self._engine = engine
        self._plan = plan
        self._ports = ports
        self._sink = sink
        self._settings = settings
        self._stop_containers = stop_containers
        self._replicas: list[_Replica] = []
        for slot, name in names:
            info = (adopted or {}).get(name)
            if info is not None:
                port = int(info.labels.get(LABEL_PORT, "0") or 0) or ports.allocate()
                replica = _Replica(slot, name, port, action=None)
                replica.engine_restarts = info.restart_count
                replica.started_at = time.monotonic()
                if not info.running and not info.restarting:
                    replica.action = "start"
            else:
                replica = _Replica(slot, name, ports.allocate())
            self._replicas.append(replica)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"containers-{spec.job_name}-{spec.job_version}", daemon=True
        )

    @property
    def container_names(self) -> list[str]:
        return [r.name for r in self._replicas]

    # ---- called from other threads ---------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def snapshot(self) -> list[ReplicaState]:
        with self._lock:
            return [
                ReplicaState(
                    address=f"http://127.0.0.1:{r.port}",
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
        self._thread.join(self._settings.stop_timeout + 60)

    # ---- the supervisor thread ---------------------------------------------------------------

    def _run(self) -> None:
        client = httpx.Client(timeout=httpx.Timeout(self._settings.probe_timeout), trust_env=False)
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
                s = self._settings
                all_ready = all(r.ready for r in self._replicas)
                self._wake.wait(s.probe_interval if all_ready else s.startup_probe_interval)
                self._wake.clear()
        finally:
            client.close()
            self._finish()

    def _tend(self, r: _Replica, client: httpx.Client) -> None:
        now = time.monotonic()
        if r.action is not None:
            if now >= r.next_action:
                self._act(r, now)
            return
        self._probe(r, client, now)

    def _act(self, r: _Replica, now: float) -> None:
        action, r.action = r.action, None
        try:
            if action == "create":
                self._engine.discard(r.name)  # a leftover of an interrupted start
                self._plan.prepare(r.name)
                self._engine.run_container(self._plan.run_args(r.slot, r.name, r.port))
                self._sink.event(f"replica {r.slot} started: container {r.name} on port {r.port}")
            elif action == "start":
                self._engine.start(r.name)
                self._sink.event(f"replica {r.slot}: container {r.name} started again")
            elif action == "restart":
                self._engine.restart(r.name, self._settings.failed_kill_after)
                self._sink.event(f"replica {r.slot}: container {r.name} restarted")
        except EngineError as e:
            message = str(e)
            if (
                action == "create"
                and any(m in message.lower() for m in _ADDRESS_IN_USE)
                and r.port_retries < 5
            ):
                old = r.port
                with self._lock:
                    r.port = self._ports.allocate()
                    r.port_retries += 1
                self._ports.release(old)
                self._sink.event(f"replica {r.slot}: port {old} is taken, moving to port {r.port}")
                r.action, r.next_action = "create", now
                return
            # a container that is gone cannot be started again: make a new one
            retry = "create" if "no such container" in message.lower() else action or "create"
            self._failed(r, f"{self._engine.name} could not {action} the container: {message}", now, retry)
            return
        with self._lock:
            r.answered = False
            r.ready = False
            r.probe_failures = 0
            r.started_at = time.monotonic()
            if action != "create" or r.failures:  # the first creation is no restart
                r.restarts += 1

    def _failed(self, r: _Replica, reason: str, now: float, retry: str) -> None:
        s = self._settings
        with self._lock:
            r.failures += 1
            delay = min(s.backoff_initial * 2 ** (r.failures - 1), s.backoff_max)
            r.last_error = reason
            r.ready = False
            r.action = retry
            r.next_action = now + delay
        summary = reason.splitlines()[0].rstrip(":")
        self._sink.event(f"replica {r.slot} failed: {summary}; trying again in {delay:.1f} s")

    def _probe(self, r: _Replica, client: httpx.Client, now: float) -> None:
        base = f"http://127.0.0.1:{r.port}"
        try:
            live = client.get(f"{base}/live")
        except httpx.HTTPError as e:
            self._unanswered(r, now, f"/live: {e.__class__.__name__}")
            return
        body = _json(live)
        if live.status_code == 500 and body.get("live") is False:
            error = body.get("error") or live.text[:500]
            self._failed(r, f"the job failed to load: {error}", now, "restart")
            return
        if live.status_code != 200:
            self._unanswered(r, now, f"/live answered {live.status_code}")
            return
        with self._lock:
            r.answered = True
            r.probe_failures = 0
            if now - r.started_at >= self._settings.stable_after:
                r.failures = 0
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
        if ready and r.pid is None:
            self._inspect(r, time.monotonic())

    def _unanswered(self, r: _Replica, now: float, why: str) -> None:
        with self._lock:
            if r.answered:
                r.probe_failures += 1
                if r.probe_failures >= 2:
                    r.ready = False
        if now - r.last_inspect >= 0.5:
            info = self._inspect(r, now)
            if info is None:
                self._failed(r, f"container {r.name} is gone", now, "create")
                return
            if not info.running and not info.restarting:
                reason = f"container {r.name} {_describe_exit(info)}"
                output = self._output_tail(r.name)
                self._failed(r, reason + (":\n" + "\n".join(output) if output else ""), now, "start")
                return
            if info.restart_count > r.engine_restarts:
                crashes = info.restart_count - r.engine_restarts
                output = self._output_tail(r.name)
                with self._lock:
                    r.engine_restarts = info.restart_count
                    r.restarts += crashes
                    r.failures = (
                        r.failures + crashes if now - r.started_at < self._settings.stable_after else crashes
                    )
                    r.last_error = f"container {r.name} exited and was restarted by {self._engine.name}" + (
                        ":\n" + "\n".join(output) if output else ""
                    )
                    r.started_at = now
                    r.answered = False
                    r.ready = False
                self._sink.event(f"replica {r.slot}: container {r.name} was restarted by {self._engine.name}")
                return
        s = self._settings
        if r.answered and r.probe_failures >= s.unresponsive_after:
            self._failed(r, f"stopped answering ({why})", now, "restart")
        elif not r.answered and now - r.started_at > s.startup_timeout:
            self._failed(r, f"did not answer /live within {s.startup_timeout:.0f} s", now, "restart")

    def _inspect(self, r: _Replica, now: float) -> ContainerInfo | None:
        r.last_inspect = now
        info = self._engine.inspect([r.name]).get(r.name)
        with self._lock:
            r.pid = info.pid if info is not None and info.running and info.pid else None
        return info

    def _output_tail(self, name: str) -> list[str]:
        return [line.partition(" ")[2] for line in self._engine.logs(name, _ERROR_TAIL)]

    def _finish(self) -> None:
        names = [r.name for r in self._replicas]
        if self._stop_containers():
            image = self.spec.build.image
            self._engine.remove(names, self._settings.stop_timeout)
            self._plan.cleanup(names)
            if image:
                self._plan.on_removed(image)
        with self._lock:
            for r in self._replicas:
                r.ready = False
                r.pid = None
        for r in self._replicas:
            self._ports.release(r.port)


def _describe_exit(info: ContainerInfo) -> str:
    if info.status in ("created", "configured"):
        return "was created but never started"
    if info.exit_code > 128:
        return f"was killed by signal {info.exit_code - 128} ({info.status})"
    return f"exited with code {info.exit_code} ({info.status})"


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
