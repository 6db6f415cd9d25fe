"""Which lifecycle the CLI talks to, and as whom: `login`, `logout`, `remote set|alias|list`.

`connect(remote)` is how every command gets a client: the remote from `--remote` (URL or
alias), `$TRACKSIDE_REMOTE`, the config or http://127.0.0.1:7200, with its token.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from .exit_codes import CommandFailed, ExitCode
from .output import TracksideCommand, TracksideGroup

if TYPE_CHECKING:
    from trackside.client import LifecycleClient

REMOTE_HELP = "lifecycle URL or alias [default: $TRACKSIDE_REMOTE, else `trackside remote set`, else http://127.0.0.1:7200]"
RemoteOption = Annotated[
    str | None, typer.Option("--remote", "-r", help=REMOTE_HELP, show_default=False, metavar="URL|ALIAS")
]
JsonOption = Annotated[bool, typer.Option("--json", help="print JSON (see the shape above) instead of text")]


def connect(remote: str | None) -> LifecycleClient:
    """A client of the remote in use, with its token (from $TRACKSIDE_TOKEN or `trackside login`)."""
    from trackside.client import LifecycleClient
    from trackside.user_config import load_config

    config = load_config()
    resolved = config.resolve_remote(remote).remote
    return LifecycleClient(resolved, config.token_for(resolved))


def read_secret(what: str) -> str:
    """A hidden prompt on a terminal; otherwise the first line of stdin (for scripts)."""
    if sys.stdin is not None and sys.stdin.isatty():
        value = str(typer.prompt(what, hide_input=True))
    else:
        value = (sys.stdin.readline() if sys.stdin is not None else "").rstrip("\r\n")
    if not value.strip():
        raise CommandFailed(
            f"no {what.lower()} given (type it at the prompt, or pipe it to stdin)", ExitCode.USAGE
        )
    return value.strip()


# ---- login and logout --------------------------------------------------------------------------


def login(
    token: Annotated[
        str | None,
        typer.Argument(
            help="an API token (prompted for, or read from stdin, when left out)",
            show_default=False,
            metavar="TOKEN",
        ),
    ] = None,
    username: Annotated[
        str | None,
        typer.Option(
            "--username",
            "-u",
            help="log in with this user's password (prompted) instead of a token",
            metavar="USER",
        ),
    ] = None,
    remote: RemoteOption = None,
) -> None:
    """Log in to a lifecycle (token or password).

    The token is checked with the lifecycle and kept for that remote. With --username the password is prompted for (or read from stdin's first line) and
    exchanged for a new token. The token is stored in the config file (mode 600).

    Examples:
      trackside login "$(cat ~/.local/share/trackside/admin-token)"
      trackside login --username alice --remote https://trackside.example.com
      echo "$TOKEN" | trackside login --remote prod
    """
    from trackside.client import LifecycleClient, RemoteError
    from trackside.user_config import load_config

    config = load_config()
    target = config.resolve_remote(remote).remote
    if username is not None and token is not None:
        raise CommandFailed("give a TOKEN or --username, not both", ExitCode.USAGE)
    if username is not None:
        password = read_secret("Password")
        with LifecycleClient(target) as anonymous:
            try:
                token = anonymous.login(username, password)
            except RemoteError as e:
                if e.status == 401:
                    raise CommandFailed(f"login to {target.base} failed: {e.detail}", ExitCode.AUTH) from None
                raise
    elif token is None:
        token = read_secret("Token")
    with LifecycleClient(target, token) as client:
        try:
            identity = client.whoami()
        except RemoteError as e:
            if e.status == 401:
                raise CommandFailed(
                    f"the token was not accepted by {target.base}: {e.detail}", ExitCode.AUTH
                ) from None
            raise
    config.tokens[target.base] = token
    config.save()
    role = " (admin)" if identity.get("is_admin") else ""
    typer.echo(f"Logged in to {target.base} as {identity.get('subject', identity.get('username'))}{role}.")


def logout(remote: RemoteOption = None) -> None:
    """Forget the token kept for a remote.

    Example:
      trackside logout --remote prod
    """
    from trackside.user_config import TOKEN_ENV, load_config

    config = load_config()
    target = config.resolve_remote(remote).remote
    if config.tokens.pop(target.base, None) is None:
        typer.echo(f"Not logged in to {target.base}; nothing to forget.")
    else:
        config.save()
        typer.echo(f"Logged out of {target.base}.")
    if os.environ.get(TOKEN_ENV):
        from .output import warning

        warning(f"${TOKEN_ENV} is set and is still used for every remote")


# ---- remote set | alias | list ------------------------------------------------------------------


def set_remote(
    url: Annotated[
        str, typer.Argument(help="lifecycle URL (http(s)://HOST[:PORT]) or an alias", metavar="URL|ALIAS")
    ],
) -> None:
    """Make a remote the current one.

    It is used when neither --remote nor $TRACKSIDE_REMOTE is given.

    Examples:
      trackside remote set https://trackside.example.com
      trackside remote set prod
    """
    from trackside.user_config import load_config

    config = load_config()
    resolved = config.resolve_remote(url)
    config.remote = resolved.alias or resolved.remote.url
    config.save()
    named = f" ({resolved.alias})" if resolved.alias else ""
    typer.echo(f"Current remote: {resolved.remote.url}{named}")


def alias_remote(
    name: Annotated[str, typer.Argument(help="a short name, e.g. prod", metavar="NAME")],
    url: Annotated[
        str, typer.Argument(help="lifecycle URL, e.g. https://trackside.example.com", metavar="URL")
    ],
) -> None:
    """Give a remote a short name.

    The alias works wherever a remote URL does.

    Example:
      trackside remote alias prod https://trackside.example.com && trackside list --remote prod
    """
    from trackside.user_config import load_config

    config = load_config()
    remote = config.set_alias(name, url)
    config.save()
    typer.echo(f"{name} → {remote.url}")


def list_remotes(remote: RemoteOption = None, as_json: JsonOption = False) -> None:
    """List the known remotes.

    Aliases, the current remote (marked *) and the remotes logged in to.

    JSON shape:
      {"current": {"url", "alias", "source": "option|env|config|default", "token": "env|config|null"},
       "remotes": [{"alias", "url", "current", "logged_in"}]}

    Example:
      trackside remote list --json
    """
    from trackside.user_config import TOKEN_ENV, Remote, load_config

    from .output import print_json, print_table

    config = load_config()
    current = config.resolve_remote(remote)
    token_source = (
        "env" if os.environ.get(TOKEN_ENV) else "config" if current.remote.base in config.tokens else None
    )
    rows: dict[str, dict[str, Any]] = {}

    def add(url: str, alias: str | None) -> None:
        parsed = Remote.parse(url)
        entry = rows.setdefault(
            parsed.base,
            {
                "alias": None,
                "url": parsed.url,
                "current": parsed.base == current.remote.base,
                "logged_in": parsed.base in config.tokens,
            },
        )
        if alias and entry["alias"] is None:
            entry["alias"], entry["url"] = alias, parsed.url

    add(current.remote.url, current.alias)
    for alias, url in sorted(config.aliases.items()):
        add(url, alias)
    for base in sorted(config.tokens):
        add(base, None)
    if as_json:
        print_json(
            {
                "current": {
                    "url": current.remote.url,
                    "alias": current.alias,
                    "source": current.source,
                    "token": token_source,
                },
                "remotes": list(rows.values()),
            }
        )
        return
    print_table(
        ["", "ALIAS", "URL", "LOGGED IN"],
        [
            ["*" if r["current"] else "", r["alias"] or "", r["url"], "yes" if r["logged_in"] else "no"]
            for r in rows.values()
        ],
    )


def register(app: typer.Typer) -> None:
    app.command(cls=TracksideCommand)(login)
    app.command(cls=TracksideCommand)(logout)
    remote_app = typer.Typer(
        cls=TracksideGroup,
        help="Choose the lifecycle the CLI talks to.\n\nExamples:\n  trackside remote alias prod https://trackside.example.com\n  trackside remote set prod\n  trackside remote list",
        no_args_is_help=True,
    )
    remote_app.command("set", cls=TracksideCommand)(set_remote)
    remote_app.command("alias", cls=TracksideCommand)(alias_remote)
    remote_app.command("list", cls=TracksideCommand)(list_remotes)
    app.add_typer(remote_app, name="remote")
