"""`deploy` (validate, send, watch the phases) and `validate` (the manifest, resolved or its errors)."""

from __future__ import annotations

import re
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from .exit_codes import CommandFailed, ExitCode
from .output import TracksideCommand
from .remotes import JsonOption, RemoteOption

if TYPE_CHECKING:
    from trackside.client import Deployment, LifecycleClient
    from trackside.manifest import Manifest
    from trackside.user_config import GitCredentials, UserConfig

ExtraVarsOption = Annotated[
    list[str] | None,
    typer.Option(
        "--extra-vars",
        "-e",
        help="override a manifest field: KEY.PATH=YAML, e.g. -e git.branch=dev -e replicas=2 (repeatable)",
        metavar="KEY=VALUE",
        show_default=False,
    ),
]

BUILD_LOG_TAIL = 20  # lines of the build log shown when a deploy fails


class BuildContext(StrEnum):
    local = "local"
    git = "git"


# ---- the manifest ---------------------------------------------------------------------------------


def load_checked(path: Path, extra_vars: list[str] | None) -> Manifest:
    """The manifest at `path` (a directory or a file), validated as the lifecycle does; every
    error, with its field path, as a usage error (exit 2)."""
    from trackside.manifest import ManifestError, load_manifest

    try:
        return load_manifest(path, overrides=extra_vars or ())
    except ManifestError as e:
        raise CommandFailed(str(e), ExitCode.USAGE) from None


def validate(
    path: Annotated[
        Path,
        typer.Argument(help="the job directory or its manifest file", metavar="[PATH]", show_default=False),
    ] = Path("."),
    extra_vars: ExtraVarsOption = None,
    as_json: JsonOption = False,
) -> None:
    """Check a job's manifest (job.yaml) and print it resolved.

    The manifest is checked exactly as the lifecycle checks it on deploy, after `extends` and the
    -e overrides are applied. A valid manifest is printed as YAML (warnings go to stderr); an
    invalid one prints every error with its field path and exits with 2.

    JSON shape:
      {"valid": true, "manifest": {...}, "warnings": ["..."]}  or
      {"valid": false, "errors": [{"field", "message", "expected", "problem", "origin"}]}

    Examples:
      trackside validate sample-jobs/adder
      trackside validate job.yaml -e git.branch=dev --json
    """
    from trackside.manifest import ManifestError, load_manifest, manifest_to_dict, manifest_to_yaml

    from .output import print_json, warning

    try:
        manifest = load_manifest(path, overrides=extra_vars or ())
    except ManifestError as e:
        if not as_json:
            raise CommandFailed(str(e), ExitCode.USAGE) from None
        print_json(
            {
                "valid": False,
                "errors": [
                    {
                        "field": err.path,
                        "message": err.message,
                        "expected": err.expected,
                        "problem": err.problem or None,
                        "origin": err.origin,
                    }
                    for err in e.errors
                ],
            }
        )
        raise typer.Exit(ExitCode.USAGE) from None
    if as_json:
        print_json({"valid": True, "manifest": manifest_to_dict(manifest), "warnings": manifest.warnings})
        return
    for message in manifest.warnings:
        warning(message)
    sys.stdout.write(manifest_to_yaml(manifest))


# ---- secret env files (dotenv) --------------------------------------------------------------------

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}


def read_env_file(path: Path, setting: str) -> dict[str, str]:
    """`KEY=VALUE` lines (dotenv): `export ` prefixes, `#` comments, '...' and "..." quotes (with
    \\n, \\t, \\", \\\\ escapes in double quotes). Errors name the file and line, never a value."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CommandFailed(f"{setting}: {path} does not exist", ExitCode.USAGE) from None
    except (OSError, UnicodeDecodeError) as e:
        raise CommandFailed(f"{setting}: cannot read {path}: {e}", ExitCode.USAGE) from None
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").lstrip()
        name, equals, value = line.partition("=")
        name = name.strip()
        where = f"{setting}: {path} line {number}"
        if not equals:
            raise CommandFailed(f"{where}: expected NAME=VALUE", ExitCode.USAGE)
        if not _ENV_NAME.match(name):
            raise CommandFailed(f"{where}: {name!r} is not a valid variable name", ExitCode.USAGE)
        values[name] = _env_value(value.strip(), where)
    return values


def _env_value(value: str, where: str) -> str:
    if value[:1] in ("'", '"'):
        quote = value[0]
        end = _closing_quote(value, quote)
        if end < 0:
            raise CommandFailed(
                f"{where}: the value's {quote} quote is not closed on that line", ExitCode.USAGE
            )
        rest = value[end + 1 :].strip()
        if rest and not rest.startswith("#"):
            raise CommandFailed(f"{where}: unexpected text after the quoted value", ExitCode.USAGE)
        inner = value[1:end]
        if quote == "'":
            return inner
        return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m[1], "\\" + m[1]), inner)
    comment = re.search(r"\s#", value)
    return value[: comment.start()].rstrip() if comment else value


def _closing_quote(value: str, quote: str) -> int:
    index = 1
    while index < len(value):
        if value[index] == "\\" and quote == '"':
            index += 2
            continue
        if value[index] == quote:
            return index
        index += 1
    return -1


# ---- watching a deployment --------------------------------------------------------------------------


def _parse_time(text: Any) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


@dataclass
class PhaseLine:
    name: str
    server_start: float | None  # the lifecycle's clock
    seen: float  # ours (monotonic): when we learnt of it
    seconds: float | None = None  # once finished
    failed: bool = False


@dataclass
class Watch:
    """What is known of a deployment while it runs."""

    phases: list[PhaseLine] = field(default_factory=list)
    log: deque[str] = field(default_factory=lambda: deque(maxlen=BUILD_LOG_TAIL))
    final: dict[str, Any] | None = None

    def phase(self, name: str, started_at: Any) -> PhaseLine | None:
        """A new phase: the one before it is finished. Returns that one (to report), if any."""
        start = _parse_time(started_at)
        finished = self.phases[-1] if self.phases else None
        if finished is not None and finished.seconds is None:
            if finished.server_start is not None and start is not None:
                finished.seconds = max(0.0, start - finished.server_start)
            else:
                finished.seconds = time.monotonic() - finished.seen
        else:
            finished = None
        if name != "done":
            self.phases.append(PhaseLine(name, start, time.monotonic()))
        return finished

    def fail(self, finish_time: float | None) -> PhaseLine | None:
        current = self.phases[-1] if self.phases else None
        if current is None or current.seconds is not None:
            return None
        current.failed = True
        if finish_time is not None and current.server_start is not None:
            current.seconds = max(0.0, finish_time - current.server_start)
        else:
            current.seconds = time.monotonic() - current.seen
        return current


class Progress:
    """Plain lines, for logs and pipes: `phase ... 1.2 s` as each phase finishes."""

    def __init__(self, watch: Watch) -> None:
        self.watch = watch

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def finished(self, line: PhaseLine | None) -> None:
        if line is not None:
            from .output import say

            outcome = f"failed after {line.seconds:.1f} s" if line.failed else f"{line.seconds:.1f} s"
            say(f"{line.name} ... {outcome}", "red" if line.failed else "")

    def update(self) -> None:
        pass


class LiveProgress(Progress):
    """On a terminal: every phase with a spinner while it runs, then its time."""

    def __init__(self, watch: Watch) -> None:
        super().__init__(watch)
        from rich.live import Live

        from .output import console

        self._spinners: dict[int, Any] = {}
        self._live = Live(
            get_renderable=self._render, console=console(), refresh_per_second=10, transient=False
        )

    def __enter__(self) -> LiveProgress:
        self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._live.stop()

    def finished(self, line: PhaseLine | None) -> None:
        self._live.refresh()

    def update(self) -> None:
        self._live.refresh()

    def _render(self) -> Any:
        from rich.console import Group
        from rich.spinner import Spinner
        from rich.text import Text

        lines: list[Any] = []
        for index, phase in enumerate(self.watch.phases):
            if phase.seconds is None and self.watch.final is None:
                elapsed = time.monotonic() - phase.seen
                spinner = self._spinners.setdefault(index, Spinner("dots", style="cyan"))
                spinner.update(text=Text.assemble(phase.name, (f"  {elapsed:.1f} s", "dim")))
                lines.append(spinner)
                if self.watch.log:
                    lines.append(
                        Text("  " + self.watch.log[-1][:160], style="dim", no_wrap=True, overflow="ellipsis")
                    )
            elif phase.failed:
                lines.append(
                    Text.assemble(("✗ ", "bold red"), phase.name, (f"  {phase.seconds or 0:.1f} s", "red"))
                )
            else:
                lines.append(
                    Text.assemble(("✓ ", "green"), phase.name, (f"  {phase.seconds or 0:.1f} s", "dim"))
                )
        return Group(*lines)


def watch_deployment(client: LifecycleClient, deployment_id: str, progress: Progress) -> Deployment:
    """Follow the deployment's events until it ends (polling GET /deploy/{id} when there is no
    stream or it broke off); its final state."""
    from trackside.client import RemoteError

    watch = progress.watch
    seen = 0  # phases reported so far, `done` included

    def report(phases: list[Any]) -> None:
        nonlocal seen
        for phase in phases[seen:]:
            progress.finished(watch.phase(str(phase.get("name")), phase.get("started_at")))
        seen = max(seen, len(phases))

    try:
        for event in client.deployment_events(deployment_id):
            data = event.json()
            if event.event == "phase":
                progress.finished(watch.phase(str(data.get("name")), data.get("started_at")))
                seen += 1
            elif event.event == "log":
                watch.log.append(str(data.get("line", "")))
            elif event.event == "warning":
                from .output import warning

                warning(str(data.get("message", "")))
            elif event.event in ("done", "failed"):
                break
            progress.update()
    except RemoteError as e:
        if e.status is not None and e.status != 404:  # 404: a lifecycle without event streams
            raise
    final = client.deployment(deployment_id)
    while final.get("status") == "in_progress":
        report(list(final.get("phases") or []))
        progress.update()
        time.sleep(0.5)
        final = client.deployment(deployment_id)
    report(list(final.get("phases") or []))
    if final.get("status") != "done":
        progress.finished(watch.fail(final.get("finish_time")))
    watch.final = dict(final)
    return final


# ---- deploy ---------------------------------------------------------------------------------------


def _size(count: int) -> str:
    if count < 1024:
        return f"{count} bytes"
    if count < 1024 * 1024:
        return f"{count / 1024:.1f} KiB"
    return f"{count / 1024 / 1024:.1f} MiB"


def _example_payload(client: LifecycleClient, name: str, version: str) -> Any:
    """The job's own input example for /api/v1/perform (from its OpenAPI document), or {}."""
    from trackside.client import RemoteError

    try:
        document = client.call_job(name, version, "/openapi.json", method="GET", timeout=5).data()
        media = document["paths"]["/api/v1/perform"]["post"]["requestBody"]["content"]["application/json"]
        return media.get("example", {})
    except (RemoteError, KeyError, TypeError):
        return {}


def _success(client: LifecycleClient, final: Deployment, started: float) -> None:
    import json
    import shlex

    from .output import say

    name, version = final.get("job_name", ""), final.get("job_version", "")
    url = client.job_url(name, version)
    payload = json.dumps(_example_payload(client, name, version), ensure_ascii=False)
    say(f"Deployed {name} {version} in {time.monotonic() - started:.1f} s.", "bold green")
    say(f"  URL:  {url}")
    say(f"  call: trackside call {name} {shlex.quote(payload)} --version {version}")
    say(
        f'  curl: curl -X POST {url}/api/v1/perform -H "X-Racetrack-Auth: $TRACKSIDE_TOKEN" '
        f"-H 'Content-Type: application/json' -d {shlex.quote(payload)}"
    )
    say(f"        (`trackside call {name} --version {version} --curl` prints it with your token)", "dim")


def _failure(final: Deployment, watch: Watch, client: LifecycleClient) -> CommandFailed:
    from .output import say

    log = list(watch.log)
    if not log:  # polled: no log events came
        try:
            log = client.build_logs(final.get("job_name", ""), final.get("job_version", ""), BUILD_LOG_TAIL)[
                "logs"
            ].splitlines()
        except CommandFailed:
            log = []
    if log:
        say(f"Last lines of the build log ({len(log)}):", "bold")
        for line in log:
            say(f"  {line}", "dim")
    phase = final.get("phase") or "?"
    return CommandFailed(f"the deployment failed while {phase}: {final.get('error') or 'no error given'}")


def deploy(
    directory: Annotated[
        Path, typer.Argument(help="the job directory (with job.yaml)", metavar="[DIR]", show_default=False)
    ] = Path("."),
    remote: RemoteOption = None,
    build_context: Annotated[
        BuildContext | None,
        typer.Option(
            "--build-context",
            help="upload DIR (local) or let the lifecycle fetch git.remote (git) "
            "[default: local for a lifecycle on this machine, git otherwise]",
            show_default=False,
            case_sensitive=False,
        ),
    ] = None,
    extra_vars: ExtraVarsOption = None,
    force: Annotated[bool, typer.Option("--force", help="replace the version if it exists")] = False,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="rebuild the environment, no cache")] = False,
) -> None:
    """Deploy a job and watch it come up.

    The manifest is validated here first (same checks as the lifecycle). Secret env files
    named by the manifest (secret_build_env_file, secret_runtime_env_file; dotenv format,
    relative to DIR) are sent as secrets, and git credentials from the config for git.remote.
    With --build-context local, DIR is uploaded (honouring .gitignore and .tracksideignore).
    Each phase is shown as it runs; on failure the error and the end of the build log (exit 1).
    Ctrl-C stops watching, not the deployment.

    Examples:
      trackside deploy sample-jobs/adder
      trackside deploy . --remote prod -e version=1.2.0 --force
      trackside deploy --build-context git --no-cache
    """
    from trackside.client import LifecycleClient
    from trackside.user_config import load_config

    manifest = load_checked(directory, extra_vars)
    config = load_config()
    target = config.resolve_remote(remote).remote
    token = config.token_for(target)
    if not token:
        raise CommandFailed(
            f"not logged in to {target.base}: run `trackside login TOKEN` (or set TRACKSIDE_TOKEN)",
            ExitCode.AUTH,
        )
    job_dir = directory if directory.is_dir() else directory.parent
    request = _request(
        manifest,
        job_dir,
        config,
        build_context or (BuildContext.local if target.is_loopback else BuildContext.git),
    )
    with LifecycleClient(target, token) as client:
        _send_and_watch(client, request, force, no_cache)


@dataclass
class _Request:
    """What a deploy sends, besides the flags."""

    manifest: Manifest
    secrets: dict[str, dict[str, str]]  # build_env / runtime_env
    build_context: str | None
    git_credentials: GitCredentials | None
    source: str  # where the code comes from, for people


def _request(manifest: Manifest, job_dir: Path, config: UserConfig, context: BuildContext) -> _Request:
    secrets = {
        kind: read_env_file(job_dir / str(file), setting) if file else {}
        for kind, setting, file in (
            ("build_env", "secret_build_env_file", manifest.secret_build_env_file),
            ("runtime_env", "secret_runtime_env_file", manifest.secret_runtime_env_file),
        )
    }
    if context is BuildContext.git:
        source = f"git {manifest.git.remote}" + (f" ({manifest.git.branch})" if manifest.git.branch else "")
        return _Request(manifest, secrets, None, config.git_credentials_for(manifest.git.remote), source)
    from trackside.build_context import BuildContextError, pack_directory

    try:
        packed = pack_directory(job_dir)
    except BuildContextError as e:
        raise CommandFailed(str(e)) from None
    return _Request(manifest, secrets, packed, None, f"{job_dir} ({_size(len(packed) * 3 // 4)} uploaded)")


def _send_and_watch(client: LifecycleClient, request: _Request, force: bool, no_cache: bool) -> None:
    from trackside.client import RemoteError
    from trackside.manifest import manifest_to_dict

    from .output import is_terminal, say

    name, version = request.manifest.name, request.manifest.version
    say(f"Deploying {name} {version} to {client.remote.base} from {request.source}")
    started = time.monotonic()
    try:
        deployment_id = client.deploy(
            manifest_to_dict(request.manifest),
            git_credentials=request.git_credentials,
            build_env=request.secrets["build_env"],
            runtime_env=request.secrets["runtime_env"],
            build_context=request.build_context,
            force=force,
            build_flags=["--no-cache"] if no_cache else [],
        )
    except RemoteError as e:
        if e.status == 409 and "already exists" in str(e) and not force:
            e.args = (f"{e}; add --force to replace it",)
        raise
    say(f"Deployment {deployment_id}", "dim")
    watch = Watch()
    progress = LiveProgress(watch) if is_terminal(sys.stdout) else Progress(watch)
    try:
        with progress:
            final = watch_deployment(client, deployment_id, progress)
    except KeyboardInterrupt:
        say()
        say(f"Stopped watching; the deployment goes on ({deployment_id}). To see how it went:")
        say(f"  trackside build-logs {name} --version {version}")
        say(f"  trackside status {name} --version {version}")
        return
    if final.get("status") != "done":
        raise _failure(final, watch, client)
    _success(client, final, started)


def register(app: typer.Typer) -> None:
    app.command(cls=TracksideCommand)(deploy)
    app.command(cls=TracksideCommand)(validate)
