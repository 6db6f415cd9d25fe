"""Running a command (a build step) while passing its output on line by line, as it comes, with
secret values masked."""

from __future__ import annotations

import subprocess
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

TAIL_LINES = 60
MIN_REDACTED_LENGTH = 4  # shorter values would mask ordinary words


class Redactor:
    """Masks secret values (e.g. build variables) in output lines: `redact(line)`."""

    def __init__(self, values: Iterable[str]) -> None:
        self._values = sorted({v for v in values if len(v) >= MIN_REDACTED_LENGTH}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for value in self._values:
            text = text.replace(value, "****")
        return text


def run_streamed(
    command: list[str],
    env: Mapping[str, str],
    log: Callable[[str], None],
    scrub: Callable[[str], str],
    cwd: Path | None = None,
) -> tuple[int, list[str]]:
    """Run `command` (stdout and stderr together) with exactly `env`, passing each line of its
    output, scrubbed, to `log`; the exit code and the last lines. The process is killed when
    `log` raises."""
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=cwd,
        text=True,
        errors="replace",
        bufsize=1,
    )
    try:
        assert process.stdout is not None
        for raw in process.stdout:
            line = scrub(raw.rstrip("\n"))
            tail.append(line)
            log(line)
        return process.wait(), list(tail)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
