"""The Typer application: every command module registers its commands here."""

from __future__ import annotations

import typer

from . import about, admin, build, deploy, dev, jobs, output, platform, remotes

# each module has `register(app)`; keep the list short and the modules light (see the package doc)
COMMAND_MODULES = (output, platform, dev, deploy, build, jobs, remotes, admin, about)


def build_app() -> typer.Typer:
    app = typer.Typer(
        name="trackside",
        help="Trackside: turn a Python class into an authenticated web service.",
        no_args_is_help=True,
        rich_markup_mode="rich",
        context_settings={"help_option_names": ["-h", "--help"]},
        pretty_exceptions_enable=False,
    )
    for module in COMMAND_MODULES:
        module.register(app)
    return app
