"""Job processes on record, so that a lifecycle that died (SIGKILL, power cut) leaves no orphans.

Each process the runner starts gets a file named after its pid holding the kernel's start time of
that pid; the next runner kills the recorded process groups still alive and matching (a pid the
kernel has given to another process since has another start time and is left alone).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from pathlib import Path

logger = logging.getLogger("trackside.lifecycle.runner")


def _start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # field 22 (starttime); the command name in field 2 may contain spaces, so count from ')'
    return stat.rsplit(")", 1)[1].split()[19]


class ProcessRegistry:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def record(self, pid: int) -> None:
        started = _start_time(pid)
        if started is not None:
            (self.directory / str(pid)).write_text(started)

    def forget(self, pid: int) -> None:
        (self.directory / str(pid)).unlink(missing_ok=True)

    def reap(self, grace: float = 5.0) -> int:
        """Stop every recorded process group that is still alive; how many there were."""
        alive: list[int] = []
        for entry in self.directory.iterdir():
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            if _start_time(pid) == entry.read_text().strip():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGTERM)
                    alive.append(pid)
            else:
                entry.unlink(missing_ok=True)
        deadline = time.monotonic() + grace
        while alive and time.monotonic() < deadline:
            alive = [pid for pid in alive if _start_time(pid) is not None and not _is_zombie(pid)]
            time.sleep(0.05)
        for pid in alive:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        reaped = 0
        for entry in list(self.directory.iterdir()):
            if entry.name.isdigit():
                entry.unlink(missing_ok=True)
                reaped += 1
        if reaped:
            logger.warning("stopped %d job process(es) left running by an earlier lifecycle", reaped)
        return reaped


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return False
