"""`trackside version`: what is installed."""

from __future__ import annotations

import typer

from .output import TracksideCommand


def version() -> None:
    """Print the versions of the CLI, the job runtime and Python.

    Example:
      trackside version
    """
    import platform
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    from trackside import __version__

    try:
        wrapper = installed("trackside-wrapper")
    except PackageNotFoundError:
        wrapper = "not installed"
    print(f"trackside {__version__}")
    print(f"trackside-wrapper {wrapper}")
    print(f"Python {platform.python_version()} ({platform.python_implementation()})")


def register(app: typer.Typer) -> None:
    app.command(cls=TracksideCommand)(version)
