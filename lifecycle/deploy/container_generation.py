"""Supervision of one generation of a job in containers: creating its replica containers, probing
them as the embedded runner probes its processes, and bringing back the ones that fail.

The engine's restart policy restarts a container whose process dies; this supervisor also covers
what the policy does not: a container that is gone or was stopped behind the runner's back, one
whose job failed to load (`/live` reports it, the process stays up), and one that stopped
answering. One thread per generation owns its containers; other threads only read `snapshot()`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from .container_engine import ContainerInfo, EngineCli, EngineError
from .process_supervisor import EventSink, PortAllocator, SupervisedGeneration, SupervisionSettings
from .runner import RunSpec

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


class ContainerGeneration(SupervisedGeneration[_Replica]):
    """The replicas of one (name, version, deployment_timestamp), each a container."""

    join_grace = 60.0

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
        self._engine = engine
        self._plan = plan
        self._stop_containers = stop_containers
        replicas: list[_Replica] = []
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
            replicas.append(replica)
        super().__init__(
            spec,
            replicas,
            "127.0.0.1",
            ports,
            sink,
            settings,
            thread_name=f"containers-{spec.job_name}-{spec.job_version}",
        )

    @property
    def container_names(self) -> list[str]:
        return [r.name for r in self._replicas]

    # ---- the supervisor thread ---------------------------------------------------------------

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
        def retry_at(when: float) -> None:
            r.action = retry
            r.next_action = when

        self._count_failure(r, reason, now, retry_at, "trying again")

    def _load_failed(self, r: _Replica, reason: str, now: float) -> None:
        self._failed(r, reason, now, "restart")

    def _live_answered(self, r: _Replica, now: float) -> None:
        if now - r.started_at >= self._settings.stable_after:
            r.failures = 0

    def _became_ready(self, r: _Replica) -> None:
        if r.pid is None:
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
        self._all_stopped()

    def _forget_process(self, r: _Replica) -> None:
        r.pid = None


def _describe_exit(info: ContainerInfo) -> str:
    if info.status in ("created", "configured"):
        return "was created but never started"
    if info.exit_code > 128:
        return f"was killed by signal {info.exit_code - 128} ({info.status})"
    return f"exited with code {info.exit_code} ({info.status})"
