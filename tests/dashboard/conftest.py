"""The dashboard's browser tests: Chromium for a module, and where their screenshots went."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.dashboard.browser import SCREENSHOTS_ENV, SCREENSHOTS_FOLDER, chromium, screenshots

__all__ = ["chromium", "screenshots"]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    given = os.environ.get(SCREENSHOTS_ENV, "").strip()
    if given:
        folders = [Path(given)]
    else:  # pytest's temporary folder, or its workers' (pytest-xdist)
        factory = getattr(config, "_tmp_path_factory", None)
        if factory is None:
            return
        root = factory.getbasetemp()
        folders = sorted({*root.glob(SCREENSHOTS_FOLDER), *root.glob(f"*/{SCREENSHOTS_FOLDER}")})
    for folder in folders:
        shots = sorted(folder.glob("*.png")) if folder.is_dir() else []
        if shots:
            terminalreporter.write_line(f"dashboard screenshots ({len(shots)}): {folder}")
