"""`python -m trackside_wrapper run JOB_DIR [--host H] [--port P] [--reload]`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import __version__
from .body_limit import parse_size


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m trackside_wrapper", description="Serve a Trackside/Racetrack python3 job over HTTP."
    )
    parser.add_argument("--version", action="version", version=f"trackside-wrapper {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser(
        "run",
        help="serve the job in JOB_DIR",
        description="Serve the job in JOB_DIR (manifest: $JOB_MANIFEST_YAML or JOB_DIR/job.yaml).",
    )
    run.add_argument("job_dir", metavar="JOB_DIR", type=Path)
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--port", type=int, default=7000)
    run.add_argument("--reload", action="store_true", help="restart the job when its files change")
    run.add_argument(
        "--max-body-size",
        type=_size,
        default=None,
        help="largest request body accepted (default 16M, or $TRACKSIDE_MAX_BODY_SIZE)",
    )
    args = parser.parse_args(argv)
    if not args.job_dir.is_dir():
        parser.error(f"JOB_DIR {str(args.job_dir)!r} is not a directory")
    from .server import serve

    try:
        serve(args.job_dir, args.host, args.port, reload=args.reload, max_body_size=args.max_body_size)
    except ValueError as e:  # a bad setting in the environment, found before serving
        parser.exit(2, f"error: {e}\n")


if __name__ == "__main__":
    main(sys.argv[1:])
