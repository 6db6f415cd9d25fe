"""The CLI's exit codes, and the exception a command raises to end with one."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1  # the operation failed (deploy error, server error, unreachable remote)
    USAGE = 2  # bad arguments or input (also what Click uses for usage errors)
    NOT_FOUND = 3  # no such job, version, deployment, user, ESC ...
    AUTH = 4  # not logged in, bad token, no permission


class CommandFailed(Exception):
    """End the command with `exit_code`; the message is printed to stderr as `Error: ...`."""

    def __init__(self, message: str, exit_code: ExitCode = ExitCode.FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code
