"""The dashboard in a real browser (Debian's Chromium) against a real `trackside up` with real
deployed jobs (sample-jobs/adder from a file:// git repository, and small jobs of the tests' own):
signing in, the jobs page (live), a job's page and its live log, deploying from the form, public
endpoints, ESC tokens, deleting, and the permission and CSRF refusals.

One platform and one browser for the module; each test works on jobs and users of its own, so
the tests do not depend on each other's order.
"""

from __future__ import annotations

import itertools
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.conftest import SAMPLE_JOBS
from tests.dashboard.browser import (
    PHONE,
    WIDE,
    new_context,
    no_horizontal_scroll,
    screenshot,
    sign_in,
    sign_in_with_token,
)
from tests.gitservers import file_url, make_repo
from tests.lifecycle.platform import TracksideUp

PASSWORD = "correct horse battery"
ADDER = (SAMPLE_JOBS / "adder" / "entrypoint.py").read_text()
# a job with a webview (an ASGI app, no dependency to install)
PAGE_JOB = """
class Page:
    def perform(self, name: str) -> str:
        return f"hello {name}"

    def docs_input_example(self) -> dict:
        return {"name": "Ada"}

    def webview_app(self, base_url: str):
        async def app(scope, receive, send):
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"text/html")]})
            await send({"type": "http.response.body", "body": b"<h1>the page job's webview</h1>"})
        return app
"""
# runs until told to crash; then refuses to start again (its marker file is there)
CRASHER = """
import os
from pathlib import Path

MARK = Path(os.environ["CRASH_MARK"])
if MARK.exists():
    raise RuntimeError("crashed before: refusing to start")


class Crasher:
    def perform(self, crash: bool = False) -> str:
        if crash:
            MARK.write_text("crashed")
            os._exit(1)
        return "fine"
"""
_names = itertools.count(1)


def manifest(name: str, repo: Path, version: str = "0.0.1", **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "owner_email": f"{name}@example.com",
        "jobtype": "python3:latest",
        "version": version,
        "git": {"remote": file_url(repo)},
        "jobtype_extra": {"entrypoint_path": "entrypoint.py"},
        **extra,
    }


@dataclass
class Platform:
    up: TracksideUp
    api: httpx.Client  # the lifecycle API as the admin
    repos: Path

    @property
    def url(self) -> str:
        return self.up.url

    def repo(self, name: str, source: str = ADDER) -> Path:
        path = self.repos / name
        if not path.exists():
            make_repo(path, {"entrypoint.py": source})
        return path

    def deploy(self, body: dict[str, Any]) -> dict[str, Any]:
        r = self.api.post("/deploy", json={"manifest": body})
        assert r.status_code == 202, r.text
        return self.wait(r.json()["id"])

    def wait(self, deployment_id: str) -> dict[str, Any]:
        deadline = time.monotonic() + 180
        while (body := self.api.get(f"/deploy/{deployment_id}").json())["status"] == "in_progress":
            assert time.monotonic() < deadline, body
            time.sleep(0.1)
        assert body["status"] == "done", body
        return dict(body)

    def user(self, prefix: str = "user", read_family: str | None = None) -> str:
        """A new user with PASSWORD; `read_family`: read_job on that family only, nothing else."""
        name = f"{prefix}{next(_names)}"
        assert self.api.post("/users", json={"username": name, "password": PASSWORD}).status_code == 201
        if read_family is not None:
            granted = self.api.get(
                "/permissions", params={"subject_type": "user", "subject_name": name}
            ).json()
            for p in granted:
                assert self.api.delete(f"/permissions/{p['id']}").status_code == 200
            r = self.api.post(
                "/permissions",
                json={
                    "subject_type": "user",
                    "subject_name": name,
                    "scope": "read_job",
                    "job_family": read_family,
                },
            )
            assert r.status_code == 201, r.text
        return name

    def call(
        self,
        name: str,
        body: dict[str, Any],
        token: str | None = None,
        version: str = "0.0.1",
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        headers = {**(headers or {}), **({} if token is None else {"X-Racetrack-Auth": token})}
        return httpx.post(
            f"{self.url}/pub/job/{name}/{version}/api/v1/perform", json=body, headers=headers, timeout=30
        )


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    root = tmp_path_factory.mktemp("dashboard")
    up = TracksideUp(root / "data", root / "up.log", env={"TRACKSIDE_PUB_LAST_CALL_INTERVAL": "0.3"})
    api = httpx.Client(
        base_url=f"{up.url}/lifecycle/api/v1", headers={"X-Racetrack-Auth": up.token}, timeout=30
    )
    repos = root / "repos"
    repos.mkdir()
    platform = Platform(up, api, repos)
    try:
        platform.deploy(manifest("adder", platform.repo("adder"), public_endpoints=["/api/v1/perform"]))
        platform.deploy(manifest("page", platform.repo("page", PAGE_JOB)))
        yield platform
    finally:
        api.close()
        up.stop()


@pytest.fixture
def page(chromium: Browser) -> Iterator[Page]:
    context = new_context(chromium)
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.fixture
def admin_page(page: Page, platform: Platform) -> Page:
    sign_in_with_token(page, platform.url, platform.up.token)
    return page


def row(page: Page, name: str, version: str) -> Any:
    return page.locator(f'tr[data-job="{name}/{version}"]')


def flash(page: Page) -> Any:
    """The one-time message a page shows after a form was sent."""
    return page.locator(".flash")


# ---- signing in and the jobs --------------------------------------------------------------------


def test_sign_in_with_a_password_and_see_the_jobs(page: Page, platform: Platform) -> None:
    alice = platform.user("alice")
    page.goto(f"{platform.url}/dashboard/jobs")
    expect(page).to_have_url(re.compile(r"/dashboard/sign-in\?next=%2Fdashboard%2Fjobs"))
    # with the keyboard alone: the user name field has the focus, Tab goes on, Enter sends
    page.keyboard.type(alice)
    page.keyboard.press("Tab")
    page.keyboard.type("not the password")
    page.keyboard.press("Enter")
    expect(page.get_by_role("alert")).to_contain_text("Wrong user name or password")
    expect(page.get_by_label("User name")).to_have_value(alice)

    sign_in(page, platform.url, alice, PASSWORD)
    expect(page).to_have_url(re.compile(r"/dashboard/jobs$"))
    cookie = next(c for c in page.context.cookies() if c["name"] == "X-Racetrack-Auth")
    assert (
        cookie["httpOnly"] and cookie["sameSite"] == "Lax" and cookie["path"] == "/" and not cookie["secure"]
    )
    expect(page.get_by_role("link", name=alice)).to_be_visible()
    expect(page.get_by_role("link", name="Admin", exact=True)).to_have_count(0)  # not an admin

    adder = row(page, "adder", "0.0.1")
    expect(adder.locator('[data-cell="status"]')).to_have_text("running")
    expect(adder).to_contain_text("adder@example.com")
    expect(adder).to_contain_text("User admin")
    expect(adder.get_by_role("link", name="Swagger")).to_have_attribute("href", "/pub/job/adder/0.0.1/docs")
    expect(adder.get_by_role("link", name="webview")).to_have_count(0)
    web = row(page, "page", "0.0.1")
    expect(web.get_by_role("link", name="webview")).to_have_attribute(
        "href", "/pub/job/page/0.0.1/api/v1/webview/"
    )
    expect(page.locator('[data-live="jobs"]')).to_have_text("Live")

    # the links work in the browser: the sign-in cookie is the token the gateway takes
    web.get_by_role("link", name="webview").click()
    expect(page.get_by_role("heading")).to_have_text("the page job's webview")
    page.go_back()

    # filtering as you type, and through the form without JavaScript's help (the URL keeps it)
    page.get_by_label("Filter").fill("page")
    expect(adder).to_be_hidden()
    expect(web).to_be_visible()
    expect(page).to_have_url(re.compile(r"\?q=page$"))
    page.goto(f"{platform.url}/dashboard/jobs?status=stopped")
    expect(page.locator("tr[data-job]")).to_have_count(0)
    expect(page.get_by_text("No job matches the filter.").first).to_be_visible()
    page.goto(f"{platform.url}/dashboard/jobs?sort=status&order=asc")
    expect(page.get_by_role("link", name="Status")).to_have_attribute("aria-sort", "ascending")


def test_the_jobs_page_follows_statuses_and_calls_live(
    admin_page: Page, platform: Platform, tmp_path: Path
) -> None:
    page = admin_page
    platform.deploy(
        manifest(
            "crasher", platform.repo("crasher", CRASHER), runtime_env={"CRASH_MARK": str(tmp_path / "mark")}
        )
    )
    page.goto(f"{platform.url}/dashboard/jobs")
    expect(page.locator('[data-live="jobs"]')).to_have_text("Live")
    crasher = row(page, "crasher", "0.0.1")
    expect(crasher.locator('[data-cell="status"]')).to_have_text("running")
    expect(crasher.locator('[data-cell="last-call"]')).to_have_text("never")

    assert platform.call("crasher", {}, platform.up.token).json() == "fine"
    expect(crasher.locator('[data-cell="last-call"]')).not_to_have_text("never", timeout=15_000)

    platform.call("crasher", {"crash": True}, platform.up.token)  # the process dies; restarts fail
    status = crasher.locator('[data-cell="status"]')
    expect(status).to_contain_text("error", timeout=30_000)
    expect(status).to_contain_text("refusing to start")
    expect(page.locator("[data-jobs-changed]")).to_be_hidden()

    # a version deployed while the page is open is announced
    platform.deploy(manifest("crasher", platform.repo("adder"), version="0.0.2"))
    expect(page.locator("[data-jobs-changed]")).to_be_visible(timeout=15_000)
    assert platform.api.delete("/job/crasher/0.0.1").status_code == 200
    expect(crasher).to_have_class(re.compile("gone"), timeout=15_000)


# ---- one job --------------------------------------------------------------------------------------


def test_a_job_page_and_its_live_log(admin_page: Page, platform: Platform) -> None:
    page = admin_page
    page.goto(f"{platform.url}/dashboard/jobs/adder/latest")
    expect(page).to_have_url(re.compile(r"/dashboard/jobs/adder/0\.0\.1$"))
    expect(page.get_by_role("heading", level=1)).to_contain_text("adder 0.0.1")
    expect(page.get_by_role("heading", level=1)).to_contain_text("running")
    manifest_block = page.get_by_label("Manifest (YAML)")
    expect(manifest_block).to_contain_text("entrypoint_path: entrypoint.py")
    expect(manifest_block.locator(".y-key").first).to_have_text("name")
    history = page.locator("#deployments")
    expect(history).to_contain_text("fetching the source code")
    expect(history).to_contain_text("checking the input examples")
    expect(history.get_by_text("done", exact=True).first).to_be_visible()
    metrics = page.locator("#metrics-h").locator("..")
    expect(metrics.locator(".metric").filter(has_text="Calls")).to_contain_text(re.compile(r"\d"))
    expect(metrics.locator(".metric").filter(has_text="Cold start")).to_contain_text(" s")
    expect(page.locator("#public-endpoints")).to_contain_text("/api/v1/perform")

    log = page.locator("pre#runtime-log")
    expect(log).to_contain_text("started on port")
    page.get_by_role("button", name="Follow live").click()
    expect(page.locator('[data-live="log"]')).to_have_text("Following")
    tracing_id = f"dashboard-test-{time.time_ns()}"
    r = platform.call(
        "adder", {"numbers": [20, 22]}, platform.up.token, headers={"X-Request-Tracing-Id": tracing_id}
    )
    assert r.status_code == 200 and r.json() == 42
    expect(log).to_contain_text(tracing_id, timeout=15_000)  # the call's line, arrived live
    page.get_by_role("button", name="Stop following").click()
    expect(page.locator('[data-live="log"]')).to_have_text("Not following")

    page.locator("summary").filter(has_text="Build log").click()
    expect(page.locator("#build-log pre")).to_contain_text("input example for /api/v1/perform: 200")


def test_redeploy_from_the_job_page(admin_page: Page, platform: Platform) -> None:
    page = admin_page
    platform.deploy(manifest("again", platform.repo("adder")))
    page.goto(f"{platform.url}/dashboard/jobs/again/0.0.1")
    page.get_by_role("button", name="Redeploy 0.0.1").click()
    expect(page).to_have_url(re.compile(r"/dashboard/deployments/[0-9a-f-]{36}$"))
    expect(page.locator("h1")).to_contain_text("done", timeout=60_000)
    expect(page.get_by_role("link", name="Open the job page")).to_be_visible()
    deployments = platform.api.get("/deployments", params={"job_name": "again"}).json()
    assert len(deployments) == 2 and deployments[0]["force"] is True


def test_delete_a_job_after_typing_its_name(admin_page: Page, platform: Platform) -> None:
    page = admin_page
    platform.deploy(manifest("doomed", platform.repo("adder")))
    page.goto(f"{platform.url}/dashboard/jobs/doomed/0.0.1")
    button = page.get_by_role("button", name="Delete doomed 0.0.1")
    expect(button).to_be_disabled()
    page.get_by_label("Type doomed to confirm").fill("doome")
    expect(button).to_be_disabled()
    # the server checks the name too: a form sent with a wrong one deletes nothing
    page.evaluate("document.querySelector('[data-delete-form] button').disabled = false")
    button.click()
    expect(page.get_by_role("alert")).to_contain_text("Not deleted: type the job's name, doomed, to confirm.")
    assert platform.api.get("/job/doomed/0.0.1").status_code == 200

    page.get_by_label("Type doomed to confirm").fill("doomed")
    expect(button).to_be_enabled()
    button.click()
    expect(page).to_have_url(re.compile(r"/dashboard/jobs$"))
    expect(flash(page)).to_contain_text("doomed 0.0.1 was deleted.")
    expect(row(page, "doomed", "0.0.1")).to_have_count(0)
    assert platform.api.get("/job/doomed/0.0.1").status_code == 404


# ---- deployments ----------------------------------------------------------------------------------


def test_deploy_from_the_form_and_watch_it_run(admin_page: Page, platform: Platform) -> None:
    page = admin_page
    page.goto(f"{platform.url}/dashboard/deployments")
    expect(page.locator('[data-live="deployments"]')).to_have_text("Live")
    page.get_by_role("link", name="New deployment").click()
    page.get_by_label("Manifest (YAML)").fill("name: [unclosed")
    page.get_by_role("button", name="Deploy").click()
    expect(page.get_by_role("alert")).to_contain_text("not valid YAML (line 1")
    page.get_by_label("Manifest (YAML)").fill("name: formjob\nowner_email: me@example.com\nversion: 1.0.0\n")
    page.get_by_role("button", name="Deploy").click()
    expect(page.get_by_role("alert")).to_contain_text("git")  # the lifecycle's field errors, shown

    repo = platform.repo("formjob")
    text = (
        "name: formjob\nowner_email: me@example.com\njobtype: python3:latest\nversion: 1.0.0\n"
        f"git:\n  remote: {file_url(repo)}\njobtype_extra:\n  entrypoint_path: entrypoint.py\n"
    )
    page.get_by_label("Manifest (YAML)").fill(text)
    page.get_by_label("User name").fill("someone")
    page.get_by_label("Password or access token").fill("a-git-token")
    page.get_by_role("button", name="Deploy").click()
    expect(page).to_have_url(re.compile(r"/dashboard/deployments/[0-9a-f-]{36}$"))
    phases = page.locator("ol.phases li")
    expect(phases).to_have_count(6)
    expect(page.locator("h1")).to_contain_text("done", timeout=120_000)
    expect(phases.filter(has_text="done")).to_have_attribute("data-state", "done")
    expect(page.locator('li[data-phase="building the environment"]')).to_have_attribute("data-state", "done")
    expect(page.locator("pre[data-build-log]")).to_contain_text("input example")
    page.get_by_role("link", name="Open the job page").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("formjob 1.0.0")
    expect(page.get_by_role("heading", level=1)).to_contain_text("running")

    page.goto(f"{platform.url}/dashboard/deployments?job=formjob")
    first = page.locator("tr[data-deployment]").first
    expect(first).to_contain_text("formjob 1.0.0")
    expect(first.locator('[data-cell="status"]')).to_have_text("done")


def test_the_deployments_page_shows_a_deployment_in_flight(admin_page: Page, platform: Platform) -> None:
    page = admin_page
    page.goto(f"{platform.url}/dashboard/deployments?job=inflight")
    expect(page.locator('[data-live="deployments"]')).to_have_text("Live")
    r = platform.api.post("/deploy", json={"manifest": manifest("inflight", platform.repo("adder"))})
    deployment = page.locator(f'tr[data-deployment="{r.json()["id"]}"]')
    expect(deployment).to_be_visible(timeout=15_000)  # added live, without a reload
    expect(deployment).to_contain_text("inflight 0.0.1")
    expect(deployment.locator('[data-cell="status"]')).to_have_text("done", timeout=60_000)
    expect(deployment.locator('[data-cell="phase"]')).to_have_text("done")


# ---- admin ----------------------------------------------------------------------------------------


def test_approve_a_public_endpoint_then_call_it_without_a_token(admin_page: Page, platform: Platform) -> None:
    page = admin_page
    assert platform.call("adder", {"numbers": [1]}).status_code == 401
    page.goto(f"{platform.url}/dashboard/admin/public-endpoints")
    request = page.locator("tr[data-request]").filter(has_text="adder 0.0.1")
    expect(request).to_contain_text("/api/v1/perform")
    expect(request).to_contain_text("pending")
    request.get_by_role("button", name="Approve").click()
    expect(flash(page)).to_contain_text("Approved: /api/v1/perform of adder 0.0.1")
    page.goto(f"{platform.url}/dashboard/jobs/adder/0.0.1")
    expect(page.locator("#public-endpoints")).to_contain_text("approved")

    deadline = time.monotonic() + 15  # the gateway's cached decision expires within its TTL
    while (r := platform.call("adder", {"numbers": [40, 2]})).status_code != 200:
        assert time.monotonic() < deadline, r.text
        time.sleep(0.3)
    assert r.json() == 42


def test_create_an_esc_token_and_call_a_job_with_it(admin_page: Page, platform: Platform) -> None:
    page = admin_page
    platform.deploy(manifest("invoicer", platform.repo("adder")))
    page.goto(f"{platform.url}/dashboard/admin/escs")
    page.get_by_label("Name", exact=True).fill("billing")
    page.get_by_role("button", name="Create ESC").click()
    expect(flash(page)).to_contain_text("ESC billing was created")
    esc = page.locator('section[data-esc="billing"]')
    esc.get_by_label("Description").fill("the billing service")
    esc.get_by_label("Expires after (days)").fill("30")
    esc.get_by_role("button", name="New token").click()
    token = page.locator("pre[data-new-token]").inner_text().strip()
    assert token.startswith("tst_")
    esc = page.locator('section[data-esc="billing"]')
    expect(esc).to_contain_text("the billing service")
    expect(esc).to_contain_text(token[:8])
    assert platform.call("invoicer", {"numbers": [2, 3]}, token, version="latest").status_code == 403
    page.goto(f"{platform.url}/dashboard/admin/escs")  # the token is shown once, in the answer to the form
    expect(page.locator("pre[data-new-token]")).to_have_count(0)

    page.goto(f"{platform.url}/dashboard/admin/permissions?subject_type=esc&subject_name=billing")
    page.get_by_label("Scope").select_option("call_job")
    page.get_by_label("Job family", exact=True).nth(1).fill("invoicer")
    page.get_by_role("button", name="Grant").click()
    expect(flash(page)).to_contain_text("Granted call_job on invoicer to billing.")
    expect(page.locator("tr[data-permission]")).to_contain_text("call_job")
    deadline = time.monotonic() + 15
    while (r := platform.call("invoicer", {"numbers": [2, 3]}, token, version="latest")).status_code != 200:
        assert time.monotonic() < deadline, r.text
        time.sleep(0.3)
    assert r.json() == 5

    page.goto(f"{platform.url}/dashboard/admin/escs")
    last_used = page.locator('section[data-esc="billing"] td[data-label="Last used"]')
    expect(last_used).to_have_text(re.compile(r"ago|just now"))
    page.locator('section[data-esc="billing"]').get_by_role("button", name="Revoke").click()
    expect(flash(page)).to_contain_text("was revoked")
    expect(page.locator('section[data-esc="billing"]')).to_contain_text("revoked")
    assert platform.api.get("/users/me", headers={"X-Racetrack-Auth": token}).status_code == 401


def test_admin_manages_users_and_reads_the_audit_log(admin_page: Page, platform: Platform) -> None:
    page = admin_page
    page.goto(f"{platform.url}/dashboard/admin/users")
    page.get_by_label("User name").fill("bob")
    page.get_by_label("Password", exact=True).fill("short")
    page.get_by_role("button", name="Create user").click()
    expect(page.get_by_role("alert")).to_contain_text("password")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Create user").click()
    expect(flash(page)).to_contain_text("User bob was created.")
    bob = page.locator('tr[data-user="bob"]')
    bob.get_by_role("button", name="Make admin").click()
    expect(page.locator('tr[data-user="bob"]')).to_contain_text("admin")
    page.locator('tr[data-user="bob"]').get_by_role("button", name="Deactivate").click()
    expect(flash(page)).to_contain_text("User bob was deactivated")
    expect(page.locator('tr[data-user="bob"]')).to_contain_text("inactive")
    r = platform.api.post("/users/login", json={"username": "bob", "password": PASSWORD})
    assert r.status_code == 401

    page.goto(f"{platform.url}/dashboard/admin/audit?action=user.deactivate")
    expect(page.locator("tbody tr").first).to_contain_text("User bob")
    expect(page.locator("tbody tr").first).to_contain_text("User admin")
    page.goto(f"{platform.url}/dashboard/admin/audit?actor=nobody-at-all")
    expect(page.get_by_text("No events match.")).to_be_visible()


# ---- the user's own account -----------------------------------------------------------------------


def test_profile_token_password_and_sign_out(page: Page, platform: Platform, tmp_path: Path) -> None:
    carol = platform.user("carol")
    sign_in(page, platform.url, carol, PASSWORD)
    page.get_by_role("link", name=carol).click()
    page.get_by_role("button", name="Regenerate token").click()
    line = page.locator("pre[data-secret]").inner_text().strip()
    match = re.fullmatch(rf"trackside login (tst_\S+) --remote {re.escape(platform.url)}", line)
    assert match, line
    token = match.group(1)
    assert platform.api.get("/users/me", headers={"X-Racetrack-Auth": token}).json()["username"] == carol
    # the line works as printed
    done = subprocess.run(
        [sys.executable, "-m", *shlex.split(line)],
        env={**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert f"Logged in to {platform.url} as User {carol}" in done.stdout
    page.get_by_role("button", name="Regenerate token").click()
    newer = page.locator("[data-new-token]").inner_text().strip()
    assert newer != token
    assert platform.api.get("/users/me", headers={"X-Racetrack-Auth": token}).status_code == 401  # replaced

    page.get_by_label("Current password").fill("wrong password")
    page.get_by_label("New password", exact=True).fill("a new password!")
    page.get_by_label("New password again").fill("a new password!")
    page.get_by_role("button", name="Change password").click()
    expect(page.get_by_role("alert")).to_contain_text("The current password is wrong.")
    page.get_by_label("Current password").fill(PASSWORD)
    page.get_by_label("New password", exact=True).fill("a new password!")
    page.get_by_label("New password again").fill("a new password!")
    page.get_by_role("button", name="Change password").click()
    expect(flash(page)).to_contain_text("Your password was changed.")

    session = next(c["value"] for c in page.context.cookies() if c["name"] == "X-Racetrack-Auth")
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/dashboard/sign-in$"))
    expect(flash(page)).to_contain_text("You are signed out.")
    assert platform.api.get("/users/me", headers={"X-Racetrack-Auth": session}).status_code == 401
    assert not [c for c in page.context.cookies() if c["name"] == "X-Racetrack-Auth"]
    sign_in(page, platform.url, carol, "a new password!")
    expect(page.get_by_role("link", name=carol)).to_be_visible()


# ---- refusals -------------------------------------------------------------------------------------


def test_a_user_sees_only_what_they_may_read_and_is_refused_the_rest(page: Page, platform: Platform) -> None:
    dave = platform.user("dave", read_family="page")
    sign_in(page, platform.url, dave, PASSWORD)
    expect(page.locator("tr[data-job]")).to_have_count(1)
    expect(row(page, "page", "0.0.1")).to_be_visible()
    expect(page.get_by_text("Showing the jobs you may read.")).to_be_visible()

    page.goto(f"{platform.url}/dashboard/jobs/adder/0.0.1")
    expect(page.get_by_role("heading", level=1)).to_have_text("Not allowed")
    expect(page.get_by_role("alert")).to_contain_text(
        f"User {dave} has no read_job permission for job family adder"
    )
    assert "Traceback" not in page.content()

    page.goto(f"{platform.url}/dashboard/admin/users")
    expect(page.get_by_role("heading", level=1)).to_have_text("Not allowed")
    expect(page.get_by_role("alert")).to_contain_text("admin pages are for admins")

    page.goto(f"{platform.url}/dashboard/jobs/page/0.0.1")
    page.get_by_label("Type page to confirm").fill("page")
    page.get_by_role("button", name="Delete page 0.0.1").click()
    expect(page.get_by_role("alert")).to_contain_text(
        f"Not deleted: User {dave} has no delete_job permission"
    )
    assert platform.api.get("/job/page/0.0.1").status_code == 200

    page.goto(f"{platform.url}/dashboard/deployments")
    assert all("page" in t for t in page.locator("tr[data-deployment] [data-cell=job]").all_inner_texts())


def test_forms_without_a_valid_csrf_token_are_refused(page: Page, platform: Platform) -> None:
    erin = platform.user("erin")
    sign_in(page, platform.url, erin, PASSWORD)
    session = next(c["value"] for c in page.context.cookies() if c["name"] == "X-Racetrack-Auth")
    cookies = {"X-Racetrack-Auth": session}
    with httpx.Client(base_url=platform.url, cookies=cookies, follow_redirects=False) as client:
        for form in ({}, {"csrf_token": "0" * 64}):
            r = client.post("/dashboard/profile/token", data=form)
            assert r.status_code == 403
            assert "Form refused" in r.text and "without a valid security token" in r.text
        assert platform.api.get(f"/users/{erin}/tokens").json()[0]["description"] == "login"  # none made

        # a token of another session does not do either
        other = httpx.post(
            f"{platform.url}/lifecycle/api/v1/users/login", json={"username": erin, "password": PASSWORD}
        ).json()["token"]
        page.goto(f"{platform.url}/dashboard/profile")
        mine = page.locator('input[name="csrf_token"]').first.get_attribute("value")
        with httpx.Client(base_url=platform.url, cookies={"X-Racetrack-Auth": other}) as stranger:
            assert (
                stranger.post("/dashboard/profile/token", data={"csrf_token": mine or ""}).status_code == 403
            )
        assert client.post("/dashboard/profile/token", data={"csrf_token": mine or ""}).status_code == 200

        # the sign-in form's token is bound to a cookie of its own
        r = client.post(
            "/dashboard/sign-in", data={"username": erin, "password": PASSWORD, "csrf_token": "x"}
        )
        assert r.status_code == 403 and "sign-in form had expired" in r.text

    # another site's form: the cookie is SameSite=Lax, so the browser does not send it along
    attacker = "http://attacker.invalid/"
    html = f'<form method="post" action="{platform.url}/dashboard/sign-out"><button>go</button></form>'
    page.route(attacker, lambda route: route.fulfill(status=200, content_type="text/html", body=html))
    page.goto(attacker)
    with page.expect_navigation():
        page.get_by_role("button", name="go").click()
    # the dashboard saw no session (so signed nobody out) and sent the browser to sign in, where
    # its own (same-site) cookie shows it is signed in still
    expect(page).to_have_url(re.compile(r"/dashboard/jobs$"))
    expect(page.get_by_role("link", name=erin)).to_be_visible()
    assert platform.api.get("/users/me", headers={"X-Racetrack-Auth": session}).status_code == 200
    # and a form of the same site without the token (the page's own script could be injected)
    page.goto(f"{platform.url}/dashboard/profile")
    page.evaluate("document.querySelectorAll('input[name=csrf_token]').forEach(e => e.remove())")
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Form refused")
    assert platform.api.get("/users/me", headers={"X-Racetrack-Auth": session}).status_code == 200


def test_errors_are_pages_with_a_message(page: Page, platform: Platform) -> None:
    sign_in_with_token(page, platform.url, platform.up.token)
    response = page.goto(f"{platform.url}/dashboard/no/such/page")
    assert response is not None and response.status == 404
    expect(page.get_by_role("alert")).to_contain_text("There is no page at /dashboard/no/such/page.")
    response = page.goto(f"{platform.url}/dashboard/jobs/nosuchjob/1.0.0")
    assert response is not None and response.status == 404
    expect(page.get_by_role("alert")).to_have_text("job nosuchjob not found")
    response = page.goto(f"{platform.url}/dashboard/deployments/not-a-deployment")
    assert response is not None and response.status == 404
    assert "Traceback" not in page.content()


def test_everything_but_live_updates_works_without_javascript(chromium: Browser, platform: Platform) -> None:
    context = new_context(chromium, javascript=False)
    try:
        page = context.new_page()
        sign_in_with_token(page, platform.url, platform.up.token)  # <details> opens without a script
        page.get_by_label("Filter").fill("page")
        page.get_by_role("button", name="Apply").click()
        expect(page).to_have_url(re.compile(r"/dashboard/jobs\?q=page"))
        expect(page.locator("tr[data-job]")).to_have_count(1)
        expect(row(page, "page", "0.0.1")).to_be_visible()
        expect(page.locator('[data-live="jobs"]')).to_have_text("Live updates off")

        page.goto(f"{platform.url}/dashboard/deployments/new")
        text = (
            "name: nojs\nowner_email: me@example.com\njobtype: python3:latest\nversion: 0.0.1\n"
            f"git:\n  remote: {file_url(platform.repo('adder'))}\njobtype_extra:\n  entrypoint_path: entrypoint.py\n"
        )
        page.get_by_label("Manifest (YAML)").fill(text)
        page.get_by_role("button", name="Deploy").click()
        expect(page).to_have_url(re.compile(r"/dashboard/deployments/[0-9a-f-]{36}$"))
        # the page reloads itself (a meta refresh) until the deployment is over
        expect(page.locator("h1")).to_contain_text("done", timeout=120_000)
        expect(page.get_by_role("link", name="Open the job page")).to_be_visible()
        expect(page.locator("pre[data-build-log]")).to_contain_text("input example for /api/v1/perform: 200")
    finally:
        context.close()


# ---- what it looks like ---------------------------------------------------------------------------


MAIN_PAGES = {
    "jobs": "/dashboard/jobs",
    "job": "/dashboard/jobs/adder/0.0.1",
    "deployments": "/dashboard/deployments",
    "deploy-form": "/dashboard/deployments/new",
    "profile": "/dashboard/profile",
    "admin-users": "/dashboard/admin/users",
    "admin-escs": "/dashboard/admin/escs",
    "admin-permissions": "/dashboard/admin/permissions",
    "admin-public-endpoints": "/dashboard/admin/public-endpoints?status=",
    "admin-audit": "/dashboard/admin/audit",
}


@pytest.mark.parametrize("viewport", [WIDE, PHONE], ids=["1280px", "phone"])
def test_screenshots_of_each_main_page(
    chromium: Browser, platform: Platform, screenshots: Path, viewport: dict[str, int]
) -> None:
    width = f"{viewport['width']}px"
    context = new_context(chromium, viewport)
    try:
        page = context.new_page()
        page.goto(f"{platform.url}/dashboard/sign-in")
        assert no_horizontal_scroll(page)
        screenshot(page, screenshots, f"sign-in-{width}")
        sign_in_with_token(page, platform.url, platform.up.token)
        deployment = platform.api.get("/deployments", params={"job_name": "adder"}).json()[0]["id"]
        for name, path in {**MAIN_PAGES, "deployment": f"/dashboard/deployments/{deployment}"}.items():
            response = page.goto(platform.url + path)
            assert response is not None and response.status == 200, (path, response and response.status)
            expect(page.locator("main h1")).to_be_visible()
            assert no_horizontal_scroll(page), f"{path} is wider than {width}"
            screenshot(page, screenshots, f"{name}-{width}")
    finally:
        context.close()
    print(f"screenshots at {screenshots}")
