"""`POST /deploy` under fuzzing (hypothesis): whatever the body, the answer is never a 500, a 4xx
is JSON with `error` and `type`, a refused request leaves no deployment row, and an accepted one
(a valid manifest pointing at a repository that does not exist) ends `failed`, not in a crash.

Against SQLite and, where a server is reachable, PostgreSQL (stricter about what text it stores).
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from sqlalchemy import func, select

from lifecycle.api.app import create_app
from lifecycle.config import LifecycleConfig
from lifecycle.control_plane import ControlPlane
from lifecycle.secrets import SecretBox
from lifecycle.store.models import Deployment

API = "/api/v1"
MISSING_REPO = "file:///nonexistent/trackside-fuzz/repo"

VALID_BODY: dict[str, Any] = {
    "manifest": {
        "name": "fuzz-job",
        "owner_email": "sample@example.com",
        "jobtype": "python3:latest",
        "version": "0.0.1",
        "git": {"remote": MISSING_REPO, "branch": "main", "directory": "."},
        "jobtype_extra": {
            "entrypoint_path": "entrypoint.py",
            "entrypoint_class": "Job",
            "requirements_path": "requirements.txt",
            "max_concurrency": 2,
            "python_version": "3.11",
            "check_requirements": False,
        },
        "build_env": {"BUILD_MODE": "fast"},
        "runtime_env": {"GREETING": "hello"},
        "public_endpoints": ["/api/v1/perform"],
        "replicas": 1,
        "resources": {"memory_max": "256Mi", "cpu_min": "100m"},
        "labels": {"team": "fuzz"},
        "system_dependencies": [],
    },
    "git_credentials": {"username": "someone", "password": "a-token"},
    "secret_vars": {"build_env": {"BUILD_SECRET": "s1"}, "runtime_env": {"RUNTIME_SECRET": "s2"}},
    "force": False,
    "build_flags": [],
}

# keep the whole file well under 30 s: examples per property and per database
EXAMPLES = 100


class Platform:
    def __init__(self, client: TestClient, plane: ControlPlane, token: str) -> None:
        self.client = client
        self.plane = plane
        self.headers = {"X-Racetrack-Auth": token}

    def deployments(self) -> int:
        with self.plane.db.session() as session:
            return int(session.scalar(select(func.count()).select_from(Deployment)) or 0)

    def post(self, content: bytes, content_type: str = "application/json") -> Any:
        """POST /deploy; checks what every answer must be, returns the accepted deployment's id."""
        before = self.deployments()
        r = self.send(content, content_type)
        if currently_in_test_context():  # what was answered, for --hypothesis-show-statistics
            event(f"{r.status_code} {r.json().get('type', '') if r.status_code != 202 else ''}".strip())
        assert r.status_code < 500, r.text
        assert r.headers["content-type"].startswith("application/json"), r.headers
        body = r.json()
        if r.status_code == 202:
            assert isinstance(body["id"], str)
            assert self.deployments() == before + 1
            self.wait_failed(body["id"])
            return body["id"]
        assert 400 <= r.status_code < 500, r.text
        assert isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"]
        assert isinstance(body.get("type"), str) and body["type"]
        assert self.deployments() == before, f"a {r.status_code} left a deployment row"
        return None

    def send(self, content: bytes, content_type: str = "application/json") -> httpx.Response:
        return self.client.post(
            f"{API}/deploy", content=content, headers={**self.headers, "content-type": content_type}
        )

    def wait_failed(self, deployment_id: str) -> dict[str, Any]:
        deadline = time.monotonic() + 30
        while True:
            r = self.client.get(f"{API}/deploy/{deployment_id}", headers=self.headers)
            assert r.status_code == 200, r.text
            status: dict[str, Any] = r.json()
            if status["status"] != "in_progress":
                break
            assert time.monotonic() < deadline, status
            time.sleep(0.02)
        # the repository does not exist (or the uploaded context is junk): the fetch fails
        assert status["status"] == "failed", status
        assert status["phase"] == "fetching the source code", status
        assert status["error"] and status["job"] is None, status
        if currently_in_test_context() and status["error"].startswith("internal error"):
            event("failed with an internal error")  # see test_values_no_git_or_process_can_take...
        return status


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def platform(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    data = tmp_path_factory.mktemp("lifecycle-data")
    if request.param == "sqlite":
        url = f"sqlite:///{data / 'trackside.db'}"
    else:
        url = (
            request.getfixturevalue("postgres_server").create_database().render_as_string(hide_password=False)
        )
    config = LifecycleConfig(
        data_dir=data, database_url=url, secret_key=SecretBox.generate_key(), allow_file_remotes=True
    )
    plane = ControlPlane(config, pub_url="http://127.0.0.1:7200/pub")
    report = plane.start()
    assert report.admin_token
    with TestClient(create_app(plane), raise_server_exceptions=False) as client:
        yield Platform(client, plane, report.admin_token)
    plane.stop()
    assert not list((data / "code").iterdir()), "a fuzzed deploy got as far as a build"


# ---- values ------------------------------------------------------------------------------------------

lone_surrogates = st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1, max_size=3)
texts = st.one_of(
    st.text(max_size=20),
    st.text(st.characters(codec=None, exclude_categories=()), max_size=20),  # any code point, NUL too
    lone_surrogates,
    st.integers(1_000, 300_000).map(lambda n: "x" * n),  # huge
    st.sampled_from(
        ["", " ", "\x00", "..", "../..", "/etc/passwd", "file:///", "ftp://x", "1e999", "\u202e"]
    ),
)
numbers = st.one_of(
    st.integers(),
    st.integers(min_value=2**63 - 2, max_value=2**80),  # past 64 bits
    st.integers(min_value=-(2**80), max_value=-(2**63) + 2),
    st.floats(allow_nan=False, allow_infinity=False),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, texts)
junk = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)


def to_json(value: Any) -> bytes:
    # ensure_ascii: lone surrogates travel as \ud800 escapes, as a client may send them
    return json.dumps(value).encode()


# ---- mutations of a valid body ---------------------------------------------------------------------

Path_ = tuple[str | int, ...]


def paths(value: Any, prefix: Path_ = ()) -> list[Path_]:
    """Every place in a JSON value (not the root)."""
    found: list[Path_] = []
    children: list[tuple[str | int, Any]] = []
    if isinstance(value, dict):
        children = list(value.items())
    elif isinstance(value, list):
        children = list(enumerate(value))
    for key, child in children:
        found.append((*prefix, key))
        found.extend(paths(child, (*prefix, key)))
    return found


def parent_of(body: Any, path: Path_) -> Any:
    for key in path[:-1]:
        body = body[key]
    return body


@st.composite
def mutated_bodies(draw: st.DrawFn) -> Any:
    body = copy.deepcopy(VALID_BODY)
    for _ in range(draw(st.integers(1, 3))):
        operation = draw(st.sampled_from(["replace", "delete", "add"]))
        if operation == "add":
            containers = [p for p in [(), *paths(body)] if isinstance(parent_of(body, (*p, "")), dict)]
            container: Path_ = draw(st.sampled_from(containers))
            target = parent_of(body, (*container, ""))
            key = draw(st.one_of(st.text(max_size=12), st.sampled_from(["build_context", "lang", "git"])))
            target[key] = draw(junk)
            continue
        where = paths(body)
        if not where:
            break
        path = draw(st.sampled_from(where))
        parent = parent_of(body, path)
        if operation == "delete":
            del parent[path[-1]]
        elif path[-2:] == ("git", "remote"):
            # never a remote that could be reached: another missing file:// repository, or junk
            parent[path[-1]] = draw(st.one_of(st.just(MISSING_REPO + "-2"), numbers, st.none(), junk))
        else:
            parent[path[-1]] = draw(junk)
    return body


# ---- the properties -----------------------------------------------------------------------------------

FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)


@FUZZ_SETTINGS
@given(body=junk)
def test_arbitrary_json_bodies(platform: Platform, body: Any) -> None:
    platform.post(to_json(body))


@FUZZ_SETTINGS
@given(
    body=st.one_of(
        junk.map(lambda v: {"manifest": v}),
        st.dictionaries(st.sampled_from([*VALID_BODY, "extra"]), junk, min_size=1, max_size=len(VALID_BODY)),
    )
)
def test_bodies_with_the_right_keys_and_junk_values(platform: Platform, body: Any) -> None:
    platform.post(to_json(body))


@settings(FUZZ_SETTINGS, max_examples=2 * EXAMPLES)
@given(body=mutated_bodies())
def test_mutations_of_a_valid_body(platform: Platform, body: Any) -> None:
    platform.post(to_json(body))


@FUZZ_SETTINGS
@given(
    content=st.one_of(st.binary(max_size=200), st.just(b""), st.just(b"{"), st.just(b'{"manifest": NaN}')),
    content_type=st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded"]),
)
def test_bodies_that_are_not_json(platform: Platform, content: bytes, content_type: str) -> None:
    platform.post(content, content_type)


def test_the_valid_body_is_accepted_and_fails_fetching(platform: Platform) -> None:
    assert platform.post(to_json(VALID_BODY)) is not None
    # ... and so is its build-context twin, which does not touch the remote
    assert platform.post(to_json({**VALID_BODY, "build_context": "bm90IGEgdGFyLmd6"})) is not None


def test_a_request_without_a_token_is_refused_whatever_the_body(platform: Platform) -> None:
    before = platform.deployments()
    # a body that is not JSON at all is refused before the token is looked at
    r = platform.client.post(f"{API}/deploy", content=b"{", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["type"] == "InvalidRequest"
    r = platform.client.post(f"{API}/deploy", json=VALID_BODY)
    assert r.status_code == 401 and r.json()["type"] == "Unauthenticated"
    assert platform.deployments() == before


# ---- found while fuzzing: requests that get past validation and must not (these fail today) ---------


def nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("platform", ["sqlite"], indirect=True)
@pytest.mark.parametrize("where", ["labels", "jobtype_extra"])
def test_a_deeply_nested_manifest_is_refused_not_a_500(platform: Platform, where: str) -> None:
    body = copy.deepcopy(VALID_BODY)
    body["manifest"][where]["deep"] = nested(500)  # JSON parses it; the manifest loader recurses
    r = platform.send(to_json(body))
    assert r.status_code == 400, f"{r.status_code} {r.text}"


def _with(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    body = copy.deepcopy(VALID_BODY)
    target = body
    for key in path[:-1]:
        target = target.setdefault(key, {})
    target[path[-1]] = value
    return body


# accepted today, then the deployment fails with "internal error ..." (or, with a build that works,
# the job cannot be spawned and the deploy waits out the whole init timeout: see test_build_context)
UNUSABLE = {
    "secret runtime env name with '='": _with(("secret_vars", "runtime_env"), {"BAD=NAME": "x"}),
    "secret runtime env empty name": _with(("secret_vars", "runtime_env"), {"": "x"}),
    "secret runtime env value with NUL": _with(("secret_vars", "runtime_env"), {"TOKEN": "a\x00b"}),
    "secret build env name with '='": _with(("secret_vars", "build_env"), {"BAD=NAME": "x"}),
    "secret build env value with NUL": _with(("secret_vars", "build_env"), {"TOKEN": "a\x00b"}),
    "git password with NUL": _with(("git_credentials",), {"username": "u", "password": "a\x00b"}),
    "git password with a lone surrogate": _with(
        ("git_credentials",), {"username": "u", "password": "\ud800"}
    ),
    "git.branch with a lone surrogate": _with(("manifest", "git", "branch"), "b\ud800"),
    "git.remote with a lone surrogate": _with(("manifest", "git", "remote"), MISSING_REPO + "\ud800"),
}


@pytest.mark.parametrize("platform", ["sqlite"], indirect=True)
@pytest.mark.parametrize("case", list(UNUSABLE))
def test_values_no_git_or_process_can_take_are_refused_up_front(platform: Platform, case: str) -> None:
    r = platform.send(to_json(UNUSABLE[case]))
    if r.status_code == 202:
        outcome = platform.wait_failed(r.json()["id"])["error"]
        pytest.fail(f"{case}: accepted (202), then the deployment failed with: {outcome}")
    assert r.status_code == 400 and r.json()["type"] in ("InvalidRequest", "InvalidManifest"), r.text
