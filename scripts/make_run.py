"""`make run`: the whole platform with sample-jobs/adder deployed, in the foreground until Ctrl-C.

    .venv/bin/python scripts/make_run.py [--port 7200] [--data-dir DIR]

Starts `trackside up` (data in DIR, default $TRACKSIDE_DATA_DIR or .trackside-data in the
repository), waits until it is live, deploys sample-jobs/adder through the lifecycle API with
the admin token and an uploaded build context, and prints how to call it. When adder is already
running with the same files and manifest (a second `make run`), it is not deployed again.

`trackside up` runs in its own session, so a terminal's Ctrl-C reaches only this script, which
passes it on once and waits for the platform to stop its jobs. Exit status: 0 after a clean stop,
1 when something failed (the platform did not start, the deploy failed, the platform died).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from trackside.build_context import BuildContextError, pack_directory

REPO = Path(__file__).resolve().parent.parent
JOB_DIR = REPO / "sample-jobs" / "adder"
EXAMPLE = {"numbers": [40, 2]}
API = "/lifecycle/api/v1"
# the deployed files' digest, kept on the job so that a second `make run` can tell it is current
CONTEXT_LABEL = "trackside.make-run/build-context"
START_TIMEOUT = 120.0
DEPLOY_TIMEOUT = 600.0
STOP_TIMEOUT = 60.0


class Failed(Exception):
    """`make run` cannot go on; the message says why."""


def say(text: str) -> None:
    print(f"make run: {text}", flush=True)


def check_port_free(port: int) -> None:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as e:
            raise Failed(
                f"port {port} is in use ({e.strerror}): is Trackside already running? "
                f"Stop it, or choose another port: make run PORT={port + 1}"
            ) from None


def start_platform(port: int, data_dir: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "trackside", "up", "--port", str(port), "--data-dir", str(data_dir)]
    return subprocess.Popen(command, env={**os.environ, "PYTHONUNBUFFERED": "1"}, start_new_session=True)


def wait_until_live(platform: subprocess.Popen[bytes], base: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            if httpx.get(f"{base}/lifecycle/live", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if platform.poll() is not None:
            raise Failed(f"trackside up stopped (exit code {platform.returncode}); see its output above")
        if time.monotonic() > deadline:
            raise Failed(f"trackside up did not answer at {base}/lifecycle/live within {START_TIMEOUT:g} s")
        time.sleep(0.1)


def job_request() -> tuple[dict[str, Any], str]:
    """The adder's manifest (labelled with its files' digest) and its build context."""
    try:
        context = pack_directory(JOB_DIR)
    except BuildContextError as e:
        raise Failed(str(e)) from None
    manifest: dict[str, Any] = yaml.safe_load((JOB_DIR / "job.yaml").read_text())
    manifest["labels"] = {**(manifest.get("labels") or {}), CONTEXT_LABEL: _digest(manifest, context)}
    return manifest, context


def _digest(manifest: dict[str, Any], context: str) -> str:
    content = json.dumps(manifest, sort_keys=True) + "\n" + context
    return hashlib.sha256(content.encode()).hexdigest()[:16]


def is_current(client: httpx.Client, manifest: dict[str, Any]) -> bool | None:
    """Whether this very adder already runs (True), runs with other files or not at all (False),
    or is not deployed (None)."""
    path = f"{API}/job/{manifest['name']}/{manifest.get('version', '0.0.1')}"
    deadline = time.monotonic() + 60
    while True:
        r = client.get(path)
        if r.status_code == 404:
            return None
        r.raise_for_status()
        job = r.json()
        labels = (job.get("manifest") or {}).get("labels") or {}
        if labels.get(CONTEXT_LABEL) != manifest["labels"][CONTEXT_LABEL]:
            return False
        if job["status"] != "starting" or time.monotonic() > deadline:
            return bool(job["status"] == "running")
        time.sleep(0.2)  # brought back by `trackside up`, still starting


def deploy(client: httpx.Client, manifest: dict[str, Any], context: str, force: bool) -> None:
    r = client.post(f"{API}/deploy", json={"manifest": manifest, "build_context": context, "force": force})
    if r.status_code != 202:
        raise Failed(f"the lifecycle refused the deploy ({r.status_code}): {r.text}")
    deployment_id = r.json()["id"]
    started = time.monotonic()
    phase = None
    while True:
        status = client.get(f"{API}/deploy/{deployment_id}").json()
        if status["phase"] not in (phase, "done") and status["status"] == "in_progress":
            phase = status["phase"]
            say(f"  {phase} ...")
        if status["status"] == "done":
            say(
                f"deployed {manifest['name']} {manifest.get('version', '0.0.1')} in {time.monotonic() - started:.1f} s"
            )
            return
        if status["status"] == "failed":
            raise Failed(f"the deploy failed while {status['phase']}: {status['error']}")
        if time.monotonic() - started > DEPLOY_TIMEOUT:
            raise Failed(f"the deploy was still {status['phase']} after {DEPLOY_TIMEOUT:g} s")
        time.sleep(0.2)


def announce(base: str, token_file: Path) -> None:
    header = f"X-Racetrack-Auth: $(cat {shlex.quote(str(token_file))})"  # the token stays in its file
    curl = (
        f'curl -X POST {base}/pub/job/adder/latest/api/v1/perform -H "{header}" '
        f"-H 'Content-Type: application/json' -d {shlex.quote(json.dumps(EXAMPLE))}"
    )
    print(
        "\n".join(
            [
                "",
                "Trackside is running with sample-jobs/adder deployed. Call it:",
                f"  {curl}",
                f"Dashboard:          {base}/dashboard",
                f"Lifecycle API docs: {base}/lifecycle/docs",
                f"Admin token:        in {token_file}",
                "Ctrl-C stops Trackside and its jobs.",
                "",
            ]
        ),
        flush=True,
    )


def stop(platform: subprocess.Popen[bytes]) -> int:
    """Stop the platform as Ctrl-C in its own terminal would; a second Ctrl-C hurries it."""
    if platform.poll() is not None:
        return platform.returncode
    say("stopping Trackside and its jobs ...")
    for sig, wait in ((signal.SIGINT, STOP_TIMEOUT), (signal.SIGTERM, 20.0)):
        platform.send_signal(sig)
        try:
            return platform.wait(wait)
        except (subprocess.TimeoutExpired, KeyboardInterrupt):
            continue
    platform.kill()  # its jobs are stopped by the next start (it finds what it left behind)
    platform.wait()
    raise Failed("trackside up did not stop; it was killed")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=7200)
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("TRACKSIDE_DATA_DIR") or REPO / ".trackside-data"),
    )
    args = parser.parse_args(argv)
    base = f"http://127.0.0.1:{args.port}"
    data_dir: Path = args.data_dir.absolute()

    def stop_requested(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop_requested)
    platform: subprocess.Popen[bytes] | None = None
    try:
        try:
            check_port_free(args.port)
            manifest, context = job_request()
            platform = start_platform(args.port, data_dir)
            wait_until_live(platform, base)
            token_file = data_dir / "admin-token"
            token = token_file.read_text().strip()
            with httpx.Client(base_url=base, headers={"X-Racetrack-Auth": token}, timeout=30) as client:
                current = is_current(client, manifest)
                if current:
                    say("sample-jobs/adder is already running, unchanged: not deploying it again")
                else:
                    say("deploying sample-jobs/adder ...")
                    deploy(client, manifest, context, force=current is not None)
            announce(base, token_file)
            returncode = platform.wait()
            raise Failed(f"trackside up stopped by itself (exit code {returncode})")
        except KeyboardInterrupt:
            returncode = stop(platform) if platform is not None else 0
            say("stopped" if returncode == 0 else f"trackside up exited with {returncode}")
            return 0 if returncode == 0 else 1
    except Failed as e:
        print(f"make run: error: {e}", file=sys.stderr, flush=True)
        if platform is not None:
            with contextlib.suppress(Failed):
                stop(platform)
        return 1


if __name__ == "__main__":
    sys.exit(main())
