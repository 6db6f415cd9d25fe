"""The `trackside` command (Typer + Rich).

Startup time matters (`trackside --help` and `trackside list` in ≤ 300 ms): command modules import
only Typer at module level; httpx, Rich tables, the manifest model and the platform are imported
inside the commands that use them.
"""

from __future__ import annotations

import sys

from .exit_codes import CommandFailed, ExitCode


def main(argv: list[str] | None = None) -> None:
    from .app import build_app

    app = build_app()
    try:
        app(args=sys.argv[1:] if argv is None else argv, prog_name="trackside", standalone_mode=True)
    except CommandFailed as failure:  # raised outside a command (commands get it handled by app)
        print(f"Error: {failure}", file=sys.stderr)
        sys.exit(failure.exit_code)


__all__ = ["CommandFailed", "ExitCode", "main"]
