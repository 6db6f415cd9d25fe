"""Loading the job: class discovery, background init, and failures reported by /live."""

from __future__ import annotations

import os
import time
from pathlib import Path

from tests.conftest import JobRunner, RunningJob, write_job


def _live_error(job: RunningJob) -> dict:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        r = job.client.get("/live")
        if r.status_code == 500:
            return r.json()
        time.sleep(0.05)
    raise AssertionError(f"/live never reported the failure:\n{job.logs()}")


def test_init_runs_in_the_background(tmp_path: Path, run_job: JobRunner) -> None:
    job_dir = write_job(
        tmp_path / "slow",
        """
import os
import time
class Slow:
    def __init__(self):
        time.sleep(2)
    def perform(self):
        return "done"
""",
    )
    job = run_job(job_dir, env={"JOB_DEPLOYMENT_TIMESTAMP": "1700000000"}, wait="live")
    live = job.client.get("/live")
    assert live.status_code == 200
    assert live.json()["deployment_timestamp"] == 1700000000
    assert live.json()["status"] == "initialising"
    assert job.client.get("/ready").status_code == 503
    assert job.client.get("/health").json()["status"] == "initialising"
    early = job.client.post("/api/v1/perform", json={})
    assert early.status_code == 503 and early.json()["type"] == "NotReady" and early.headers["retry-after"]
    job.wait_ready()
    assert job.client.post("/api/v1/perform", json={}).json() == "done"
    assert job.client.get("/health").json()["status"] == "pass"


def test_init_failure_keeps_the_process_up_and_live_reports_it(tmp_path: Path, run_job: JobRunner) -> None:
    job_dir = write_job(
        tmp_path / "bad-init",
        """
class Broken:
    def __init__(self):
        self.load()

    def load(self):
        raise FileNotFoundError("model.pkl is missing")

    def perform(self):
        return 1
""",
    )
    job = run_job(job_dir, wait="live")
    error = _live_error(job)
    assert error["type"] == "FileNotFoundError"
    assert "model.pkl is missing" in error["error"]
    assert error["location"].endswith("entrypoint.py:7")
    assert error["location"] in error["error"]
    assert job.client.get("/ready").status_code == 500
    assert job.client.get("/health").status_code == 500
    call = job.client.post("/api/v1/perform", json={})
    assert call.status_code == 503 and call.json()["type"] == "JobNotLoaded"
    assert "model.pkl is missing" in call.json()["error"]
    assert job.process.poll() is None
    assert "Traceback" in job.logs()


def test_import_failures_name_file_and_line(tmp_path: Path, run_job: JobRunner) -> None:
    syntax = write_job(tmp_path / "syntax", "class J:\n    def perform(self)\n        return 1\n")
    missing = write_job(
        tmp_path / "missing",
        "import surely_not_installed_pkg\nclass J:\n    def perform(self):\n        return 1\n",
    )
    error = _live_error(run_job(syntax, wait="live"))
    assert error["type"] == "SyntaxError" and error["location"].endswith("entrypoint.py:2")
    error = _live_error(run_job(missing, wait="live"))
    assert error["type"] == "ModuleNotFoundError"
    assert "surely_not_installed_pkg" in error["error"]
    assert error["location"].endswith("entrypoint.py:1")


def test_star_args_are_refused_before_init(tmp_path: Path, run_job: JobRunner) -> None:
    job_dir = write_job(
        tmp_path / "args",
        """
class J:
    def __init__(self):
        open("init-ran", "w").write("yes")
    def perform(self, *numbers):
        return sum(numbers)
""",
    )
    error = _live_error(run_job(job_dir, wait="live"))
    assert error["type"] == "EntrypointError"
    assert "*numbers is not supported" in error["error"]
    assert error["location"].endswith("entrypoint.py:5")
    assert not (job_dir / "init-ran").exists()


def test_class_discovery(tmp_path: Path, run_job: JobRunner) -> None:
    two = """
class Helper:
    pass
class First:
    def perform(self):
        return "first"
class Second:
    def perform(self):
        return "second"
"""
    ambiguous = write_job(tmp_path / "ambiguous", two)
    error = _live_error(run_job(ambiguous, wait="live"))
    assert "several classes with a perform() method" in error["error"] and "First, Second" in error["error"]

    chosen = write_job(tmp_path / "chosen", two, manifest_extra="  entrypoint_class: Second\n")
    job = run_job(chosen)
    assert job.client.post("/api/v1/perform").json() == "second"

    none = write_job(tmp_path / "none", "class Helper:\n    pass\n")
    assert "no class with a perform() method" in _live_error(run_job(none, wait="live"))["error"]

    wrong = write_job(tmp_path / "wrong", two, manifest_extra="  entrypoint_class: Third\n")
    assert "no class 'Third'" in _live_error(run_job(wrong, wait="live"))["error"]


def test_job_runs_in_its_root_with_its_modules_importable(tmp_path: Path, run_job: JobRunner) -> None:
    job_dir = write_job(
        tmp_path / "root",
        """
import os
from helpers.numbers import double
class J:
    def __init__(self):
        self.data = open("data.txt").read().strip()
    def perform(self, x: int):
        return {"double": double(x), "data": self.data, "cwd": os.getcwd()}
""",
        files={
            "helpers/__init__.py": "",
            "helpers/numbers.py": "def double(x):\n    return 2 * x\n",
            "data.txt": "hello\n",
        },
    )
    job = run_job(job_dir)
    assert job.client.post("/api/v1/perform", json={"x": 4}).json() == {
        "double": 8,
        "data": "hello",
        "cwd": str(job_dir.resolve()),
    }


def test_manifest_from_environment_wins(tmp_path: Path, run_job: JobRunner) -> None:
    job_dir = write_job(
        tmp_path / "env",
        "class J:\n    def perform(self):\n        return 'file'\n",
        files={"other.py": "class K:\n    def perform(self):\n        return 'env'\n"},
    )
    manifest = "name: envjob\nversion: 2.0.0\njobtype_extra:\n  entrypoint_path: other.py\n"
    job = run_job(job_dir, env={"JOB_MANIFEST_YAML": manifest})
    assert job.client.post("/api/v1/perform").json() == "env"
    assert job.client.get("/live").json()["job_version"] == "2.0.0"


def test_bad_manifest_is_reported_by_live(tmp_path: Path, run_job: JobRunner) -> None:
    job_dir = write_job(
        tmp_path / "badmanifest",
        "class J:\n    def perform(self):\n        return 1\n",
        manifest_extra="  max_concurrency: lots\n",
    )
    error = _live_error(run_job(job_dir, wait="live"))
    assert error["type"] == "ManifestError"
    assert "jobtype_extra.max_concurrency: expected an integer >= 1, got 'lots'" in error["error"]

    no_manifest = tmp_path / "nomanifest"
    no_manifest.mkdir()
    error = _live_error(run_job(no_manifest, wait="live"))
    assert "job.yaml does not exist" in error["error"]


def test_racetrack_legacy_python_section_is_read(tmp_path: Path, run_job: JobRunner) -> None:
    job_dir = tmp_path / "legacy"
    job_dir.mkdir()
    (job_dir / "fatman_entrypoint.py").write_text(
        "class FatmanEntrypoint:\n    def perform(self, x: float, y: float) -> float:\n        return x * y\n"
    )
    (job_dir / "job.yaml").write_text(
        "name: legacy\nowner_email: a@b.c\nlang: python3:latest\n"
        "python:\n  entrypoint_path: fatman_entrypoint.py\n"
    )
    job = run_job(job_dir)
    assert job.client.post("/pub/fatman/legacy/0.0.1/api/v1/perform", json={"x": 20, "y": 5}).json() == 100


def test_cli_rejects_a_missing_directory(tmp_path: Path) -> None:
    import subprocess
    import sys

    r = subprocess.run(
        [sys.executable, "-m", "trackside_wrapper", "run", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 2
    assert "is not a directory" in r.stderr


def test_body_limit_settings_are_checked(tmp_path: Path, run_job: JobRunner) -> None:
    import subprocess
    import sys

    job_dir = write_job(
        tmp_path / "limit", "class J:\n    def perform(self, data: str = ''):\n        return len(data)\n"
    )
    cmd = [sys.executable, "-m", "trackside_wrapper", "run", str(job_dir), "--port", "9"]
    bad_flag = subprocess.run([*cmd, "--max-body-size", "lots"], capture_output=True, text=True, timeout=30)
    assert bad_flag.returncode == 2 and "not a size: 'lots'" in bad_flag.stderr
    bad_env = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "TRACKSIDE_MAX_BODY_SIZE": "16 pages"},
    )
    assert bad_env.returncode == 2
    assert "TRACKSIDE_MAX_BODY_SIZE: not a size: '16 pages'" in bad_env.stderr

    job = run_job(job_dir, env={"TRACKSIDE_MAX_BODY_SIZE": "2k"})
    assert job.client.post("/api/v1/perform", json={"data": "x" * 1500}).json() == 1500
    assert job.client.post("/api/v1/perform", json={"data": "x" * 2100}).status_code == 413
