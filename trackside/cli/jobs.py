"""Deployed jobs: `list`, `status`, `logs`, `build-logs`, `delete` and `call`."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from .exit_codes import CommandFailed, ExitCode
from .output import TracksideCommand
from .remotes import JsonOption, RemoteOption, connect

if TYPE_CHECKING:
    from trackside.client import Job, LifecycleClient

NameArgument = Annotated[str, typer.Argument(help="the job's name", metavar="NAME", show_default=False)]
VersionOption = Annotated[
    str, typer.Option("--version", help="exact version, `latest` or a wildcard like 1.x", metavar="VERSION")
]

STATUS_STYLES = {
    "STATUS": {"running": "green", "starting": "yellow", "error": "red", "lost": "red", "stopped": "dim"},
    "status": {"running": "green", "starting": "yellow", "error": "red", "lost": "red", "stopped": "dim"},
}

# the fields of a job in `list --json` (and `status --json`, which adds JOB_DETAIL_FIELDS)
JOB_FIELDS = (
    "name",
    "version",
    "status",
    "error",
    "owner_email",
    "deployed_by",
    "infrastructure_target",
    "replicas",
    "create_time",
    "update_time",
    "last_call_time",
    "pub_url",
)
JOB_DETAIL_FIELDS = ("deployment_id", "labels", "manifest")


def job_json(client: LifecycleClient, job: Job, fields: tuple[str, ...] = JOB_FIELDS) -> dict[str, Any]:
    shown: dict[str, Any] = {field: job.get(field) for field in fields}
    shown["pub_url"] = client.job_url(job["name"], job["version"])
    return shown


# ---- list and status ------------------------------------------------------------------------------


def list_jobs(remote: RemoteOption = None, as_json: JsonOption = False) -> None:
    """List every deployed job version.

    JSON shape: a list of
      {"name", "version", "status": "starting|running|error|lost|stopped", "error",
       "owner_email", "deployed_by", "infrastructure_target", "replicas",
       "create_time", "update_time", "last_call_time" (Unix seconds or null), "pub_url"}

    Examples:
      trackside list
      trackside list --json | jq -r '.[] | select(.status != "running") | .name'
    """
    with connect(remote) as client:
        jobs = sorted(client.list_jobs(), key=lambda j: j.get("name", ""))
        if as_json:
            from .output import print_json

            print_json([job_json(client, job) for job in jobs])
            return
        from .output import ago, print_table, say

        if not jobs:
            say(f"No jobs on {client.remote.base} yet; deploy one with `trackside deploy DIR`.")
            return
        columns = ["NAME", "VERSION", "STATUS", "DEPLOYED BY", "UPDATED", "URL"]
        if any(job.get("error") for job in jobs):
            columns.append("ERROR")
        rows = []
        for job in jobs:
            row = [
                job["name"],
                job["version"],
                job.get("status", "?"),
                job.get("deployed_by") or "-",
                ago(job.get("update_time")),
                client.job_url(job["name"], job["version"]),
            ]
            if len(columns) > 6:
                row.append(_one_line(job.get("error") or ""))
            rows.append(row)
        print_table(columns, rows, STATUS_STYLES)


def _one_line(text: str, limit: int = 80) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def status(
    name: NameArgument,
    version: VersionOption = "latest",
    remote: RemoteOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show one job version: status, error, who deployed it, its URL.

    JSON shape: the fields of `trackside list --json` plus
      {"deployment_id", "labels": {...}, "manifest": {...}}

    Examples:
      trackside status adder
      trackside status adder --version 0.0.1 --json
    """
    with connect(remote) as client:
        job = client.job(name, version)
        if as_json:
            from .output import print_json

            print_json(job_json(client, job, JOB_FIELDS + JOB_DETAIL_FIELDS))
            return
        from .output import ago, local_time, print_fields

        fields = [
            ("name", job["name"]),
            ("version", job["version"]),
            ("status", job.get("status", "?")),
        ]
        if job.get("error"):
            fields.append(("error", str(job.get("error"))))
        fields += [
            ("url", client.job_url(job["name"], job["version"])),
            ("owner", job.get("owner_email") or "-"),
            ("deployed by", job.get("deployed_by") or "-"),
            ("deployed", f"{local_time(job.get('create_time'))} ({ago(job.get('create_time'))})"),
            ("updated", f"{local_time(job.get('update_time'))} ({ago(job.get('update_time'))})"),
            ("last call", ago(job.get("last_call_time")) if job.get("last_call_time") else "never"),
            ("replicas", str(job.get("replicas", "-"))),
            ("runs on", job.get("infrastructure_target") or "-"),
            ("deployment", job.get("deployment_id") or "-"),
        ]
        labels = job.get("labels") or {}
        if labels:
            fields.append(("labels", ", ".join(f"{k}={v}" for k, v in sorted(labels.items()))))
        print_fields(fields, STATUS_STYLES)


# ---- logs -----------------------------------------------------------------------------------------


def logs(
    name: NameArgument,
    version: VersionOption = "latest",
    tail: Annotated[
        int,
        typer.Option("--tail", "-n", min=0, help="lines of history to show (0: all; with --follow: none)"),
    ] = 100,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="keep printing new lines (Ctrl-C stops)")
    ] = False,
    remote: RemoteOption = None,
    as_json: JsonOption = False,
) -> None:
    """Print a job's log (its output while it runs).

    JSON shape (not with --follow): {"name", "version", "lines": ["...", ...]}

    Examples:
      trackside logs adder --tail 20
      trackside logs adder --version 0.0.1 --follow
    """
    if follow and as_json:
        raise CommandFailed("--json and --follow do not go together", ExitCode.USAGE)
    with connect(remote) as client:
        if follow:
            _follow(client, name, version, tail)
            return
        text = client.job_logs(name, version, tail)
        if as_json:
            from .output import print_json

            job = client.job(name, version)
            print_json({"name": job["name"], "version": job["version"], "lines": text.splitlines()})
            return
        if text:
            sys.stdout.write(text if text.endswith("\n") else text + "\n")


def _follow(client: LifecycleClient, name: str, version: str, tail: int) -> None:
    from .output import warning

    events = client.follow_job_logs(name, version, tail)
    try:
        for event in events:
            if event.event == "message":
                sys.stdout.write(event.data + "\n")
                sys.stdout.flush()
            elif event.event == "dropped":
                warning(f"{event.json().get('lines', '?')} line(s) left out: this terminal read too slowly")
            elif event.event == "end":
                detail = event.json()
                if detail.get("reason") == "error":
                    raise CommandFailed(f"following the log failed: {detail.get('error')}")
                sys.stderr.write(f"({name} {version} is not running: the log ends here)\n")
                return
    except KeyboardInterrupt:
        pass  # Ctrl-C is how one stops following: a clean end
    finally:
        events.close()


def build_logs(
    name: NameArgument,
    version: VersionOption = "latest",
    tail: Annotated[int, typer.Option("--tail", "-n", min=0, help="only the last N lines (0: all)")] = 0,
    remote: RemoteOption = None,
    as_json: JsonOption = False,
) -> None:
    """Print the build log of a job's latest deployment.

    It says what each deploy phase did: fetching the source, building the environment,
    starting the job, checking the input examples. With `--version latest` it is the
    job's most recent deployment, whatever its version.

    JSON shape: {"name", "version", "deployment_id", "lines": ["...", ...]}

    Examples:
      trackside build-logs adder
      trackside build-logs adder --version 0.0.2 --tail 50
    """
    with connect(remote) as client:
        log = client.build_logs(name, version, tail)
        if as_json:
            from .output import print_json

            print_json(
                {
                    "name": name,
                    "version": version,
                    "deployment_id": log["deployment_id"],
                    "lines": log["logs"].splitlines(),
                }
            )
            return
        text = log["logs"]
        if text:
            sys.stdout.write(text if text.endswith("\n") else text + "\n")


# ---- delete ---------------------------------------------------------------------------------------


def delete(
    name: NameArgument,
    version: Annotated[
        str,
        typer.Option(
            "--version", help="the version to delete (required; `latest` is allowed)", metavar="VERSION"
        ),
    ],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")] = False,
    remote: RemoteOption = None,
) -> None:
    """Stop a job version and delete it.

    Asks for confirmation unless --yes; without a terminal to ask on, --yes is required.

    Example:
      trackside delete adder --version 0.0.1 --yes
    """
    with connect(remote) as client:
        job = client.job(name, version)  # not found → exit 3 before asking anything
        target = f"{job['name']} {job['version']}"
        if not yes:
            if sys.stdin is None or not sys.stdin.isatty():
                raise CommandFailed(
                    f"not deleting {target} without confirmation: stdin is not a terminal; pass --yes",
                    ExitCode.USAGE,
                )
            if not typer.confirm(
                f"Delete {target} ({job.get('status')}) from {client.remote.base}?", default=False
            ):
                raise CommandFailed(f"not deleted: {target} is still there")
        client.delete_job(job["name"], job["version"])
        typer.echo(f"Deleted {target}.")


# ---- call -----------------------------------------------------------------------------------------


def read_payload(text: str | None) -> Any:
    """The payload from the argument: JSON or YAML text, `@file` (.json, .yaml/.yml) or `-` (stdin)."""
    if text is None:
        return {}
    source = "the payload"
    if text == "-":
        text, source = sys.stdin.read(), "the payload on stdin"
    elif text.startswith("@"):
        path = Path(text[1:])
        source = f"payload file {path}"
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise CommandFailed(f"{source}: no such file", ExitCode.USAGE) from None
        except (OSError, UnicodeDecodeError) as e:
            raise CommandFailed(f"cannot read {source}: {e}", ExitCode.USAGE) from None
        if path.suffix == ".json":
            try:
                return json.loads(text)
            except ValueError as e:
                raise CommandFailed(f"{source} is not valid JSON: {e}", ExitCode.USAGE) from None
    if not text.strip():
        return {}
    try:
        return json.loads(text)
    except ValueError:
        pass
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise CommandFailed(
            f"{source} is neither JSON nor YAML: {' '.join(str(e).split())}", ExitCode.USAGE
        ) from None


def curl_command(url: str, payload: Any, token: str | None) -> str:
    words = ["curl", "-X", "POST", url]
    if token:
        words += ["-H", f"X-Racetrack-Auth: {token}"]
    words += ["-H", "Content-Type: application/json", "-d", json.dumps(payload, ensure_ascii=False)]
    return " ".join(shlex.quote(word) for word in words)


def call(
    name: NameArgument,
    payload: Annotated[
        str | None,
        typer.Argument(
            help="JSON or YAML body, @FILE (.json/.yaml) or - for stdin [default: {}]",
            metavar="PAYLOAD|-",
            show_default=False,
        ),
    ] = None,
    path: Annotated[
        str, typer.Option("--path", help="the job's endpoint", metavar="PATH")
    ] = "/api/v1/perform",
    version: VersionOption = "latest",
    curl: Annotated[
        bool, typer.Option("--curl", help="print an equivalent curl command (with your token); do not call")
    ] = False,
    remote: RemoteOption = None,
) -> None:
    """Call a job through the gateway and print its answer.

    The body is POSTed as JSON to /pub/job/NAME/VERSION/PATH with your token. The answer is
    printed as JSON (or as text when it is not JSON).

    Examples:
      trackside call adder '{"numbers": [40, 2]}'
      trackside call adder 'numbers: [1, 2]' --version 0.0.1
      trackside call adder @input.yaml
      echo '{"numbers": [1]}' | trackside call adder -
      trackside call adder '{"numbers": [1]}' --curl
    """
    body = read_payload(payload)
    with connect(remote) as client:
        if curl:
            if not client.token:
                from .output import warning

                warning(f"not logged in to {client.remote.base}: the command has no token")
            typer.echo(curl_command(client.job_url(name, version, path), body, client.token))
            return
        answer = client.call_job(name, version, path, body, timeout=300)
        data = answer.data()
        if isinstance(data, str):
            sys.stdout.write(data if data.endswith("\n") or not data else data + "\n")
        else:
            from .output import print_json

            print_json(data)


def register(app: typer.Typer) -> None:
    app.command("list", cls=TracksideCommand)(list_jobs)
    app.command(cls=TracksideCommand)(status)
    app.command(cls=TracksideCommand)(logs)
    app.command("build-logs", cls=TracksideCommand)(build_logs)
    app.command(cls=TracksideCommand)(delete)
    app.command(cls=TracksideCommand)(call)
