"""`trackside dev [DIR]`: the job in DIR served locally by the wrapper with hot reload.

No lifecycle and no token: the wrapper (`python -m trackside_wrapper run DIR --reload`) runs in a
child process of its own process group, with this Python, so the job must be importable here
(its requirements installed). Saving a file restarts the job: uvicorn's reloader watches DIR
(with watchfiles when it is installed, else by polling). Ctrl-C or SIGTERM stops the whole group.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from .exit_codes import CommandFailed, ExitCode
from .output import TracksideCommand

if TYPE_CHECKING:
    import subprocess

    from trackside.manifest import Manifest

START_TIMEOUT = 60.0  # until the job's server answers /live
READY_WAIT = 10.0  # how long to wait for __init__ before printing a call without its example
STOP_TIMEOUT = 15.0  # after Ctrl-C, before the job's processes are killed
WATCH_TIMEOUT = 5.0  # for the reloader to start watching the files
WATCH_DELAY = 0.75  # after the job answers, before the reloader surely watches (no watchfiles)


@dataclass
class DevJob:
    """What `trackside dev` needs to know of a job directory before starting it."""

    directory: Path  # resolved
    entrypoint_path: str
    requirements_path: str | None = None
    env: dict[str, str] = field(default_factory=dict)  # runtime_env, JOB_MANIFEST_YAML when needed
    warnings: list[str] = field(default_factory=list)


def dev(
    directory: Annotated[
        Path,
        typer.Argument(help="the job's directory (with job.yaml and the entrypoint it names)", metavar="DIR"),
    ] = Path("."),
    port: Annotated[int, typer.Option(help="port to serve the job on", min=1, max=65535)] = 7000,
    host: Annotated[
        str, typer.Option(help="address to listen on (0.0.0.0: reachable from other machines)")
    ] = ("127.0.0.1"),
) -> None:
    """Run the job in DIR locally with hot reload: no platform, no token.

    Prints the Swagger UI address and a curl command for perform; saving a file restarts the job.

    The job runs with this Python: install its requirements here first. Ctrl-C stops it.

    Example: trackside dev sample-jobs/adder --port 7000
    """
    job = load_dev_job(directory)
    for warning in job.warnings:
        typer.echo(f"warning: {warning}", err=True)
    check_port_free(host, port)
    serve(job, host, port)


# ---- the job directory -----------------------------------------------------------------------


def load_dev_job(directory: Path) -> DevJob:
    """Check that `directory` holds a runnable job; CommandFailed (usage, exit 2) when it does not.

    A manifest the platform would refuse (a missing owner_email, say) is only a warning here: the
    wrapper needs no more than the entrypoint.
    """
    root = directory.resolve()
    if not root.is_dir():
        raise CommandFailed(f"{directory} is not a directory", ExitCode.USAGE)
    file = root / "job.yaml"
    if not file.is_file() and (root / "fatman.yaml").is_file():
        file = root / "fatman.yaml"
    if not file.is_file():
        raise CommandFailed(
            f"no job.yaml in {root}: `trackside dev` runs a job directory, a job.yaml naming "
            "jobtype_extra.entrypoint_path and that file (see sample-jobs/adder)",
            ExitCode.USAGE,
        )
    from trackside.manifest import ManifestError, load_manifest

    try:
        manifest = load_manifest(file)
    except ManifestError as e:
        job = _from_wrapper_view(root, file, str(e))
    else:
        job = _from_manifest(root, file, manifest)
    entrypoint = root / job.entrypoint_path
    if not entrypoint.is_file():
        raise CommandFailed(
            f"the entrypoint {job.entrypoint_path} (jobtype_extra.entrypoint_path in {file.name}) "
            f"does not exist in {directory}",
            ExitCode.USAGE,
        )
    return job


def _from_manifest(root: Path, file: Path, manifest: Manifest) -> DevJob:
    """The job as the platform reads its manifest."""
    from trackside.manifest import manifest_to_yaml

    extra = manifest.python3
    if extra is None:
        raise CommandFailed(
            f"jobtype {manifest.jobtype!r} in {file.name}: `trackside dev` runs python3 jobs", ExitCode.USAGE
        )
    env = dict(manifest.runtime_env)
    # the wrapper reads job.yaml itself (so an edit to it reloads too), but knows neither the
    # former name nor `extends`: then it gets the resolved manifest
    if file.name != "job.yaml" or "extends" in file.read_text(encoding="utf-8", errors="replace"):
        env["JOB_MANIFEST_YAML"] = manifest_to_yaml(manifest)
    return DevJob(
        root,
        extra.entrypoint_path,
        extra.requirements_path,
        env,
        [f"{file.name}: {w}" for w in manifest.warnings],
    )


def _from_wrapper_view(root: Path, file: Path, refused: str) -> DevJob:
    """The job as the wrapper reads its manifest (only the runtime's fields), for a manifest the
    platform would refuse: still runnable, with a warning saying what the platform would say."""
    import yaml
    from trackside_wrapper.manifest import ManifestError as WrapperManifestError
    from trackside_wrapper.manifest import job_settings

    text = file.read_text(encoding="utf-8", errors="replace")
    try:
        data = yaml.safe_load(text)
        if not isinstance(data, dict):
            raise CommandFailed(
                f"{file.name} in {root} is not a YAML mapping of manifest fields", ExitCode.USAGE
            )
        settings = job_settings(data)
    except yaml.YAMLError as e:
        raise CommandFailed(f"{file.name} in {root} is not valid YAML: {e}", ExitCode.USAGE) from None
    except WrapperManifestError as e:
        raise CommandFailed(f"{file.name} in {root}: {e}", ExitCode.USAGE) from None
    env = {"JOB_MANIFEST_YAML": text} if file.name != "job.yaml" else {}
    warning = f"the platform would refuse {file.name} as it is (`trackside dev` runs it anyway): {refused}"
    return DevJob(root, settings.entrypoint_path, None, env, [warning])


# ---- serving ---------------------------------------------------------------------------------


def check_port_free(host: str, port: int) -> None:
    """Fail clearly (exit 1) when HOST:PORT cannot be listened on, before starting anything."""
    import errno
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise CommandFailed(f"cannot listen on {host}: {e.strerror}", ExitCode.USAGE) from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        try:
            probe.bind(address)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise CommandFailed(
                    f"port {port} is already in use on {host} (another `trackside dev`, a job or the "
                    f"platform?); choose another with --port",
                    ExitCode.FAILED,
                ) from None
            raise CommandFailed(
                f"cannot listen on {host}:{port}: {e.strerror or e}", ExitCode.FAILED
            ) from None


def url_host(host: str) -> str:
    """The host part of a URL that reaches a server listening on `host` from this machine."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def serve(job: DevJob, host: str, port: int) -> None:
    import os
    import signal
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "JOB_MANIFEST_YAML"}
    env.update(job.env)
    env["PYTHONUNBUFFERED"] = "1"
    command = [sys.executable, "-m", "trackside_wrapper", "run", str(job.directory)]
    command += ["--host", host, "--port", str(port), "--reload"]
    base = f"http://{url_host(host)}:{port}"

    def stop_requested(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop_requested)
    child = subprocess.Popen(command, env=env, process_group=0)
    try:
        try:
            live = _wait_until_serving(child, base, port)
            _wait_until_watching(child)
            _announce(job, base, live)
            returncode = child.wait()
        except KeyboardInterrupt:
            _stop(child)
            print("stopped", flush=True)
            return
    finally:
        if child.poll() is None:
            _stop(child)
        signal.signal(signal.SIGTERM, previous)
    raise CommandFailed(f"the job's server stopped (exit code {returncode})", ExitCode.FAILED)


def _stop(child: subprocess.Popen[bytes]) -> None:
    import contextlib
    import os
    import signal
    import subprocess

    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGINT)  # the reloader and its worker, as a terminal would
    with contextlib.suppress(subprocess.TimeoutExpired):
        child.wait(STOP_TIMEOUT)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGKILL)  # whatever is left of the group (a stuck worker)
    child.wait()


def _wait_until_serving(child: subprocess.Popen[bytes], base: str, port: int) -> dict[str, Any]:
    """The job's /live answer (200, or 500 when it failed to load) once its server answers."""
    import time

    deadline = time.monotonic() + START_TIMEOUT
    while True:
        answer = _get_json(base + "/live")
        if answer is not None:
            return answer
        if child.poll() is not None:
            raise CommandFailed(
                f"the job's server stopped before serving (exit code {child.returncode}); see its output above",
                ExitCode.FAILED,
            )
        if time.monotonic() > deadline:
            raise CommandFailed(f"the job's server did not answer on port {port} within {START_TIMEOUT:g} s")
        time.sleep(0.05)


def _wait_until_watching(child: subprocess.Popen[bytes]) -> None:
    """Return once the reloader watches the files: it starts watching a moment after it started
    the job (uvicorn pauses first), and a save before that would be missed. With watchfiles on
    Linux the moment is seen (its inotify descriptor); otherwise it is waited out."""
    import importlib.util
    import os
    import time

    started = time.monotonic()
    fd_dir = Path(f"/proc/{child.pid}/fd")
    if importlib.util.find_spec("watchfiles") is not None and fd_dir.is_dir():
        while time.monotonic() - started < WATCH_TIMEOUT and child.poll() is None:
            for fd in fd_dir.iterdir():
                try:
                    if os.readlink(fd) == "anon_inode:inotify":
                        return
                except OSError:
                    continue
            time.sleep(0.02)
        return
    time.sleep(WATCH_DELAY)  # uvicorn's reload_delay (0.25 s) and then some


def _get_json(url: str, timeout: float = 2.0) -> dict[str, Any] | None:
    """GET url as JSON, whatever the status; None when nothing answers."""
    import json
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body = response.read()
    except urllib.error.HTTPError as e:
        body = e.read()
    except (OSError, ValueError):
        return None
    try:
        value = json.loads(body)
    except ValueError:
        return None
    return value if isinstance(value, dict) else {"value": value}


def _perform_example(base: str) -> dict[str, Any] | None:
    """perform's input example from the job's OpenAPI document, once the job is ready."""
    import time

    deadline = time.monotonic() + READY_WAIT
    while time.monotonic() < deadline:
        ready = _get_json(base + "/ready")
        if ready is not None and ready.get("ready") is True:
            break
        if ready is not None and "error" in ready:
            return None
        time.sleep(0.05)
    else:
        return None
    document = _get_json(base + "/openapi.json") or {}
    try:
        example = document["paths"]["/api/v1/perform"]["post"]["requestBody"]["content"]["application/json"][
            "example"
        ]
    except (KeyError, TypeError):
        return None
    return example if isinstance(example, dict) else None


def _announce(job: DevJob, base: str, live: dict[str, Any]) -> None:
    import json
    import shlex

    lines = [f"Serving {job.directory} with hot reload (save a file to restart the job; Ctrl-C stops it)."]
    if live.get("live") is False:
        lines.append(f"The job failed to load: {live.get('error')}. Fix it and save: it reloads.")
        example: dict[str, Any] | None = None
    else:
        example = _perform_example(base)
    payload = json.dumps(example if example is not None else {})
    lines += [
        f"  Swagger UI: {base}/docs",
        f"  curl -X POST {base}/api/v1/perform -H 'Content-Type: application/json' -d {shlex.quote(payload)}",
    ]
    if job.requirements_path:
        lines.append(
            f"  (requirements in {job.requirements_path} are not installed by `trackside dev`: "
            "install them into this Python's environment)"
        )
    # one write: the job's own log shares this output, and print() would write the last newline
    # separately, letting a log line land inside the curl line
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()


def register(app: typer.Typer) -> None:
    app.command(cls=TracksideCommand)(dev)
