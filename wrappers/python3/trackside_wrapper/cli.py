"""`python -m trackside_wrapper run JOB_DIR [--host H] [--port P] [--reload]`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import __version__


def _size(text: str) -> int:
    units = {"k": 1024, "m": 1024**2, "g": 1024**3}
    t = text.strip().lower().removesuffix("ib").removesuffix("b")
    try:
        if t and t[-1] in units:
            return int(float(t[:-1]) * units[t[-1]])
        return int(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (examples: 1048576, 512k, 16M)") from None


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

    serve(args.job_dir, args.host, args.port, reload=args.reload, max_body_size=args.max_body_size)


if __name__ == "__main__":
    main(sys.argv[1:])
