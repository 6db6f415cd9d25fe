"""The import rules of DESIGN §1, checked on the source."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

PLATFORM = {"trackside", "lifecycle", "pub", "dashboard"}


def _imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_the_wrapper_imports_nothing_of_the_platform() -> None:
    files = sorted((REPO / "wrappers" / "python3" / "trackside_wrapper").rglob("*.py"))
    assert files
    offenders = {str(f.relative_to(REPO)): sorted(_imported_packages(f) & PLATFORM) for f in files}
    assert {f: p for f, p in offenders.items() if p} == {}


def test_sample_jobs_import_only_the_wrapper_of_trackside() -> None:
    for path in sorted((REPO / "sample-jobs").rglob("*.py")):
        assert not _imported_packages(path) & PLATFORM, path


def _package_files(package: str) -> list[Path]:
    # not the scratch space benchmarks write into while they run
    return sorted(p for p in (REPO / package).rglob("*.py") if ".work" not in p.relative_to(REPO).parts)


def _is_launcher(module: str) -> bool:
    """trackside's launchers: `trackside up` (trackside.embedded*) and `trackside serve`."""
    name = module.split(".")[-1]
    return name.startswith("embedded") or name == "serve"


def _eager_launcher_imports(path: Path) -> list[str]:
    """Module-level imports of trackside's launcher modules (they must stay lazy)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and _is_launcher(node.module or ""):
            found.append(node.module or "")
    return found


def test_gateway_and_lifecycle_do_not_import_each_other() -> None:
    rules = {"pub": {"lifecycle", "dashboard"}, "lifecycle": {"pub", "dashboard"}}
    offenders = {
        str(f.relative_to(REPO)): sorted(_imported_packages(f) & forbidden)
        for package, forbidden in rules.items()
        for f in _package_files(package)
    }
    assert {f: p for f, p in offenders.items() if p} == {}


def test_the_dashboard_is_a_client_of_the_lifecycle_api_only() -> None:
    """DESIGN §1: the dashboard talks to the lifecycle over its API (never its code or its
    database), and only the launchers import the dashboard."""
    files = _package_files("dashboard")
    assert files
    forbidden = {"lifecycle", "pub", "sqlalchemy"}
    offenders = {str(f.relative_to(REPO)): sorted(_imported_packages(f) & forbidden) for f in files}
    assert {f: p for f, p in offenders.items() if p} == {}
    importers = [
        str(f.relative_to(REPO))
        for package in ("trackside", "lifecycle", "pub", "benchmarks")
        for f in _package_files(package)
        if "dashboard" in _imported_packages(f) and not (package == "trackside" and _is_launcher(f.stem))
    ]
    assert importers == []


def test_the_cli_package_reaches_the_platform_only_through_the_launchers() -> None:
    platform = {"lifecycle", "pub", "dashboard"}
    for path in _package_files("trackside"):
        if _is_launcher(path.stem):
            continue  # loaded lazily by `trackside up` and `trackside serve`, which run the platform
        assert not _imported_packages(path) & platform, path
        assert _eager_launcher_imports(path) == [], f"{path} imports the launcher at module level"
