"""Debian's Chromium driven by playwright, and what the dashboard's browser tests share: signing
in, screenshots, reading what a page shows.

Chromium is `/usr/bin/chromium` (apt; never `playwright install`). Outside CI a missing one skips
the browser tests with the reason; under CI=true it fails them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

from tests.conftest import IN_CI

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]
WIDE = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
SCREENSHOTS_ENV = "TRACKSIDE_SCREENSHOTS"
SCREENSHOTS_FOLDER = "dashboard-screenshots"


def require_chromium() -> None:
    if CHROMIUM.exists():
        return
    reason = f"{CHROMIUM} is missing (apt-get install chromium)"
    if IN_CI:
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    require_chromium()
    with sync_playwright() as playwright:
        browser = _launch(playwright)
        try:
            yield browser
        finally:
            browser.close()


def _launch(playwright: Playwright) -> Browser:
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)


def new_context(browser: Browser, viewport: dict[str, int] = WIDE, javascript: bool = True) -> BrowserContext:
    context = browser.new_context(viewport=viewport, java_script_enabled=javascript)  # type: ignore[arg-type]
    context.set_default_timeout(20_000)
    return context


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """$TRACKSIDE_SCREENSHOTS, or a folder in pytest's temporary directory (named at the end of the run)."""
    given = os.environ.get(SCREENSHOTS_ENV, "").strip()
    directory = Path(given) if given else tmp_path_factory.mktemp(SCREENSHOTS_FOLDER, numbered=False)
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def screenshot(page: Page, directory: Path, name: str) -> Path:
    path = directory / f"{re.sub(r'[^a-z0-9-]+', '-', name.lower())}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def sign_in(page: Page, base_url: str, username: str, password: str) -> None:
    page.goto(f"{base_url}/dashboard/sign-in")
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.wait_for_url(re.compile(r".*/dashboard/(jobs|profile|admin).*"))


def sign_in_with_token(page: Page, base_url: str, token: str) -> None:
    page.goto(f"{base_url}/dashboard/sign-in")
    page.get_by_text("Sign in with an API token instead").click()
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Sign in with the token").click()
    page.wait_for_url(re.compile(r".*/dashboard/jobs.*"))


def no_horizontal_scroll(page: Page) -> bool:
    """The page fits its viewport's width (nothing sticks out sideways on a phone)."""
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"))
