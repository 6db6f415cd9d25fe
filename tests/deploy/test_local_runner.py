"""LocalRunner with real wrapper processes on loopback (run with the dev venv's interpreter)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from lifecycle.deploy.builder import BuildResult
from lifecycle.deploy.local_runner import LocalRunner, VersionLog
from lifecycle.deploy.process_supervisor import PortAllocator
from lifecycle.deploy.runner import ReplicaState, RunSpec
from tests.conftest import SAMPLE_JOBS, write_job

NAME, VERSION = "adder", "0.0.1"


def dev_build(code_dir: Path) -> BuildResult:
    """The dev venv has trackside_wrapper installed: a build without building."""
    return BuildResult(environment_id="dev", python=Path(sys.executable), code_dir=code_dir, cached=True)


@pytest.fixture(scope="module")
def adder(module_tmp: Path) -> BuildResult:
    return dev_build(Path(shutil.copytree(SAMPLE_JOBS / "adder", module_tmp / "adder")))


@pytest.fixture
def runner(tmp_path: Path) -> Iterator[LocalRunner]:
    runner = LocalRunner(tmp_path / "logs")
    yield runner
    runner.shutdown()


def spec(
    build: BuildResult,
    timestamp: int = 1_700_000_000_001,
    replicas: int = 1,
    env: dict[str, str] | None = None,
    version: str = VERSION,
) -> RunSpec:
    manifest = (build.code_dir / "job.yaml").read_text()
    return RunSpec(NAME, version, timestamp, replicas, build, env or {}, manifest)


def wait_for(condition: Callable[[], object], timeout: float = 15, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout} s")
        time.sleep(0.02)


def wait_ready(
    runner: LocalRunner, name: str = NAME, version: str = VERSION, timeout: float = 15
) -> list[ReplicaState]:
    def ready() -> bool:
        replicas = runner.replicas(name, version)
        return bool(replicas) and all(r.ready for r in replicas)

    try:
        wait_for(ready, timeout, "all replicas ready")
    except AssertionError:
        raise AssertionError("\n".join(runner.logs(name, version, 40))) from None
    return runner.replicas(name, version)


def add(address: str, numbers: list[float]) -> float:
    response = httpx.post(f"{address}/api/v1/perform", json={"numbers": numbers}, timeout=5)
    assert response.status_code == 200, response.text
    return float(response.json())


def test_start_serves_the_job_with_its_deployment_timestamp(runner: LocalRunner, adder: BuildResult) -> None:
    started = time.monotonic()
    runner.start(spec(adder))
    assert time.monotonic() - started < 0.5  # returns at once
    [replica] = wait_ready(runner)

    assert replica.address.startswith("http://127.0.0.1:")
    assert (replica.restarts, replica.last_error, replica.deployment_timestamp) == (
        0,
        None,
        1_700_000_000_001,
    )
    assert add(replica.address, [40, 2]) == 42
    live = httpx.get(f"{replica.address}/live").json()
    assert (live["job_name"], live["deployment_timestamp"]) == (NAME, 1_700_000_000_001)
    runner.start(spec(adder))  # the same generation again: nothing new
    assert runner.generations(NAME, VERSION) == [1_700_000_000_001]


def test_two_replicas_answer_on_their_own_addresses(runner: LocalRunner, adder: BuildResult) -> None:
    runner.start(spec(adder, replicas=2))
    replicas = wait_ready(runner)
    assert len({r.address for r in replicas}) == 2
    assert len({r.pid for r in replicas}) == 2
    assert [add(r.address, [1, 2]) for r in replicas] == [3, 3]


def test_a_killed_replica_is_back_and_ready_within_2_seconds(runner: LocalRunner, adder: BuildResult) -> None:
    runner.start(spec(adder))
    [before] = wait_ready(runner)
    assert before.pid is not None

    os.kill(before.pid, signal.SIGKILL)
    killed = time.monotonic()
    wait_for(
        lambda: any(r.ready and r.pid not in (None, before.pid) for r in runner.replicas(NAME, VERSION)),
        timeout=5,
        what="a new ready process",
    )
    assert time.monotonic() - killed < 2
    [after] = runner.replicas(NAME, VERSION)
    assert after.restarts == 1
    assert after.address == before.address
    assert add(after.address, [1]) == 1
    assert any("killed by SIGKILL" in line for line in runner.logs(NAME, VERSION, 50))


def test_a_job_that_fails_to_import_reports_the_error_and_backs_off(
    runner: LocalRunner, tmp_path: Path
) -> None:
    code = write_job(tmp_path / "broken", "import no_such_module_for_trackside\n", name=NAME)
    runner.start(spec(dev_build(code)))

    wait_for(
        lambda: any(r.last_error for r in runner.replicas(NAME, VERSION)),
        timeout=10,
        what="an error reported",
    )
    [replica] = runner.replicas(NAME, VERSION)
    assert replica.last_error is not None
    assert "No module named 'no_such_module_for_trackside'" in replica.last_error
    assert "entrypoint.py:1" in replica.last_error
    assert not replica.ready

    first_seen = time.monotonic()
    time.sleep(4)
    [later] = runner.replicas(NAME, VERSION)
    restarts = later.restarts - replica.restarts
    # delays 0.2, 0.4, 0.8, 1.6 s ... plus a start each: a few restarts, not a hot loop
    assert 1 <= restarts <= 6, restarts
    assert later.failures >= 3
    assert not later.ready
    delays = [
        float(d) for d in re.findall(r"restarting in ([\d.]+) s", "\n".join(runner.logs(NAME, VERSION, 200)))
    ]
    assert delays[:3] == [0.2, 0.4, 0.8], delays
    assert time.monotonic() - first_seen < 10


def test_the_job_sees_its_env_and_none_of_the_lifecycles(
    runner: LocalRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SECRET_OF_LIFECYCLE", "must-not-leak")
    entrypoint = (
        "import os\n\n\nclass Env:\n    def perform(self) -> dict:\n        return dict(os.environ)\n"
    )
    code = write_job(tmp_path / "env", entrypoint, name=NAME)
    run_spec = spec(dev_build(code), env={"GREETING": "hello", "JOB_NAME": "spoofed"})
    runner.start(run_spec)
    [replica] = wait_ready(runner)

    env = httpx.post(f"{replica.address}/api/v1/perform", json={}).json()
    assert "SECRET_OF_LIFECYCLE" not in env
    assert env["GREETING"] == "hello"
    assert (env["JOB_NAME"], env["JOB_VERSION"]) == (NAME, VERSION)
    assert env["JOB_DEPLOYMENT_TIMESTAMP"] == str(run_spec.deployment_timestamp)
    assert env["JOB_MANIFEST_YAML"] == run_spec.manifest_yaml
    assert env["PATH"] == os.environ["PATH"]
    reserved = {"JOB_NAME", "JOB_VERSION", "JOB_DEPLOYMENT_TIMESTAMP", "JOB_MANIFEST_YAML"}
    allowed = {"PATH", "HOME", "LANG", "TMPDIR", "PYTHONUNBUFFERED", "GREETING"} | reserved
    assert set(env) - allowed <= {"LC_CTYPE"}  # set by Python itself when coercing a C locale


def test_logs_tail_and_follow(runner: LocalRunner, adder: BuildResult) -> None:
    runner.start(spec(adder))
    [replica] = wait_ready(runner)
    lines = runner.follow(NAME, VERSION)  # subscribed before the call below
    add(replica.address, [1, 1])
    first = next(line for line in lines if "POST /api/v1/perform" in line)
    assert first.startswith("[replica 0] ")
    wait_for(lambda: any("POST /api/v1/perform" in line for line in runner.logs(NAME, VERSION, 3)), 5, "log")
    tail = runner.logs(NAME, VERSION, 3)
    assert len(tail) == 3
    assert any(
        line.startswith("[runner] ") and "started on port" in line for line in runner.logs(NAME, VERSION, 100)
    )

    rest: list[str] = []
    follower = threading.Thread(target=lambda: rest.extend(lines))
    follower.start()
    runner.stop(NAME, VERSION)
    follower.join(5)
    assert not follower.is_alive()  # follow ends when the version stops
    assert rest[-1].startswith("[runner]") and rest[-1].endswith("stopped")
    assert runner.logs(NAME, VERSION, 1)[0].endswith("stopped")  # the file outlives the processes
    assert list(runner.follow(NAME, VERSION)) == []


def test_a_redeploy_keeps_the_old_generation_serving_until_the_new_one_is_ready(
    runner: LocalRunner, adder: BuildResult, tmp_path: Path
) -> None:
    old_ts, new_ts = 1_700_000_000_001, 1_700_000_000_002
    runner.start(spec(adder, old_ts))
    [old] = wait_ready(runner)

    slow = "import time\n\n\nclass Slow:\n    def __init__(self):\n        time.sleep(1.5)\n\n    def perform(self, numbers: list[float]) -> str:\n        return 'new'\n"
    runner.start(spec(dev_build(write_job(tmp_path / "slow", slow, name=NAME)), new_ts))
    assert runner.generations(NAME, VERSION) == [old_ts, new_ts]
    time.sleep(0.5)
    [new] = runner.replicas(NAME, VERSION)  # the newest generation
    assert new.deployment_timestamp == new_ts and not new.ready
    assert [r.address for r in runner.serving(NAME, VERSION)] == [old.address]
    assert add(old.address, [2, 2]) == 4

    wait_ready(runner)
    assert [r.deployment_timestamp for r in runner.serving(NAME, VERSION)] == [new_ts]
    runner.retire_others(NAME, VERSION, keep=new_ts)
    assert runner.generations(NAME, VERSION) == [new_ts]
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{old.address}/live", timeout=2)
    [new] = runner.replicas(NAME, VERSION)
    assert httpx.post(f"{new.address}/api/v1/perform", json={"numbers": []}).json() == "new"

    # a failed redeploy is stopped on its own; the serving generation stays
    runner.start(spec(adder, 1_700_000_000_003))
    runner.stop_generation(NAME, VERSION, 1_700_000_000_003)
    assert runner.generations(NAME, VERSION) == [new_ts]
    assert runner.replicas(NAME, VERSION)[0].ready


def port_is_free(port: int) -> bool:
    """Whether a server can listen on it (with SO_REUSEADDR, as uvicorn does)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            s.listen()
        except OSError:
            return False
        return True


def process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_stop_ends_the_processes_and_frees_the_ports(runner: LocalRunner, adder: BuildResult) -> None:
    runner.start(spec(adder, replicas=2))
    replicas = wait_ready(runner)
    ports = [int(r.address.rsplit(":", 1)[1]) for r in replicas]

    runner.stop(NAME, VERSION)
    assert runner.replicas(NAME, VERSION) == []
    assert runner.generations(NAME, VERSION) == []
    assert all(r.pid is not None and process_gone(r.pid) for r in replicas)
    assert all(port_is_free(port) for port in ports)


def test_shutdown_kills_every_job_and_the_processes_it_started(runner: LocalRunner, tmp_path: Path) -> None:
    entrypoint = (
        "import subprocess\n\n\nclass Parent:\n    def __init__(self):\n"
        "        self.child = subprocess.Popen(['sleep', '300'])\n\n"
        "    def perform(self) -> int:\n        return self.child.pid\n"
    )
    code = write_job(tmp_path / "parent", entrypoint, name=NAME)
    runner.start(spec(dev_build(code)))
    runner.start(spec(dev_build(code), version="0.0.2"))
    children = []
    for version in (VERSION, "0.0.2"):
        [replica] = wait_ready(runner, version=version)
        children.append(httpx.post(f"{replica.address}/api/v1/perform", json={}).json())
    parents = [r.pid for v in (VERSION, "0.0.2") for r in runner.replicas(NAME, v)]

    runner.shutdown()
    assert all(pid is not None and process_gone(pid) for pid in parents)
    wait_for(lambda: all(process_gone(pid) for pid in children), 2, "the job's children gone")
    with pytest.raises(RuntimeError):
        runner.start(spec(dev_build(code)))


def test_a_port_taken_meanwhile_makes_the_replica_move(
    runner: LocalRunner, adder: BuildResult, monkeypatch: pytest.MonkeyPatch
) -> None:
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    taken = squatter.getsockname()[1]
    real_allocate = PortAllocator.allocate
    handed = iter([taken])
    monkeypatch.setattr(PortAllocator, "allocate", lambda self: next(handed, None) or real_allocate(self))
    try:
        runner.start(spec(adder))
        [replica] = wait_ready(runner)
    finally:
        squatter.close()
    assert not replica.address.endswith(f":{taken}")
    assert replica.restarts == 0
    assert add(replica.address, [5]) == 5
    assert any(f"port {taken} is taken" in line for line in runner.logs(NAME, VERSION, 50))


def test_the_log_file_rotates_and_the_tail_spans_both_files(tmp_path: Path) -> None:
    log = VersionLog(tmp_path / "logs" / NAME / f"{VERSION}.log", max_bytes=1000)
    for i in range(100):
        log.write(f"line {i:03d} " + "x" * 40)
    log.close()
    assert (tmp_path / "logs" / NAME / f"{VERSION}.log.1").is_file()
    assert (tmp_path / "logs" / NAME / f"{VERSION}.log").stat().st_size <= 1100
    runner = LocalRunner(tmp_path / "logs")
    tail = runner.logs(NAME, VERSION, 30)
    runner.shutdown()
    assert [line[:8] for line in tail] == [f"line {i:03d}" for i in range(70, 100)]
