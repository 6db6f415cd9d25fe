"""The real `trackside` entry point (`python -m trackside ...`) as a subprocess, with a config
directory of its own: what a user types and what they see (exit code, stdout, stderr).

`Cli.run` has no terminal (stdin empty unless `input` is given, outputs captured); `Cli.terminal`
runs the command on a pseudo-terminal that is its controlling terminal, answering prompts.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import selectors
import signal
import subprocess
import sys
import termios
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.conftest import REPO

# what the user's own environment must not bring into a test
_ISOLATED = ("TRACKSIDE_REMOTE", "TRACKSIDE_TOKEN", "NO_COLOR", "FORCE_COLOR", "COLUMNS", "XDG_CONFIG_HOME")


@dataclass(frozen=True)
class Result:
    rc: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)

    def __str__(self) -> str:
        return f"exit {self.rc}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"


class Cli:
    def __init__(self, config_home: Path, remote: str | None = None, token: str | None = None) -> None:
        self.config_home = config_home
        self.env = {k: v for k, v in os.environ.items() if k not in _ISOLATED}
        self.env.update({"XDG_CONFIG_HOME": str(config_home), "PYTHONUNBUFFERED": "1"})
        if remote is not None:
            self.env["TRACKSIDE_REMOTE"] = remote
        if token is not None:
            self.env["TRACKSIDE_TOKEN"] = token

    @property
    def config_file(self) -> Path:
        return self.config_home / "trackside" / "config.yaml"

    def command(self, args: Sequence[str]) -> list[str]:
        return [sys.executable, "-m", "trackside", *args]

    def environment(self, env: Mapping[str, str | None] | None) -> dict[str, str]:
        merged = dict(self.env)
        for key, value in (env or {}).items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        return merged

    def run(
        self,
        *args: str,
        input: str | None = None,
        env: Mapping[str, str | None] | None = None,
        cwd: Path | None = None,
        timeout: float = 240,
    ) -> Result:
        """Run and wait; `env` adds variables (None removes one)."""
        done = subprocess.run(
            self.command(args),
            input=input if input is not None else "",
            capture_output=True,
            text=True,
            env=self.environment(env),
            cwd=cwd or REPO,
            timeout=timeout,
            start_new_session=True,  # no controlling terminal: prompts cannot reach the real one
            check=False,
        )
        return Result(done.returncode, done.stdout, done.stderr)

    def start(
        self, *args: str, env: Mapping[str, str | None] | None = None, cwd: Path | None = None
    ) -> subprocess.Popen[str]:
        """Start without waiting (stdout and stderr are pipes); the caller ends it."""
        return subprocess.Popen(
            self.command(args),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.environment(env),
            cwd=cwd or REPO,
            start_new_session=True,
        )

    def terminal(
        self,
        *args: str,
        replies: Sequence[tuple[str, str]] = (),
        env: Mapping[str, str | None] | None = None,
        timeout: float = 90,
    ) -> Result:
        """Run on a pseudo-terminal (stdin, stdout and stderr, and the controlling terminal):
        each (prompt, answer) of `replies` is typed once `prompt` has been shown. Everything the
        command showed is in `stdout`.

        A hidden prompt shows "Password:" before it turns echo off (and flushes what was typed),
        then " ": wait for "Password: ", not "Password:"."""
        master, slave = pty.openpty()
        process = subprocess.Popen(
            self.command(args),
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=self.environment({"TERM": "xterm", "COLUMNS": "120", **(env or {})}),
            cwd=REPO,
            start_new_session=True,
            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
        )
        os.close(slave)
        output = b""
        answered = 0  # bytes of output already answered
        pending = list(replies)
        deadline = time.monotonic() + timeout
        try:
            while True:
                ready, _, _ = select.select([master], [], [], 0.1)
                if ready:
                    try:
                        chunk = os.read(master, 65536)
                    except OSError:  # EIO: the command closed the terminal
                        break
                    if not chunk:
                        break
                    output += chunk
                    if pending and pending[0][0].encode() in output[answered:]:
                        os.write(master, pending.pop(0)[1].encode() + b"\r")
                        answered = len(output)
                elif process.poll() is not None:
                    break
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"{args} did not end within {timeout}s:\n{output.decode(errors='replace')}"
                    )
            rc = process.wait(timeout=30)
        finally:
            os.close(master)
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        return Result(rc, output.decode("utf-8", "replace").replace("\r\n", "\n"), "")


def read_until(process: subprocess.Popen[str], text: str, timeout: float = 30) -> str:
    """stdout of `process` up to the first line containing `text`."""
    assert process.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    seen = ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if selector.select(timeout=0.2):
            line = process.stdout.readline()
            if not line:
                break
            seen += line
            if text in line:
                return seen
    raise AssertionError(f"{text!r} not printed within {timeout}s; got:\n{seen}")
