"""Container runner: jobs as containers of their image, one per replica, supervised like the
embedded runner's processes (see container_generation).

Containers are named `trackside-LIFECYCLE-NAME-VERSION-TIMESTAMP-REPLICA` and labelled with the
lifecycle that owns them, the job, version, deployment timestamp, replica and host port. They are
published on a loopback port (`-p 127.0.0.1:PORT:7000`), or join the host's or another network
(`network`). The job's runtime environment (runtime_env, runtime secrets, its platform token)
never appears in the container's configuration: podman gets it as a secret mounted as a file,
docker as a read-only bind-mounted file of the lifecycle's; the image's start.sh exports it.

Reconciling: containers a previous lifecycle process left (it died, or was told to leave them
running) are adopted when the same deployment is started again, and `remove_unclaimed` removes
the rest once the lifecycle has restarted what should run.

Logs come from the engine (`logs --timestamps` of every container of the version, merged in time
order), with the runner's own `[runner]` lines.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import logging
import queue
import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from trackside_wrapper.job_image import CONTAINER_PORT, JOB_USER_ID, RecipeError, env_file

from .container_engine import ContainerInfo, EngineCli
from .container_generation import (
    LABEL_DEPLOYMENT,
    LABEL_LIFECYCLE,
    LABEL_MANAGED,
    LABEL_NAME,
    LABEL_PORT,
    LABEL_REPLICA,
    LABEL_VERSION,
    ContainerGeneration,
    ContainerPlan,
)
from .generations import Generations
from .process_supervisor import PortAllocator, SupervisionSettings
from .runner import RunSpec

logger = logging.getLogger("trackside.lifecycle.containers")

ENV_MOUNT = "/run/trackside/env"
LIFECYCLE_ID_FILE = "lifecycle-id"
_EVENTS_KEPT = 1000
_FOLLOW_BUFFER = 10_000
_FOLLOW_POLL = 0.5
_UNSAFE_NAME_RE = re.compile(r"[^a-zA-Z0-9_.-]")
_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")


@dataclass(frozen=True)
class ContainerRunSettings:
    network: str | None = None  # None: the engine's default, published on loopback; "host"; a name
    pub_url: str | None = None  # the gateway's URL as containers see it (None: derived from PUB_URL)
    restart_policy: str = "on-failure"
    stop_with_lifecycle: bool = True


def _now_stamp() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class _VersionEvents:
    """The runner's own lines about one version, kept briefly and passed to followers."""

    def __init__(self) -> None:
        self.lines: deque[tuple[str, str]] = deque(maxlen=_EVENTS_KEPT)  # (timestamp, line)
        self.followers: set[queue.Queue[str | None]] = set()
        self.lock = threading.Lock()

    def event(self, text: str) -> None:
        stamp = _now_stamp()
        line = f"[runner] {stamp[:19]}Z {text}"
        with self.lock:
            self.lines.append((stamp, line))
            for follower in self.followers:
                with contextlib.suppress(queue.Full):
                    follower.put_nowait(line)

    def close(self) -> None:
        with self.lock:
            for follower in self.followers:
                with contextlib.suppress(queue.Full):
                    follower.put_nowait(None)


def _load_lifecycle_id(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_text(secrets.token_hex(4) + "\n")
    value = path.read_text().strip()
    if not re.fullmatch(r"[0-9a-f]{8}", value):
        raise RuntimeError(f"{path} is damaged; delete it (containers it labelled will be left alone)")
    return value


class ContainerRunner(Generations[ContainerGeneration, _VersionEvents]):
    infrastructure = "docker"

    def __init__(
        self,
        engine: EngineCli,
        state_dir: Path,
        settings: ContainerRunSettings | None = None,
        supervision: SupervisionSettings | None = None,
        on_image_unused: Callable[[str], object] | None = None,
    ) -> None:
        super().__init__()
        self.engine = engine
        self.state_dir = state_dir.resolve()
        self.settings = settings or ContainerRunSettings()
        self.supervision = supervision or SupervisionSettings()
        self._on_image_unused = on_image_unused or (lambda image: None)
        self.lifecycle_id = _load_lifecycle_id(self.state_dir / LIFECYCLE_ID_FILE)
        self._env_dir = self.state_dir / "env"
        self._env_dir.mkdir(parents=True, exist_ok=True)
        self._env_dir.chmod(0o700)
        self._ports = PortAllocator("127.0.0.1")
        self._keep_containers = False
        # what an earlier lifecycle process left running, by (name, version, timestamp)
        self._adoptable: dict[tuple[str, str, int], dict[str, ContainerInfo]] = {}
        for info in engine.containers({LABEL_LIFECYCLE: self.lifecycle_id}):
            key = (
                info.labels.get(LABEL_NAME, ""),
                info.labels.get(LABEL_VERSION, ""),
                int(info.labels.get(LABEL_DEPLOYMENT, "0") or 0),
            )
            self._adoptable.setdefault(key, {})[info.name] = info
        atexit.register(self.shutdown)

    # ---- starting ------------------------------------------------------------------------------

    def start(self, spec: RunSpec) -> None:
        if spec.replicas < 1:
            raise ValueError(f"replicas must be at least 1, got {spec.replicas}")
        if not spec.build.image:
            raise ValueError(f"{spec.job_name} {spec.job_version}: the build has no image to run")
        adopted: dict[str, ContainerInfo] = {}

        def new_generation(events: _VersionEvents) -> ContainerGeneration:
            nonlocal adopted
            names = [(slot, self._container_name(spec, slot)) for slot in range(spec.replicas)]
            # under the runner's lock, which also guards what is adoptable
            adopted = self._adoptable.pop((spec.job_name, spec.job_version, spec.deployment_timestamp), {})
            return ContainerGeneration(
                spec,
                self.engine,
                self._plan(spec),
                names,
                self._ports,
                events,
                self.supervision,
                adopted=adopted,
                stop_containers=lambda: not self._keep_containers,
            )

        added = self._add(spec, _VersionEvents, new_generation)
        if added is None:
            return
        events, generation = added
        if adopted:
            events.event(
                f"deployment {spec.deployment_timestamp}: adopted {len(adopted)} running container(s)"
            )
        else:
            events.event(f"deployment {spec.deployment_timestamp}: starting {spec.replicas} container(s)")
        generation.start()

    def _container_name(self, spec: RunSpec, slot: int) -> str:
        raw = f"trackside-{self.lifecycle_id}-{spec.job_name}-{spec.job_version}-{spec.deployment_timestamp}-{slot}"
        return _UNSAFE_NAME_RE.sub("_", raw)

    def _plan(self, spec: RunSpec) -> ContainerPlan:
        env = dict(spec.env)
        if "PUB_URL" in env:
            env["PUB_URL"] = self._container_pub_url(env["PUB_URL"])
        try:
            env_text = env_file(env, "runtime_env").encode()
        except RecipeError as e:
            raise ValueError(str(e)) from None
        podman = self.engine.kind == "podman"

        def prepare(name: str) -> None:
            if podman:
                self.engine.create_secret(f"{name}-env", env_text)
            else:
                path = self._env_dir / f"{name}.env"
                path.unlink(missing_ok=True)
                path.touch(mode=0o444)  # readable by the job's user; the directory (700) keeps others out
                path.write_bytes(env_text)

        def cleanup(names: list[str]) -> None:
            if podman:
                self.engine.remove_secrets(f"{name}-env" for name in names)
            for name in names:
                (self._env_dir / f"{name}.env").unlink(missing_ok=True)

        def run_args(slot: int, name: str, port: int) -> list[str]:
            return self._run_args(spec, slot, name, port)

        return ContainerPlan(
            run_args=run_args, prepare=prepare, cleanup=cleanup, on_removed=self._image_maybe_unused
        )

    def _run_args(self, spec: RunSpec, slot: int, name: str, port: int) -> list[str]:
        labels = {
            LABEL_MANAGED: "true",
            LABEL_LIFECYCLE: self.lifecycle_id,
            LABEL_NAME: spec.job_name,
            LABEL_VERSION: spec.job_version,
            LABEL_DEPLOYMENT: str(spec.deployment_timestamp),
            LABEL_REPLICA: str(slot),
            LABEL_PORT: str(port),
        }
        args = ["--name", name, "--restart", self.settings.restart_policy]
        for key, value in labels.items():
            args += ["--label", f"{key}={value}"]
        env = {
            "JOB_NAME": spec.job_name,
            "JOB_VERSION": spec.job_version,
            "JOB_DEPLOYMENT_TIMESTAMP": str(spec.deployment_timestamp),
            "JOB_MANIFEST_YAML": spec.manifest_yaml,
        }
        network = self.settings.network
        if network == "host":
            args += ["--network", "host"]
            env.update(TRACKSIDE_JOB_HOST="127.0.0.1", TRACKSIDE_JOB_PORT=str(port))
        else:
            if network:
                args += ["--network", network]
            args += ["--publish", f"127.0.0.1:{port}:{CONTAINER_PORT}"]
            if self.engine.kind != "podman" and not self.settings.pub_url:
                args += ["--add-host", "host.docker.internal:host-gateway"]
        for key, value in env.items():
            args += ["--env", f"{key}={value}"]
        resources = spec.resources
        if resources.memory_max:
            args += ["--memory", str(resources.memory_max)]
        if resources.memory_min:
            args += ["--memory-reservation", str(resources.memory_min)]
        if resources.cpu_max:
            args += ["--cpus", f"{resources.cpu_max:g}"]
        if resources.cpu_min:
            args += ["--cpu-shares", str(max(2, int(resources.cpu_min * 1024)))]
        if self.engine.kind == "podman":
            args += [
                "--secret",
                f"{name}-env,type=mount,target={ENV_MOUNT},uid={JOB_USER_ID},gid={JOB_USER_ID},mode=0400",
            ]
        else:
            args += ["--volume", f"{self._env_dir / (name + '.env')}:{ENV_MOUNT}:ro"]
        assert spec.build.image is not None
        return [*args, spec.build.image]

    def _container_pub_url(self, pub_url: str) -> str:
        """The gateway as a container reaches it: the host's loopback is the container's own."""
        if self.settings.pub_url:
            return self.settings.pub_url
        if self.settings.network == "host":
            return pub_url
        parts = urlsplit(pub_url)
        host = parts.hostname or ""
        if host not in _LOOPBACK_HOSTS and f"[{host}]" not in _LOOPBACK_HOSTS:
            return pub_url
        alias = "host.containers.internal" if self.engine.kind == "podman" else "host.docker.internal"
        netloc = alias + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))

    def _image_maybe_unused(self, image: str) -> None:
        try:
            self._on_image_unused(image)
        except Exception:
            logger.exception("removing the unused image %s failed", image[:12])

    # ---- stopping ------------------------------------------------------------------------------

    def shutdown(self) -> None:
        self._keep_containers = not self.settings.stop_with_lifecycle
        self._stop_all(None)
        atexit.unregister(self.shutdown)

    def remove_unclaimed(self) -> int:
        """Remove the containers an earlier lifecycle left that nothing adopted (and the runtime
        env secrets of none of ours); how many containers went."""
        with self._lock:
            leftovers = [info for infos in self._adoptable.values() for info in infos.values()]
            self._adoptable.clear()
            ours = {n for running in self._generations.values() for g in running for n in g.container_names}
        names = [info.name for info in leftovers if info.name not in ours]
        self.engine.remove(names, self.supervision.stop_timeout)
        prefix = f"trackside-{self.lifecycle_id}-"
        if self.engine.kind == "podman":
            stale = [
                s for s in self.engine.secrets() if s.startswith(prefix) and s[: -len("-env")] not in ours
            ]
            self.engine.remove_secrets(stale)
        for path in self._env_dir.glob("*.env"):
            if path.name[: -len(".env")] not in ours:
                path.unlink(missing_ok=True)
        for image in {info.image for info in leftovers if info.name in names and info.labels.get(LABEL_NAME)}:
            self._image_maybe_unused(image)  # the builder removes only job images of its own
        if names:
            logger.warning(
                "removed %d container(s) left by an earlier lifecycle: %s", len(names), ", ".join(names)
            )
        return len(names)

    # ---- logs ----------------------------------------------------------------------------------

    def _version_containers(self, name: str, version: str) -> list[ContainerInfo]:
        return self.engine.containers(
            {LABEL_LIFECYCLE: self.lifecycle_id, LABEL_NAME: name, LABEL_VERSION: version}
        )

    def logs(self, name: str, version: str, tail: int) -> list[str]:
        if tail <= 0:
            return []
        merged: list[tuple[str, int, str]] = []
        for info in self._version_containers(name, version):
            prefix = f"[replica {info.labels.get(LABEL_REPLICA, '?')}] "
            for line in self.engine.logs(info.name, tail):
                stamp, _, text = line.partition(" ")
                merged.append((stamp, len(merged), prefix + text))
        events = self._log(name, version)
        if events is not None:
            with events.lock:
                merged += [(stamp, len(merged) + i, line) for i, (stamp, line) in enumerate(events.lines)]
        merged.sort()
        return [line for _, _, line in merged[-tail:]]

    def follow(self, name: str, version: str) -> Iterator[str]:
        events = self._log(name, version)
        if events is None:
            return iter(())
        lines: queue.Queue[str | None] = queue.Queue(_FOLLOW_BUFFER)
        with events.lock:
            events.followers.add(lines)
        return self._follow(name, version, events, lines)

    def _follow(
        self, name: str, version: str, events: _VersionEvents, lines: queue.Queue[str | None]
    ) -> Iterator[str]:
        readers: dict[str, object] = {}
        processes = []
        stop = threading.Event()
        first_round = True

        def pump(container: str, replica: str, tail: int | None) -> None:
            process = self.engine.follow_logs(container, tail)
            processes.append(process)
            assert process.stdout is not None
            prefix = f"[replica {replica}] "
            for raw in process.stdout:
                if stop.is_set():
                    break
                with contextlib.suppress(queue.Full):
                    lines.put_nowait(prefix + raw.rstrip("\n").partition(" ")[2])

        try:
            next_poll = 0.0
            while True:
                if time.monotonic() >= next_poll:
                    generations = self._running(name, version)
                    if not generations:
                        return
                    for generation in generations:
                        for slot, container in enumerate(generation.container_names):
                            if container in readers:
                                continue
                            # containers seen at subscription: new lines only; later ones: all
                            thread = threading.Thread(
                                target=pump,
                                args=(container, str(slot), 0 if first_round else None),
                                daemon=True,
                            )
                            readers[container] = thread
                            thread.start()
                    first_round = False
                    next_poll = time.monotonic() + _FOLLOW_POLL
                try:
                    line = lines.get(timeout=_FOLLOW_POLL)
                except queue.Empty:
                    continue
                if line is None:
                    return
                yield line
        finally:
            stop.set()
            with events.lock:
                events.followers.discard(lines)
            for process in processes:
                with contextlib.suppress(OSError):
                    process.kill()
