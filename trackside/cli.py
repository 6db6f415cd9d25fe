"""The `trackside` command. For now only `up`; the full CLI (Typer) comes with its own issue."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import __version__


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="trackside", description="Trackside: Python classes as web services."
    )
    parser.add_argument("--version", action="version", version=f"trackside {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="run the platform in this process")
    up.add_argument("--port", type=int, default=7200)
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="where jobs, environments and the database live (default $TRACKSIDE_DATA_DIR "
        "or ~/.local/share/trackside)",
    )
    args = parser.parse_args(argv)
    if args.command == "up":
        from .embedded import up as run_up

        run_up(args.port, args.data_dir, args.host)


if __name__ == "__main__":
    main(sys.argv[1:])
