"""Embedded runner: jobs as supervised `python -m trackside_wrapper run` processes on loopback.

Each replica is its own process group on a free port. The job sees only a minimal environment
(`inherit_env` of the lifecycle's, by default PATH, HOME, LANG, TMPDIR) plus the spec's env and
the reserved variables, so nothing of the platform's own configuration or secrets leaks into it.

Logs: everything the replicas of one version print goes to `log_dir/<name>/<version>.log`, one
line per line, prefixed with `[replica N]` (N numbers the replicas of the version, across
generations), interleaved with the runner's own `[runner]` lines (starts, exits, restarts).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import queue
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from .generations import Generations
from .process_registry import ProcessRegistry
from .process_supervisor import Generation, PortAllocator, SupervisionSettings
from .runner import RunSpec

DEFAULT_INHERITED_ENV = ("PATH", "HOME", "LANG", "TMPDIR")
DEFAULT_MAX_LOG_BYTES = 50 * 1024 * 1024
_FOLLOW_BUFFER = 10_000


class VersionLog:
    """The log file of one version plus the followers waiting for its new lines."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._path = path
        self._max_bytes = max_bytes
        self._file = open(path, "a", encoding="utf-8", errors="replace", buffering=1)  # noqa: SIM115
        self._lock = threading.Lock()
        self._followers: set[queue.Queue[str | None]] = set()
        self._next_slot = 0
        self.closed = False

    def slots(self, count: int) -> list[int]:
        with self._lock:
            first, self._next_slot = self._next_slot, self._next_slot + count
        return list(range(first, first + count))

    def write(self, line: str) -> None:
        with self._lock:
            if self.closed:
                return
            self._file.write(line + "\n")
            if self._file.tell() > self._max_bytes:
                self._rotate()
            for follower in self._followers:
                # a follower that stopped reading loses lines, the runner does not grow
                with contextlib.suppress(queue.Full):
                    follower.put_nowait(line)

    def _rotate(self) -> None:
        """Keep one previous file (`<version>.log.1`), so a chatty job cannot fill the disk."""
        self._file.close()
        os.replace(self._path, self._path.with_name(self._path.name + ".1"))
        self._file = open(self._path, "a", encoding="utf-8", errors="replace", buffering=1)  # noqa: SIM115

    def event(self, text: str) -> None:
        self.write(f"[runner] {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {text}")

    def follow(self) -> Iterator[str]:
        """Lines written from now on (subscribed at once, before the first `next`)."""
        lines: queue.Queue[str | None] = queue.Queue(_FOLLOW_BUFFER)
        with self._lock:
            if self.closed:
                return iter(())
            self._followers.add(lines)
        return self._drain(lines)

    def _drain(self, lines: queue.Queue[str | None]) -> Iterator[str]:
        try:
            while (line := lines.get()) is not None:
                yield line
        finally:
            with self._lock:
                self._followers.discard(lines)

    def close(self) -> None:
        with self._lock:
            if self.closed:
                return
            self.closed = True
            self._file.close()
            for follower in self._followers:
                while True:
                    try:
                        follower.put_nowait(None)
                        break
                    except queue.Full:
                        follower.get_nowait()


def _tail(path: Path, count: int) -> list[str]:
    """The last `count` lines of a file, reading it backwards in blocks."""
    if count <= 0 or not path.is_file():
        return []
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        position = f.tell()
        data = b""
        while position > 0 and data.count(b"\n") <= count:
            step = min(65536, position)
            position -= step
            f.seek(position)
            data = f.read(step) + data
    lines = data.decode("utf-8", errors="replace").splitlines()
    return lines[-count:]


class LocalRunner(Generations[Generation, VersionLog]):
    def __init__(
        self,
        log_dir: Path,
        host: str = "127.0.0.1",
        settings: SupervisionSettings | None = None,
        inherit_env: Iterable[str] = DEFAULT_INHERITED_ENV,
        max_log_bytes: int = DEFAULT_MAX_LOG_BYTES,
    ) -> None:
        super().__init__()
        self.log_dir = log_dir.resolve()
        self.host = host
        self.settings = settings or SupervisionSettings()
        self.inherit_env = tuple(inherit_env)
        self.max_log_bytes = max_log_bytes
        self._ports = PortAllocator(host)
        # processes a lifecycle that died left behind would hold memory and ports for ever
        self.registry = ProcessRegistry(self.log_dir / ".processes")
        self.orphans_reaped = self.registry.reap()
        atexit.register(self.shutdown)

    # ---- starting ------------------------------------------------------------------------------

    def start(self, spec: RunSpec) -> None:
        if spec.replicas < 1:
            raise ValueError(f"replicas must be at least 1, got {spec.replicas}")
        log_path = self._log_path(spec.job_name, spec.job_version)

        def new_generation(log: VersionLog) -> Generation:
            return Generation(
                spec,
                self._job_env(spec),
                self.host,
                self._ports,
                log,
                log.slots(spec.replicas),
                self.settings,
                self.registry,
            )

        added = self._add(spec, lambda: VersionLog(log_path, self.max_log_bytes), new_generation)
        if added is None:
            return
        log, generation = added
        log.event(f"deployment {spec.deployment_timestamp}: starting {spec.replicas} replica(s)")
        generation.start()

    def _job_env(self, spec: RunSpec) -> dict[str, str]:
        env = {name: os.environ[name] for name in self.inherit_env if name in os.environ}
        env["PYTHONUNBUFFERED"] = "1"  # print() in a job reaches the log at once
        env.update(spec.env)
        env.update(
            JOB_NAME=spec.job_name,
            JOB_VERSION=spec.job_version,
            JOB_DEPLOYMENT_TIMESTAMP=str(spec.deployment_timestamp),
            JOB_MANIFEST_YAML=spec.manifest_yaml,
        )
        return env

    # ---- stopping ------------------------------------------------------------------------------

    def shutdown(self) -> None:
        self._stop_all("stopped (runner shut down)")
        atexit.unregister(self.shutdown)

    # ---- logs ----------------------------------------------------------------------------------

    def logs(self, name: str, version: str, tail: int) -> list[str]:
        path = self._log_path(name, version)
        lines = _tail(path, tail)
        if len(lines) < tail:  # just rotated: the rest is in the previous file
            lines = _tail(path.with_name(path.name + ".1"), tail - len(lines)) + lines
        return lines

    def follow(self, name: str, version: str) -> Iterator[str]:
        log = self._log(name, version)
        if log is None:
            return iter(())
        return log.follow()

    def _log_path(self, name: str, version: str) -> Path:
        for part in (name, version):
            if not part or part in (".", "..") or "/" in part or "\0" in part:
                raise ValueError(f"{part!r} cannot name a log file")
        return self.log_dir / name / f"{version}.log"
