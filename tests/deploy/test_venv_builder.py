"""VenvBuilder with real uv and PyPI: environments per dependency fingerprint, shared and pruned."""

from __future__ import annotations

import base64
import hashlib
import http.server
import io
import shutil
import subprocess
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from lifecycle.deploy.builder import BuildError, BuildRequest, BuildResult
from lifecycle.deploy.local_runner import LocalRunner
from lifecycle.deploy.runner import RunSpec
from lifecycle.deploy.venv_builder import VenvBuilder
from tests.conftest import REPO, write_job

SIX_JOB = """\
import six


class SixVersion:
    def perform(self) -> str:
        return six.__version__
"""


class BuildLog(list[str]):
    def __call__(self, line: str) -> None:
        self.append(line)


@pytest.fixture(scope="module")
def builder(module_tmp: Path) -> VenvBuilder:
    return VenvBuilder(module_tmp / "cache", module_tmp / "code", REPO / "wrappers" / "python3")


def job_source(directory: Path, requirements: str | None, entrypoint: str = SIX_JOB) -> Path:
    files = {} if requirements is None else {"requirements.txt": requirements}
    return write_job(directory, entrypoint, name="sixjob", files=files)


def request(
    source: Path,
    version: str = "1.0.0",
    requirements: str | None = "requirements.txt",
    build_env: dict[str, str] | None = None,
    check: bool = False,
    no_cache: bool = False,
    python: str | None = None,
) -> BuildRequest:
    return BuildRequest(
        job_name="sixjob",
        job_version=version,
        source_dir=source,
        python_version=python,
        requirements_path=requirements,
        build_env=build_env or {},
        check_requirements=check,
        no_cache=no_cache,
    )


def environments(builder: VenvBuilder) -> set[str]:
    return {p.name for p in builder.cache_dir.iterdir() if len(p.name) == 64}


def code_copies(builder: VenvBuilder) -> set[Path]:
    return set(builder.code_root.glob("*/*/*"))


def run_python(result: BuildResult, code: str) -> str:
    return subprocess.run(
        [str(result.python), "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_cold_build_then_a_code_only_change_reuses_the_environment(
    builder: VenvBuilder, tmp_path: Path
) -> None:
    source = job_source(tmp_path / "src", "six\n")
    for junk in (".git", "__pycache__", ".venv"):
        (source / junk).mkdir()
        (source / junk / "x").write_text("junk")
    log = BuildLog()
    first = builder.build(request(source, "1.0.0"), log)

    assert not first.cached
    assert first.code_dir.parent == builder.code_root / "sixjob" / "1.0.0"
    assert sorted(p.name for p in first.code_dir.iterdir()) == [
        "entrypoint.py",
        "job.yaml",
        "requirements.txt",
    ]
    assert run_python(first, "import six, trackside_wrapper; print(six.__name__)") == "six"
    site = run_python(first, "import six; print(six.__file__)")
    assert (Path(site).parent / "__pycache__").is_dir()  # bytecode compiled at build time
    assert any("+ six==" in line for line in log)

    (source / "entrypoint.py").write_text(SIX_JOB + "\n# a code-only change\n")
    started = time.monotonic()
    second = builder.build(request(source, "1.0.1"), BuildLog())
    assert second.cached
    assert time.monotonic() - started < 2
    assert second.environment_id == first.environment_id
    assert second.python == first.python
    assert second.code_dir != first.code_dir
    assert "code-only change" in (second.code_dir / "entrypoint.py").read_text()

    runner = LocalRunner(tmp_path / "logs")
    try:
        runner.start(RunSpec("sixjob", "1.0.1", 1, 1, second, {}, (source / "job.yaml").read_text()))
        deadline = time.monotonic() + 20
        while not all(r.ready for r in runner.replicas("sixjob", "1.0.1")):
            assert time.monotonic() < deadline, runner.logs("sixjob", "1.0.1", 30)
            time.sleep(0.05)
        address = runner.replicas("sixjob", "1.0.1")[0].address
        answer = httpx.post(f"{address}/api/v1/perform", json={})
        assert answer.status_code == 200
        assert answer.json() == run_python(second, "import six; print(six.__version__)")
    finally:
        runner.shutdown()


def test_changed_requirements_make_a_new_environment(builder: VenvBuilder, tmp_path: Path) -> None:
    source = job_source(tmp_path / "src", "six\n")
    first = builder.build(request(source), BuildLog())
    (source / "requirements.txt").write_text("six\nidna\n")
    second = builder.build(request(source, "2.0.0"), BuildLog())

    assert not second.cached
    assert second.environment_id != first.environment_id
    assert run_python(second, "import idna; print('ok')") == "ok"
    assert {first.environment_id, second.environment_id} <= environments(builder)


def test_concurrent_builds_of_one_fingerprint_make_one_environment(
    builder: VenvBuilder, tmp_path: Path
) -> None:
    source = job_source(tmp_path / "src", "six\n# built twice at once\n")
    barrier = threading.Barrier(2)
    results: dict[str, BuildResult] = {}
    errors: list[BaseException] = []

    def build(version: str) -> None:
        barrier.wait()
        try:
            results[version] = builder.build(request(source, version), BuildLog())
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=build, args=(v,)) for v in ("1.0.0", "1.0.1")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert not errors
    first, second = results["1.0.0"], results["1.0.1"]
    assert first.environment_id == second.environment_id
    assert sorted([first.cached, second.cached]) == [False, True]
    fp_dir = builder.cache_dir / first.environment_id
    assert len(list(fp_dir.glob("v-*"))) == 1
    assert len(list((fp_dir / "users").iterdir())) == 2


def test_a_requirement_that_does_not_exist_fails_naming_it(builder: VenvBuilder, tmp_path: Path) -> None:
    source = job_source(tmp_path / "src", "six\ntrackside-no-such-package-xyz==1.0\n")
    before = environments(builder), code_copies(builder)
    with pytest.raises(BuildError, match="trackside-no-such-package-xyz"):
        builder.build(request(source), BuildLog())
    assert (environments(builder), code_copies(builder)) == before  # no half environment, no code copy


def test_a_python_version_that_is_not_there_fails(builder: VenvBuilder, tmp_path: Path) -> None:
    source = job_source(tmp_path / "src", None)
    with pytest.raises(BuildError, match=r"Python 3\.99 is not available"):
        builder.build(request(source, requirements=None, python="3.99"), BuildLog())
    with pytest.raises(BuildError, match=r"requirements file 'nope\.txt' not found"):
        builder.build(request(source, requirements="nope.txt"), BuildLog())


def probe_wheel() -> tuple[str, bytes]:
    """A tiny wheel made by hand, served only by the authenticated index below."""
    name, version = "tracksideprobe", "1.0"
    files = {
        f"{name}/__init__.py": b"VALUE = 'probe'\n",
        f"{name}-{version}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{name}-{version}.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = [
        f"{path},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},{len(data)}"
        for path, data in files.items()
    ]
    files[f"{name}-{version}.dist-info/RECORD"] = (
        "\n".join([*record, f"{name}-{version}.dist-info/RECORD,,"]) + "\n"
    ).encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
    return f"{name}-{version}-py3-none-any.whl", buffer.getvalue()


@pytest.fixture
def private_index() -> Iterator[tuple[int, str, list[str]]]:
    """A package index that requires Basic auth with a secret token: (port, token, credentials seen)."""
    token = "tok-" + hashlib.sha256(str(time.time_ns()).encode()).hexdigest()[:24]
    expected = "Basic " + base64.b64encode(f"probe:{token}".encode()).decode()
    filename, wheel = probe_wheel()
    seen: list[str] = []

    class Index(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_HEAD(self) -> None:
            self.answer(with_body=False)

        def do_GET(self) -> None:
            self.answer(with_body=True)

        def answer(self, with_body: bool) -> None:
            auth = self.headers.get("Authorization", "")
            if auth.startswith("Basic "):
                seen.append(base64.b64decode(auth[6:]).decode())
            if auth != expected:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="probe"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if self.path.rstrip("/") == "/simple/tracksideprobe":
                digest = hashlib.sha256(wheel).hexdigest()
                body = f'<html><body><a href="/files/{filename}#sha256={digest}">{filename}</a></body></html>'.encode()
                content_type = "text/html"
            elif self.path == f"/files/{filename}":
                body, content_type = wheel, "application/octet-stream"
            else:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if with_body:
                self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Index)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], token, seen
    server.shutdown()
    server.server_close()


def test_build_env_reaches_the_install_step_and_nothing_else(
    builder: VenvBuilder, tmp_path: Path, private_index: tuple[int, str, list[str]]
) -> None:
    port, token, seen = private_index
    requirements = (
        f"--extra-index-url http://probe:${{PROBE_TOKEN}}@127.0.0.1:{port}/simple/\ntracksideprobe==1.0\n"
    )
    source = job_source(tmp_path / "src", requirements)
    log = BuildLog()
    build_request = request(source, build_env={"PROBE_TOKEN": token, "PLAIN": "visible-name"})
    result = builder.build(build_request, log)

    assert f"probe:{token}" in seen  # uv expanded ${PROBE_TOKEN} from the build env
    assert run_python(result, "import tracksideprobe; print(tracksideprobe.VALUE)") == "probe"
    assert any("PLAIN, PROBE_TOKEN (values hidden)" in line for line in log)
    assert not [line for line in log if token in line]
    assert token not in repr(build_request)
    assert token not in result.environment_id
    for root in (builder.cache_dir / result.environment_id, result.code_dir):
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink():
                assert token.encode() not in path.read_bytes(), path


def test_check_requirements_catches_a_conflict(builder: VenvBuilder, tmp_path: Path) -> None:
    # trackside-wrapper needs prometheus-client>=0.20; the job's pin wins the install, then conflicts
    source = job_source(tmp_path / "src", "prometheus-client==0.19.0\n")
    before = environments(builder)
    with pytest.raises(BuildError, match=r"conflicting requirements: .*prometheus-client"):
        builder.build(request(source, check=True), BuildLog())
    assert environments(builder) == before

    unchecked = builder.build(request(source, "1.0.1"), BuildLog())
    assert not unchecked.cached
    with pytest.raises(BuildError, match="prometheus-client"):
        builder.build(request(source, "1.0.2", check=True), BuildLog())
    assert len(list((builder.cache_dir / unchecked.environment_id / "users").iterdir())) == 1


def test_release_removes_the_code_and_prunes_unused_environments(
    builder: VenvBuilder, tmp_path: Path
) -> None:
    source = job_source(tmp_path / "src", "six\n# released\n")
    first = builder.build(request(source, "3.0.0"), BuildLog())
    second = builder.build(request(source, "3.0.1"), BuildLog())
    assert second.cached

    builder.release(first)
    assert not first.code_dir.exists()
    assert second.python.exists()  # still used by 3.0.1

    builder.release(second)
    assert not second.code_dir.exists()
    assert not (builder.cache_dir / second.environment_id).exists()
    assert not (builder.code_root / "sixjob" / "3.0.1").exists()

    # prune(): environments whose code copies vanished without a release
    third = builder.build(request(source, "3.0.2"), BuildLog())
    assert not third.cached
    shutil.rmtree(third.code_dir)
    assert third.environment_id in builder.prune()
    assert not (builder.cache_dir / third.environment_id).exists()


def test_no_cache_rebuilds_in_place_for_running_users(builder: VenvBuilder, tmp_path: Path) -> None:
    source = job_source(tmp_path / "src", "six\n# rebuilt\n")
    first = builder.build(request(source, "1.0.0"), BuildLog())
    old_target = (builder.cache_dir / first.environment_id / "venv").readlink()
    rebuilt = builder.build(request(source, "1.0.1", no_cache=True), BuildLog())

    assert not rebuilt.cached
    assert rebuilt.environment_id == first.environment_id
    fp_dir = builder.cache_dir / first.environment_id
    assert [p.name for p in fp_dir.glob("v-*")] == [str((fp_dir / "venv").readlink())] != [str(old_target)]
    assert run_python(first, "import six; print('ok')") == "ok"  # the path 1.0.0 runs from still works
