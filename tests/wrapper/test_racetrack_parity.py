"""The same Racetrack-style job served by Racetrack's own runner and by ours, answers compared.

Racetrack's runner (racetrack-job-runner from PyPI) is installed into its own venv by the
benchmark harness's helper; a job written for it must behave the same under Trackside.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from benchmarks.racetrack import ensure_runner
from tests.conftest import REPO, RunningJob, free_port, start_job

ENTRYPOINT = '''
import random
from typing import Callable, Dict, List


class JobEntrypoint:
    def __init__(self):
        self.calls = 0

    def perform(self, x: float, y: float = 2.0) -> float:
        """
        Multiply two numbers.
        :param x: The first number.
        :param y: The second number.
        """
        self.calls += 1
        if x < 0:
            raise ValueError("x must not be negative")
        return x * y

    def auxiliary_endpoints(self) -> Dict[str, Callable]:
        return {"/explain": self.explain, "/echo": self.echo}

    def explain(self, x: float, y: float) -> Dict[str, float]:
        result = self.perform(x, y)
        return {"x_importance": x / result, "y_importance": y / result}

    def echo(self, **kwargs) -> dict:
        return {"received": kwargs}

    def static_endpoints(self):
        return {"/readme": "README.md", "/manifest": ("job.yaml", "application/x-yaml"), "/files": "public"}

    def docs_input_examples(self) -> Dict[str, Dict]:
        return {"/perform": {"x": 20, "y": 5}, "/explain": {"x": 1, "y": 2}}

    def metrics(self) -> List[dict]:
        return [{"name": "job_was_called", "description": "calls", "value": self.calls, "labels": {"color": "blue"}}]
'''

MANIFEST = """name: parity
owner_email: nobody@example.com
jobtype: python3:latest
version: 1.0.0
git:
  remote: https://github.com/example/parity
jobtype_extra:
  entrypoint_path: job_entrypoint.py
"""


def _write(job_dir: Path) -> Path:
    job_dir.mkdir()
    (job_dir / "job_entrypoint.py").write_text(ENTRYPOINT)
    (job_dir / "job.yaml").write_text(MANIFEST)
    (job_dir / "README.md").write_text("# parity job\n")
    (job_dir / "public" / "sub").mkdir(parents=True)
    (job_dir / "public" / "sub" / "data.json").write_text('{"k": 1}')
    return job_dir


@pytest.fixture(scope="module")
def servers(module_tmp: Path) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    job_dir = _write(module_tmp / "parity")
    runner = ensure_runner(REPO, REPO / "benchmarks" / ".work")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    log = open(module_tmp / "racetrack.log", "wb")  # noqa: SIM115 - the child writes to it for its whole life
    racetrack = subprocess.Popen(
        [str(runner.executable), "run", "job_entrypoint.py", "--port", str(port)],
        cwd=job_dir,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    theirs = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
    deadline = time.monotonic() + 60
    while True:
        try:
            if theirs.get("/ready").status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert racetrack.poll() is None, (module_tmp / "racetrack.log").read_text()
        assert time.monotonic() < deadline, "Racetrack's runner did not become ready"
        time.sleep(0.1)
    ours: RunningJob = start_job(job_dir, module_tmp)
    yield theirs, ours.client
    ours.stop()
    theirs.close()
    racetrack.terminate()
    racetrack.wait(10)


CALLS = [
    ("POST", "/api/v1/perform", {"x": 20, "y": 5}),
    ("POST", "/api/v1/perform", {"x": 3}),
    ("POST", "/pub/job/parity/1.0.0/api/v1/perform", {"x": 1.5, "y": 4}),
    ("POST", "/api/v1/explain", {"x": 1, "y": 2}),
    ("POST", "/api/v1/echo", {"a": [1, 2], "b": {"c": None}}),
    ("GET", "/api/v1/readme", None),
    ("GET", "/api/v1/manifest", None),
    ("GET", "/api/v1/files/sub/data.json", None),
    ("GET", "/pub/job/parity/1.0.0/api/v1/readme", None),
]


@pytest.mark.parametrize(("method", "path", "body"), CALLS)
def test_same_answers(
    servers: tuple[httpx.Client, httpx.Client], method: str, path: str, body: object
) -> None:
    theirs, ours = servers
    a = theirs.request(method, path, json=body)
    b = ours.request(method, path, json=body)
    assert (a.status_code, b.status_code) == (200, 200), (a.text, b.text)
    assert a.headers["content-type"].split(";")[0] == b.headers["content-type"].split(";")[0]
    if a.headers["content-type"].startswith("application/json"):
        assert a.json() == b.json()
    else:
        assert a.content == b.content


def test_same_status_for_value_errors_probes_and_docs(servers: tuple[httpx.Client, httpx.Client]) -> None:
    theirs, ours = servers
    for method, path, body in [
        ("POST", "/api/v1/perform", {"x": -1}),
        ("GET", "/live", None),
        ("GET", "/ready", None),
        ("GET", "/health", None),
        ("GET", "/docs", None),
        ("GET", "/pub/job/parity/1.0.0/docs", None),
        ("GET", "/api/v1/files/../job.yaml", None),
    ]:
        a = theirs.request(method, path, json=body)
        b = ours.request(method, path, json=body)
        assert a.status_code == b.status_code, (path, a.status_code, b.status_code, a.text, b.text)
    assert "x must not be negative" in ours.post("/api/v1/perform", json={"x": -1}).json()["error"]


def test_same_parameters_and_job_metrics(servers: tuple[httpx.Client, httpx.Client]) -> None:
    theirs, ours = servers
    names = [[p["name"] for p in c.get("/api/v1/parameters").json()] for c in (theirs, ours)]
    assert names[0] == names[1] == ["x", "y"]
    for client in (theirs, ours):
        client.post("/api/v1/perform", json={"x": 1})
        assert 'job_was_called{color="blue"}' in client.get("/metrics").text
