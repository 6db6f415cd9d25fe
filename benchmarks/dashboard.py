"""The dashboard benchmark (`--only dashboard`): its pages with 1,000 job versions registered.

One `python -m trackside up` (the dashboard calls the lifecycle in-process) and, beside it,
`python -m trackside serve dashboard` pointed at that lifecycle (the dashboard calls it over HTTP
on loopback): the same pages through both, interleaved, so the two ways to reach the lifecycle
are compared in one run.

The versions are written into the database before the lifecycle starts (as for `listing`); one
small job (`sample-jobs/adder`, no requirements) is deployed and called, so the job page of a
running version scrapes real metrics and reads a real log. Each page is asked for by a signed-in
admin on one keep-alive connection: warm-up requests first, then `requests` measured ones. The
server's own time comes from the `Server-Timing` header every dashboard page carries (the page's
lifecycle calls and its rendering); the client's from sending the request to having read the
whole body.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from .job_listing import VERSIONS_PER_FAMILY, percentile, seed_versions
from .lifecycle import LifecycleFailed, LifecycleProcess
from .processes import child_environment, free_port
from .servers import REPO

Log = Callable[[str], None]

DASHBOARD_KEY = "dashboard"
PAGE_TARGET_MS = 100.0
WARMUP_REQUESTS = 3
START_TIMEOUT_S = 60.0
DEPLOY_TIMEOUT_S = 300.0
ADDER = REPO / "sample-jobs" / "adder" / "entrypoint.py"
RUNNING_JOB = "bench-adder"
_SERVER_TIMING = re.compile(r"page;dur=([0-9.]+)")


@dataclass(frozen=True)
class DashboardSettings:
    job_versions: int = 1000
    requests: int = 50


@dataclass
class PageTiming:
    """One page through one way to the lifecycle."""

    server_ms: list[float] = field(default_factory=list)
    client_ms: list[float] = field(default_factory=list)
    body_bytes: int = 0

    def p(self, q: float, client: bool = False) -> float:
        return percentile(self.client_ms if client else self.server_ms, q)


@dataclass(frozen=True)
class Page:
    key: str
    path: str
    what: str


@dataclass
class DashboardResults:
    settings: DashboardSettings
    versions: int
    seed_s: float
    pages: list[Page]
    in_process: dict[str, PageTiming]
    over_http: dict[str, PageTiming]
    environment: dict[str, Any]

    def slowest_p95(self) -> tuple[str, float]:
        key = max(self.in_process, key=lambda k: self.in_process[k].p(95))
        return key, self.in_process[key].p(95)


def pages(versions: int) -> list[Page]:
    families = max(1, versions // VERSIONS_PER_FAMILY)
    middle = f"listed-{families // 2:04d}"
    return [
        Page("jobs", "/dashboard/jobs", f"all {versions} versions (+1 running), grouped by family"),
        Page("jobs-filter", f"/dashboard/jobs?q={middle}", f"filtered to one family ({middle})"),
        Page("jobs-sorted", "/dashboard/jobs?sort=updated", "all versions, newest update first"),
        Page("job-stopped", "/dashboard/jobs/listed-0000/1.0.0", "a stopped version (no metrics, no log)"),
        Page(
            "job-running", f"/dashboard/jobs/{RUNNING_JOB}/0.0.1", "the running adder: metrics, log, history"
        ),
        Page("deployments", "/dashboard/deployments", "the newest 50 deployments"),
        Page("audit", "/dashboard/admin/audit", "the newest 100 audit events"),
        Page("permissions", "/dashboard/admin/permissions", "every permission"),
        Page("profile", "/dashboard/profile", "the admin's tokens"),
    ]


# ---- the processes --------------------------------------------------------------------------------


class DashboardProcess:
    """`python -m trackside serve dashboard` against a lifecycle's URL."""

    def __init__(self, lifecycle_url: str, log_path: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        with open(log_path, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "trackside", "serve", "dashboard", "--port", str(self.port)],
                cwd=REPO,
                env={**env, "TRACKSIDE_LIFECYCLE_URL": lifecycle_url},
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(self.url + "/dashboard/sign-in", timeout=2).status_code == 200:
                    return
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = log_path.read_text(errors="replace")[-2000:]
                raise LifecycleFailed(f"`trackside serve dashboard` did not start:\n{tail}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def _deploy_running_job(lifecycle: LifecycleProcess, repos: Path) -> None:
    """The adder from a fresh git repository (its environment from uv's usual cache), called a
    few times so its metrics and log have something in them."""
    repo = repos / RUNNING_JOB
    repo.mkdir(parents=True)
    git_env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    (repo / "entrypoint.py").write_text(ADDER.read_text())
    for args in (
        ["init", "--quiet", "--initial-branch=master"],
        ["add", "--all"],
        ["-c", "user.name=bench", "-c", "user.email=bench@example.com", "commit", "--quiet", "-m", "adder"],
    ):
        subprocess.run(["git", "-C", str(repo), *args], check=True, env=git_env, capture_output=True)
    deployment_id = lifecycle.deploy(
        {
            "name": RUNNING_JOB,
            "owner_email": "bench@example.com",
            "jobtype": "python3:latest",
            "version": "0.0.1",
            "git": {"remote": repo.resolve().as_uri()},
            "jobtype_extra": {"entrypoint_path": "entrypoint.py"},
        }
    )
    deadline = time.monotonic() + DEPLOY_TIMEOUT_S
    while (body := lifecycle.deployment(deployment_id))["status"] == "in_progress":
        if time.monotonic() > deadline:
            raise lifecycle.fail(
                f"the deployment of {RUNNING_JOB} did not finish in {DEPLOY_TIMEOUT_S:.0f} s"
            )
        time.sleep(0.1)
    if body["status"] != "done":
        raise lifecycle.fail(f"the deployment of {RUNNING_JOB} failed: {body.get('error')}")
    token = lifecycle.client.headers["X-Racetrack-Auth"]
    for numbers in ([1, 2], [3, 4], [5, 6]):
        httpx.post(
            f"{lifecycle.url}/pub/job/{RUNNING_JOB}/0.0.1/api/v1/perform",
            json={"numbers": numbers},
            headers={"X-Racetrack-Auth": token},
            timeout=30,
        ).raise_for_status()


def signed_in_client(base_url: str, token: str) -> httpx.Client:
    """A client of the dashboard at `base_url` signed in with the token form (what a browser does)."""
    client = httpx.Client(base_url=base_url, timeout=60)
    form = client.get("/dashboard/sign-in")
    match = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    if form.status_code != 200 or match is None:
        raise LifecycleFailed(f"{base_url}: no sign-in form ({form.status_code})")
    done = client.post(
        "/dashboard/sign-in", data={"csrf_token": match.group(1), "token": token, "next": "/dashboard/jobs"}
    )
    if done.status_code != 303 or "X-Racetrack-Auth" not in client.cookies:
        raise LifecycleFailed(f"{base_url}: signing in failed ({done.status_code}): {done.text[:300]}")
    return client


def _measure(client: httpx.Client, page: Page, timing: PageTiming) -> None:
    started = time.perf_counter()
    response = client.get(page.path)
    body = response.read()
    elapsed = (time.perf_counter() - started) * 1000
    if response.status_code != 200:
        raise LifecycleFailed(f"{page.path} answered {response.status_code}: {response.text[:300]}")
    match = _SERVER_TIMING.search(response.headers.get("Server-Timing", ""))
    if match is None:
        raise LifecycleFailed(f"{page.path} has no Server-Timing header")
    timing.server_ms.append(float(match.group(1)))
    timing.client_ms.append(elapsed)
    timing.body_bytes = len(body)


def _check_listing(client: httpx.Client, expected: int) -> None:
    """The jobs page lists every registered version: the benchmark measures what it says."""
    text = client.get("/dashboard/jobs").text
    shown = text.count('<tr data-job="')
    if shown != expected:
        raise LifecycleFailed(f"the jobs page shows {shown} versions, {expected} are registered")


@contextlib.contextmanager
def _work_dir(root: Path) -> Iterator[Path]:
    root.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix="dashboard-", dir=root))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def run(settings: DashboardSettings, work_dir: Path, log_dir: Path, log: Log) -> DashboardResults:
    log_dir.mkdir(parents=True, exist_ok=True)
    load_at_start = list(os.getloadavg())
    env = {k: v for k, v in child_environment().items() if not k.startswith(("TRACKSIDE_", "VIRTUAL_ENV"))}
    env["PYTHONUNBUFFERED"] = "1"
    with _work_dir(work_dir) as root:
        data = root / "data"
        log(f"dashboard: registering {settings.job_versions} job versions")
        seed_s = seed_versions(data, settings.job_versions)
        lifecycle = LifecycleProcess("dashboard", data, log_dir / "dashboard-up.log", env)
        separate: DashboardProcess | None = None
        clients: list[httpx.Client] = []
        try:
            log("dashboard: deploying the adder")
            _deploy_running_job(lifecycle, root / "repos")
            separate = DashboardProcess(lifecycle.url, log_dir / "dashboard-serve.log", env)
            token = lifecycle.client.headers["X-Racetrack-Auth"]
            in_process = signed_in_client(lifecycle.url, token)
            over_http = signed_in_client(separate.url, token)
            clients = [in_process, over_http]
            _check_listing(in_process, settings.job_versions + 1)
            chosen = pages(settings.job_versions)
            timings: dict[str, dict[str, PageTiming]] = {"in": {}, "http": {}}
            for page in chosen:
                log(f"dashboard: {page.path}")
                for way, client in (("in", in_process), ("http", over_http)):
                    timings[way][page.key] = PageTiming()
                    for _ in range(WARMUP_REQUESTS):
                        client.get(page.path).read()
                for _ in range(settings.requests):  # interleaved: drift hits both alike
                    _measure(in_process, page, timings["in"][page.key])
                    _measure(over_http, page, timings["http"][page.key])
        finally:
            for client in clients:
                client.close()
            if separate is not None:
                separate.stop()
            lifecycle.stop()
    return DashboardResults(
        settings=settings,
        versions=settings.job_versions,
        seed_s=seed_s,
        pages=chosen,
        in_process=timings["in"],
        over_http=timings["http"],
        environment={
            "load_average_at_start": load_at_start,
            "load_average_at_end": list(os.getloadavg()),
            "cpu_count": os.cpu_count(),
        },
    )


# ---- the report -----------------------------------------------------------------------------------


def render(results: DashboardResults) -> str:
    headers = ["page", "KiB", "p50", "p95", "max", "client p50", "HTTP p50", "HTTP p95"]
    rows = []
    for page in results.pages:
        mine, http = results.in_process[page.key], results.over_http[page.key]
        rows.append(
            [
                page.key,
                f"{mine.body_bytes / 1024:.0f}",
                f"{mine.p(50):.1f}",
                f"{mine.p(95):.1f}",
                f"{max(mine.server_ms):.1f}",
                f"{mine.p(50, client=True):.1f}",
                f"{http.p(50):.1f}",
                f"{http.p(95):.1f}",
            ]
        )
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    slowest, p95 = results.slowest_p95()
    verdict = "met" if p95 <= PAGE_TARGET_MS else "NOT met"
    load = results.environment.get("load_average_at_start") or [0.0]
    lines = [
        f"Dashboard pages with {results.versions} job versions registered "
        f"({results.settings.requests} requests per page and way, server time from Server-Timing, ms)",
        "",
        "p50/p95/max: `trackside up` (the lifecycle called in-process); HTTP: `trackside serve dashboard`",
        "calling the same lifecycle over loopback HTTP; client p50: request sent to body read (in-process).",
        f"Load average at start: {load[0]:.2f} on {results.environment.get('cpu_count')} CPUs",
        "",
        line(headers),
        line(["-" * w for w in widths]),
        *(line(r) for r in rows),
        "",
        *(f"  {page.key}: {page.what}" for page in results.pages),
        "",
        f"  slowest page p95 (in-process)      {p95:7.1f} ms   target <= {PAGE_TARGET_MS:.0f} ms  {verdict}  ({slowest})",
    ]
    return "\n".join(lines)


def to_json(results: DashboardResults) -> dict[str, Any]:
    def timing(t: PageTiming) -> dict[str, Any]:
        return {
            "body_bytes": t.body_bytes,
            "server_ms": {"p50": t.p(50), "p95": t.p(95), "max": max(t.server_ms), "samples": t.server_ms},
            "client_ms": {"p50": t.p(50, True), "p95": t.p(95, True), "samples": t.client_ms},
        }

    slowest, p95 = results.slowest_p95()
    return {
        "settings": {"job_versions": results.settings.job_versions, "requests": results.settings.requests},
        "versions": results.versions,
        "seed_s": results.seed_s,
        "pages": {
            page.key: {
                "path": page.path,
                "what": page.what,
                "in_process": timing(results.in_process[page.key]),
                "over_http": timing(results.over_http[page.key]),
            }
            for page in results.pages
        },
        "target": {
            "page_p95_ms": PAGE_TARGET_MS,
            "slowest": slowest,
            "value": p95,
            "met": p95 <= PAGE_TARGET_MS,
        },
        "environment": results.environment,
    }
