"""The container engine as the lifecycle uses it: the `podman` or `docker` CLI, run as a subprocess.

Every call has a timeout and turns a failure into `EngineError` with the engine's own message.
Values that are secret never appear on a command line: they go through stdin (podman secrets) or
files of mode 600 in a private directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from trackside_wrapper.job_image import ContainerEngine

from .streamed_command import run_streamed

DEFAULT_TIMEOUT = 120.0


class EngineError(Exception):
    """The engine refused or failed a command; the message holds what it said."""


@dataclass(frozen=True)
class ContainerInfo:
    """What the runner needs of `inspect` for one container."""

    id: str
    name: str
    status: str  # created, running, restarting, paused, exited, stopped, dead ...
    running: bool
    restarting: bool
    pid: int
    exit_code: int
    restart_count: int
    started_at: str
    image: str
    labels: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_inspect(cls, data: Mapping[str, Any]) -> ContainerInfo:
        state = data.get("State") or {}
        config = data.get("Config") or {}
        return cls(
            id=str(data.get("Id", "")),
            name=str(data.get("Name", "")).lstrip("/"),
            status=str(state.get("Status", "")).lower(),
            running=bool(state.get("Running")),
            restarting=bool(state.get("Restarting")),
            pid=int(state.get("Pid") or 0),
            exit_code=int(state.get("ExitCode") or 0),
            restart_count=int(data.get("RestartCount") or 0),
            started_at=str(state.get("StartedAt", "")),
            image=str(data.get("Image", "")).removeprefix("sha256:"),
            labels=dict(config.get("Labels") or {}),
        )


class EngineCli:
    def __init__(self, engine: ContainerEngine, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.engine = engine
        self.timeout = timeout

    @property
    def kind(self) -> str:
        return self.engine.kind

    @property
    def name(self) -> str:
        return self.engine.name

    # ---- running the CLI -----------------------------------------------------------------------

    def run(
        self,
        args: Iterable[str],
        *,
        stdin: bytes | None = None,
        timeout: float | None = None,
        env: Mapping[str, str] | None = None,
    ) -> str:
        """Run `engine ARGS`; its stdout. EngineError when it fails."""
        command = [self.engine.path, *args]
        try:
            done = subprocess.run(
                command,
                input=stdin,
                capture_output=True,
                timeout=timeout or self.timeout,
                env={**os.environ, **(env or {})},
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise EngineError(
                f"{self.name} {command[1]} did not finish within {timeout or self.timeout:.0f} s"
            ) from None
        except OSError as e:
            raise EngineError(f"cannot run {self.engine.path}: {e}") from None
        if done.returncode != 0:
            message = (done.stderr or done.stdout).decode(errors="replace").strip()
            raise EngineError(message.splitlines()[-1] if message else f"{self.name} {command[1]} failed")
        return done.stdout.decode(errors="replace")

    def stream(
        self,
        command: list[str],
        env: Mapping[str, str],
        log: Callable[[str], None],
        scrub: Callable[[str], str],
    ) -> tuple[int, list[str]]:
        """Run a full command line (e.g. a build), passing its output line by line, scrubbed, to
        `log`; the exit code and the last lines."""
        return run_streamed(command, {**os.environ, **env}, log, scrub)

    # ---- images --------------------------------------------------------------------------------

    def image_id(self, reference: str) -> str | None:
        """The id of a local image, None when there is none."""
        try:
            out = self.run(["image", "inspect", "--format", "{{.Id}}", reference])
        except EngineError:
            return None
        return out.strip().removeprefix("sha256:") or None

    def image_tags(self, image: str) -> list[str]:
        try:
            out = self.run(["image", "inspect", "--format", "{{json .RepoTags}}", image])
        except EngineError:
            return []
        tags = json.loads(out or "null") or []
        return [str(t) for t in tags]

    def image_labels(self, image: str) -> dict[str, str] | None:
        """The labels of a local image, None when there is no such image."""
        try:
            out = self.run(["image", "inspect", "--format", "{{json .Config.Labels}}", image])
        except EngineError:
            return None
        labels = json.loads(out or "null") or {}
        return {str(k): str(v) for k, v in labels.items()}

    def remove_image(self, image: str) -> bool:
        """Remove a local image unless a container uses it; whether it is gone. Its untagged
        parents stay: they are the engine's layer cache (and another build may be using them)."""
        try:
            self.run(["rmi", "--no-prune", image])
        except EngineError:
            return self.image_id(image) is None
        return True

    def push(self, tag: str, auth_config: str | None) -> None:
        """Push `tag`; `auth_config`: a directory holding the credentials (config.json / auth.json)."""
        env = {}
        if auth_config is not None:
            env = {
                "DOCKER_CONFIG": auth_config,
                "REGISTRY_AUTH_FILE": os.path.join(auth_config, "config.json"),
            }
        self.run(["push", tag], env=env, timeout=max(self.timeout, 600))

    # ---- containers ----------------------------------------------------------------------------

    def run_container(self, args: list[str]) -> str:
        """`run --detach ARGS`; the new container's id."""
        return self.run(["run", "--detach", *args]).strip()

    def inspect(self, names: Iterable[str]) -> dict[str, ContainerInfo]:
        """The containers among `names` that exist, by name."""
        names = list(names)
        if not names:
            return {}
        try:
            out = self.run(["container", "inspect", *names])
        except EngineError:
            # one missing name fails the whole call: ask one by one
            if len(names) == 1:
                return {}
            found: dict[str, ContainerInfo] = {}
            for name in names:
                found.update(self.inspect([name]))
            return found
        infos = [ContainerInfo.from_inspect(item) for item in json.loads(out or "[]") or []]
        return {info.name: info for info in infos}

    def containers(self, labels: Mapping[str, str]) -> list[ContainerInfo]:
        """Every container (running or not) carrying all of `labels`."""
        filters = [f"--filter=label={key}={value}" for key, value in labels.items()]
        ids = self.run(["ps", "--all", "--quiet", "--no-trunc", *filters]).split()
        if not ids:
            return []
        try:
            out = self.run(["container", "inspect", *ids])
        except EngineError:  # one went away meanwhile
            return [info for i in ids for info in self.inspect([i]).values()]
        return [ContainerInfo.from_inspect(item) for item in json.loads(out or "[]") or []]

    def start(self, name: str) -> None:
        self.run(["start", name])

    def restart(self, name: str, grace: float) -> None:
        self.run(["restart", "--time", str(max(int(grace), 0)), name], timeout=grace + self.timeout)

    def remove(self, names: list[str], grace: float) -> None:
        """Stop (SIGTERM, SIGKILL after `grace` seconds) and remove containers; missing ones are fine."""
        if not names:
            return
        with contextlib.suppress(EngineError):
            self.run(["stop", "--time", str(max(int(grace), 0)), *names], timeout=grace + self.timeout)
        for name in names:
            with contextlib.suppress(EngineError):
                self.run(["rm", "--force", name])

    def discard(self, name: str) -> None:
        """Remove a container at once, if there is one of that name."""
        with contextlib.suppress(EngineError):
            self.run(["rm", "--force", name])

    def logs(self, name: str, tail: int | None) -> list[str]:
        """The container's output with the engine's timestamps, oldest first. Both streams: the CLI
        writes what the container wrote to stderr (tracebacks, uvicorn's log) to its own stderr."""
        args = [self.engine.path, "logs", "--timestamps"]
        if tail is not None:
            args += ["--tail", str(tail)]
        try:
            done = subprocess.run(
                [*args, name],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                timeout=self.timeout,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return []
        if done.returncode != 0:
            return []
        return done.stdout.decode(errors="replace").splitlines()

    def follow_logs(self, name: str, tail: int | None) -> subprocess.Popen[str]:
        """A process printing the container's output as it comes: the last `tail` lines first
        (None: all of it)."""
        args = [self.engine.path, "logs", "--follow", "--timestamps"]
        if tail is not None:
            args += ["--tail", str(tail)]
        return subprocess.Popen(
            [*args, name],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            bufsize=1,
        )

    # ---- secrets (podman) --------------------------------------------------------------------

    def create_secret(self, name: str, data: bytes) -> None:
        """A podman secret holding `data` (read from stdin, never a command line); replaces one of
        the same name."""
        with contextlib.suppress(EngineError):
            self.run(["secret", "rm", name])
        self.run(["secret", "create", name, "-"], stdin=data)

    def remove_secrets(self, names: Iterable[str]) -> None:
        for name in names:
            with contextlib.suppress(EngineError):
                self.run(["secret", "rm", name])

    def secrets(self) -> list[str]:
        try:
            out = self.run(["secret", "ls", "--format", "{{.Name}}"])
        except EngineError:
            return []
        return out.split()
