"""The lifecycle's gateway API (resolve, authorize), job family tokens and family → family grants.

One control plane for the module, on a SQLite file, not started (its job monitor would call the
stored-only jobs lost); one real deployment (adder) for the replicas and the job's AUTH_TOKEN.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from sqlalchemy import select

from lifecycle import family_tokens
from lifecycle.api.app import create_app
from lifecycle.auth import passwords
from lifecycle.auth.admin import ensure_admin
from lifecycle.auth.public_endpoints import decide_public_endpoint, request_public_endpoints
from lifecycle.auth.tokens import authenticate, revoke_token
from lifecycle.control_plane import ControlPlane
from lifecycle.secrets import SecretBox
from lifecycle.store import jobs as job_store
from lifecycle.store.audit import list_events
from lifecycle.store.models import JobStatus, SecretRecord, SubjectType, Token
from tests.conftest import SAMPLE_JOBS
from tests.gitservers import file_url, make_repo
from tests.lifecycle.platform import lifecycle_config, store_only_job

PASSWORD = "correct horse battery"
PERFORM = "/api/v1/perform"
_names = itertools.count(1)


def unique(prefix: str) -> str:
    return f"{prefix}{next(_names)}"


class Api:
    def __init__(self, client: TestClient, plane: ControlPlane, admin_token: str, gateway_token: str) -> None:
        self.client = client
        self.plane = plane
        self.admin_token = admin_token
        self.gateway_token = gateway_token

    def call(self, method: str, path: str, token: str | None = None, json: Any = None) -> httpx.Response:
        """`token` None: the gateway's credential; "" for no token at all."""
        token = self.gateway_token if token is None else token
        headers = {"X-Racetrack-Auth": token} if token else {}
        return self.client.request(method, f"/lifecycle/api/v1{path}", headers=headers, json=json)

    def ok(self, method: str, path: str, token: str | None = None, json: Any = None) -> Any:
        r = self.call(method, path, token, json)
        assert r.status_code in (200, 201, 202), r.text
        return r.json()

    def resolve(self, name: str, version: str, token: str | None = None) -> httpx.Response:
        return self.call("GET", f"/gateway/resolve/{name}/{version}", token)

    def authorize(
        self, token: str | None, name: str, version: str, endpoint: str = PERFORM
    ) -> dict[str, Any]:
        body = {"token": token, "job_name": name, "job_version": version, "endpoint": endpoint}
        decision: dict[str, Any] = self.ok("POST", "/gateway/authorize", json=body)
        return decision

    def new_user(self) -> tuple[str, str]:
        """A user with Racetrack's default permissions (read, call, deploy everything) and its token."""
        name = unique("user")
        self.ok("POST", "/users", self.admin_token, {"username": name, "password": PASSWORD})
        login = self.ok("POST", "/users/login", "", {"username": name, "password": PASSWORD})
        return name, login["token"]

    def new_esc(self) -> tuple[str, str]:
        name = unique("esc")
        self.ok("POST", "/escs", self.admin_token, {"name": name})
        return name, self.ok("POST", f"/escs/{name}/tokens", self.admin_token, {})["token"]

    def grant(self, subject_type: str, subject_name: str, scope: str, **resource: str) -> None:
        body = {"subject_type": subject_type, "subject_name": subject_name, "scope": scope, **resource}
        self.ok("POST", "/permissions", self.admin_token, body)

    def job(self, name: str, version: str, status: JobStatus = JobStatus.RUNNING) -> None:
        """A job version in the store only (no process runs for it)."""
        store_only_job(self.plane, name, version, status)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    data = tmp_path_factory.mktemp("lifecycle-gateway")
    config = lifecycle_config(data)
    with pytest.MonkeyPatch.context() as patch:
        # argon2id with tiny parameters: the real ones cost about 0.1 s a hash
        patch.setattr(passwords, "hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
        plane = ControlPlane(config, pub_url="http://127.0.0.1:7200/pub")
        admin_token = ensure_admin(plane.db, data)
        assert admin_token
        with TestClient(create_app(plane)) as client:
            api = Api(client, plane, admin_token, "")
            api.ok("POST", "/escs", admin_token, {"name": "gateway"})
            api.grant("esc", "gateway", "call_admin_api")
            api.gateway_token = api.ok("POST", "/escs/gateway/tokens", admin_token, {})["token"]
            yield api
        plane.stop()


# ---- the gateway's credential -----------------------------------------------------------------


def test_the_gateway_api_needs_a_gateway_credential(api: Api) -> None:
    api.job("guarded", "1.0.0")
    authorize = {"token": None, "job_name": "guarded", "job_version": "1.0.0", "endpoint": PERFORM}
    _, user_token = api.new_user()
    esc, esc_token = api.new_esc()
    for method, path, body in (
        ("GET", "/gateway/resolve/guarded/latest", None),
        ("POST", "/gateway/authorize", authorize),
    ):
        missing = api.call(method, path, "", body)
        assert missing.status_code == 401 and "X-Racetrack-Auth" in missing.json()["error"]
        assert api.call(method, path, "tst_" + "x" * 43, body).status_code == 401
        for token, subject in ((user_token, "User"), (esc_token, f"ESC {esc}")):
            denied = api.call(method, path, token, body)
            assert denied.status_code == 403, denied.text
            assert denied.json()["scope"] == "call_admin_api" and subject in denied.json()["error"]
            assert denied.json()["resource"] == "the gateway API"
        assert api.call(method, path, None, body).status_code == 200
        assert api.call(method, path, api.admin_token, body).status_code == 200

    # a revoked gateway credential stops at once, although accepted ones are cached
    spare = api.ok("POST", "/escs/gateway/tokens", api.admin_token, {})
    assert api.resolve("guarded", "1.0.0", spare["token"]).status_code == 200
    api.ok("DELETE", f"/tokens/{spare['id']}", api.admin_token)
    assert api.resolve("guarded", "1.0.0", spare["token"]).status_code == 401


# ---- resolve ------------------------------------------------------------------------------------


def test_resolve_exact_latest_and_wildcards(api: Api) -> None:
    name = unique("resolver")
    for version, status in (
        ("0.9.0", JobStatus.STOPPED),
        ("1.0.0", JobStatus.RUNNING),
        ("1.1.0", JobStatus.RUNNING),
        ("1.2.0", JobStatus.STARTING),  # never what `latest` or `1.x` reach while 1.1.0 runs
        ("2.0.0", JobStatus.STARTING),
        ("3.0.0-rc.1", JobStatus.RUNNING),  # a prerelease: only by its exact version
    ):
        api.job(name, version, status)

    def resolved(version: str) -> tuple[str, str]:
        r = api.resolve(name, version)
        assert r.status_code == 200, r.text
        return r.json()["version"], r.json()["status"]

    assert resolved("latest") == ("1.1.0", "running")
    assert resolved("1.x") == resolved("1.x.x") == resolved("*") == ("1.1.0", "running")
    assert resolved("1.0.x") == ("1.0.0", "running")
    assert resolved("1.2.0") == ("1.2.0", "starting")
    assert resolved("3.0.0-rc.1") == ("3.0.0-rc.1", "running")
    assert resolved("0.9.0") == ("0.9.0", "stopped")
    # nothing that matches runs: the highest that matches, so the gateway can say "not ready"
    assert resolved("2.x") == ("2.0.0", "starting")

    target = api.resolve(name, "latest").json()
    assert target == {
        "name": name,
        "version": "1.1.0",
        "replicas": [],  # no process runs for a stored-only job
        "status": "running",
        "public_endpoints": [],
    }
    for missing_version in ("4.x", "0.x", "1.3.0", "3.0.0", "not-a-version"):  # 0.x: only stopped
        r = api.resolve(name, missing_version)
        assert r.status_code == 404, (missing_version, r.text)
        assert r.json() == {
            "error": f"job {name} has no version {missing_version}",
            "type": "NotFound",
            "job": name,
            "version": missing_version,
        }
    assert api.resolve(unique("nosuchjob"), "latest").status_code == 404


def test_resolve_lists_only_approved_public_endpoints_of_that_version(api: Api) -> None:
    name = unique("public")
    api.job(name, "1.0.0")
    api.job(name, "1.1.0")
    with api.plane.db.session() as session:
        requests = request_public_endpoints(session, name, "1.1.0", ["/docs", "/api/v1/perform", "/secret"])
        ids = {r.endpoint: r.id for r in requests}
        request_public_endpoints(session, name, "1.0.0", ["/docs"])
    with api.plane.db.session() as session:
        decide_public_endpoint(session, ids["/docs"], True, actor="test")
        decide_public_endpoint(session, ids["/api/v1/perform"], True, actor="test")
        decide_public_endpoint(session, ids["/secret"], False, actor="test")
    assert sorted(api.resolve(name, "1.1.0").json()["public_endpoints"]) == ["/api/v1/perform", "/docs"]
    assert api.resolve(name, "1.0.0").json()["public_endpoints"] == []  # pending


def test_resolve_gives_the_ready_replicas_of_a_deployed_job_which_has_its_family_token(
    api: Api, tmp_path: Path
) -> None:
    repo = make_repo(
        tmp_path / "adder",
        {"entrypoint.py": (SAMPLE_JOBS / "adder" / "entrypoint.py").read_text(), "requirements.txt": ""},
    )
    manifest = {
        "name": "adder",
        "owner_email": "sample@example.com",
        "jobtype": "python3:latest",
        "version": "1.0.0",
        "git": {"remote": file_url(repo)},
        "jobtype_extra": {"entrypoint_path": "entrypoint.py"},
    }
    deployment = api.ok("POST", "/deploy", api.admin_token, {"manifest": manifest})
    deadline = time.monotonic() + 120
    status = api.ok("GET", f"/deploy/{deployment['id']}", api.admin_token)
    while status["status"] == "in_progress":
        assert time.monotonic() < deadline, status
        time.sleep(0.1)
        status = api.ok("GET", f"/deploy/{deployment['id']}", api.admin_token)
    assert status["status"] == "done", status

    target = api.resolve("adder", "latest").json()
    serving = api.plane.runner.serving("adder", "1.0.0")
    assert target["version"] == "1.0.0" and target["status"] == "running"
    assert target["replicas"] == [r.address for r in serving] and target["replicas"]
    assert httpx.post(target["replicas"][0] + PERFORM, json={"numbers": [40, 2]}).json() == 42

    # the job runs with its family's token, which speaks for the family
    environ = Path(f"/proc/{serving[0].pid}/environ").read_bytes().split(b"\0")
    env = dict(item.decode().split("=", 1) for item in environ if b"=" in item)
    token = family_tokens.family_token(api.plane.db, api.plane.secrets, "adder")
    assert env["AUTH_TOKEN"] == token
    subject = authenticate(api.plane.db, token)
    assert subject is not None and subject.description == "Job family adder"


# ---- authorize ----------------------------------------------------------------------------------


def test_authorize_decisions(api: Api) -> None:
    name = unique("callee")
    api.job(name, "1.0.0")
    user, user_token = api.new_user()
    esc, esc_token = api.new_esc()

    allowed = api.authorize(user_token, name, "1.0.0")
    assert allowed["allowed"] is True and allowed["status"] == 200
    assert allowed["caller_name"] == f"User {user}" and allowed["reason"] == "permitted"
    assert allowed["subject_key"].startswith("user:") and allowed["expires_in"] is None

    denied = api.authorize(esc_token, name, "1.0.0")
    assert (denied["allowed"], denied["status"], denied["caller_name"]) == (False, 403, f"ESC {esc}")
    assert (
        denied["reason"] == f"ESC {esc} has no call_job permission for endpoint {PERFORM} of job {name} 1.0.0"
    )
    assert denied["subject_key"].startswith("esc:")

    for token, reason in (
        (None, "missing auth token"),
        ("tst_" + "A" * 43, "invalid auth token"),
        ("x" * 10_000, "invalid auth token"),  # a decision, not a 400: no limit on what callers send
    ):
        decision = api.authorize(token, name, "1.0.0")
        assert (decision["allowed"], decision["status"], decision["caller_name"]) == (False, 401, None)
        assert reason in decision["reason"] and decision["subject_key"] is None

    # approved public endpoints need no token
    with api.plane.db.session() as session:
        (request,) = request_public_endpoints(session, name, "1.0.0", ["/docs"])
    with api.plane.db.session() as session:
        decide_public_endpoint(session, request.id, True, actor="test")
    public = api.authorize(None, name, "1.0.0", "/docs/index.html")
    assert (public["allowed"], public["status"], public["reason"]) == (True, 200, "public endpoint")
    assert api.authorize(None, name, "1.0.0", "/docsx")["status"] == 401

    # a token that expires says when, so that no cache keeps the decision longer
    expiring = api.ok("POST", f"/escs/{esc}/tokens", api.admin_token, {"expires_in_days": 1})["token"]
    api.grant("esc", esc, "call_job", job_family=name)
    decision = api.authorize(expiring, name, "1.0.0")
    assert decision["allowed"] and 86_000 < decision["expires_in"] <= 86_400

    invalid = api.call("POST", "/gateway/authorize", None, {"job_name": name, "job_version": "1.0.0"})
    assert invalid.status_code == 400 and "endpoint" in invalid.json()["error"]


# ---- family tokens ------------------------------------------------------------------------------


def test_a_family_token_is_issued_once_stored_encrypted_and_recoverable(api: Api) -> None:
    family = unique("family")
    db, box = api.plane.db, api.plane.secrets
    token = family_tokens.family_token(db, box, family)
    assert family_tokens.family_token(db, box, family) == token
    # recoverable with the key alone (another SecretBox, as after a restart) ...
    same_key = SecretBox(api.plane.config.secret_key)
    assert family_tokens.family_token(db, same_key, family) == token
    # ... and stored only encrypted
    with db.session() as session:
        record = session.scalars(
            select(SecretRecord).where(
                SecretRecord.job_name == family, SecretRecord.job_version == family_tokens.FAMILY_VERSION
            )
        ).one()
        assert token not in record.ciphertext
        assert box.decrypt(record.ciphertext) == {"AUTH_TOKEN": token}
        created = [
            e
            for e in list_events(session, limit=1000, action="token.create")
            if e.target == f"Job family {family}"
        ]
    assert len(created) == 1 and token not in str(created[0].details)

    subject = authenticate(db, token)
    assert subject is not None
    assert (subject.type, subject.name, subject.description) == (
        SubjectType.FAMILY,
        family,
        f"Job family {family}",
    )

    # the family outlives its versions, and so does its token
    api.job(family, "1.0.0")
    with db.session() as session:
        job_store.delete_job(session, family, "1.0.0")
    assert family_tokens.family_token(db, box, family) == token

    # in a unit of work that changes other things (as restart_jobs does)
    with db.session() as session:
        api_job = job_store.ensure_family(session, unique("other"))
        assert api_job.id
        assert family_tokens.family_token_in(session, box, family) == token


def test_a_revoked_family_token_is_replaced(api: Api) -> None:
    family = unique("family")
    db, box = api.plane.db, api.plane.secrets
    token = family_tokens.family_token(db, box, family)
    subject = authenticate(db, token)
    assert subject is not None and subject.token_id is not None
    with db.session() as session:
        assert revoke_token(session, subject.token_id, actor="test")
    replaced = family_tokens.family_token(db, box, family)
    assert replaced != token and authenticate(db, token) is None
    assert authenticate(db, replaced) is not None
    assert family_tokens.family_token(db, box, family) == replaced


def test_concurrent_first_uses_share_one_token(api: Api) -> None:
    family = unique("family")
    results: list[str] = []
    barrier = threading.Barrier(6)

    def first_use() -> None:
        barrier.wait()
        results.append(family_tokens.family_token(api.plane.db, api.plane.secrets, family))

    threads = [threading.Thread(target=first_use) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(results) == 6 and len(set(results)) == 1
    with api.plane.db.session() as session:
        record = job_store.get_family(session, family)
        assert record is not None
        issued = session.scalars(
            select(Token).where(Token.subject_type == SubjectType.FAMILY, Token.subject_id == record.id)
        ).all()
    assert len(issued) == 1


# ---- family → family call_job -------------------------------------------------------------------


def test_a_family_granted_call_job_calls_the_target_with_its_token(api: Api) -> None:
    caller, target, other = unique("chain"), unique("adder"), unique("other")
    for name in (caller, target, other):
        api.job(name, "1.0.0")
    token = family_tokens.family_token(api.plane.db, api.plane.secrets, caller)
    assert api.authorize(token, target, "1.0.0")["status"] == 403

    granted = api.call("POST", f"/families/{caller}/can-call/{target}", api.admin_token)
    assert granted.status_code == 201, granted.text
    assert {k: granted.json()[k] for k in ("subject_type", "subject_name", "scope", "job_family")} == {
        "subject_type": "family",
        "subject_name": caller,
        "scope": "call_job",
        "job_family": target,
    }
    again = api.call("POST", f"/families/{caller}/can-call/{target}", api.admin_token)
    assert again.status_code == 200 and again.json()["id"] == granted.json()["id"]

    decision = api.authorize(token, target, "1.0.0")
    assert (decision["allowed"], decision["caller_name"]) == (True, f"Job family {caller}")
    assert decision["subject_key"].startswith("family:")
    assert api.authorize(token, target, "1.0.0", "/api/v1/parameters")["allowed"]  # any endpoint
    assert api.authorize(token, other, "1.0.0")["status"] == 403
    assert api.authorize(token, caller, "1.0.0")["status"] == 403  # not even itself, unless granted

    revoked = api.ok("DELETE", f"/families/{caller}/can-call/{target}", api.admin_token)
    assert revoked == {"id": granted.json()["id"], "revoked": True}
    assert api.authorize(token, target, "1.0.0")["status"] == 403
    assert api.call("DELETE", f"/families/{caller}/can-call/{target}", api.admin_token).status_code == 404


def test_who_may_grant_family_calls(api: Api) -> None:
    caller, target = unique("chain"), unique("adder")
    api.job(caller, "1.0.0")
    api.job(target, "1.0.0")
    path = f"/families/{caller}/can-call/{target}"

    assert api.call("POST", path, "").status_code == 401
    esc, esc_token = api.new_esc()
    denied = api.call("POST", path, esc_token)
    assert denied.status_code == 403
    assert f"ESC {esc} may not let job family {caller} call {target}" in denied.json()["error"]
    api.grant("esc", esc, "deploy_job", job_family=caller)  # a deployer of the caller ...
    assert api.call("POST", path, esc_token).status_code == 403
    api.grant("esc", esc, "call_job", job_family=target)  # ... who may call the target
    assert api.call("POST", path, esc_token).status_code == 201
    assert api.call("DELETE", path, esc_token).status_code == 200

    _, user_token = api.new_user()  # Racetrack's defaults: deploy and call everything
    assert api.call("POST", path, user_token).status_code == 201

    # before either family has a deployed version (a job whose input example calls another
    # needs the grant before its first deploy): the families are created
    early_caller, early_target = unique("early"), unique("later")
    granted = api.call("POST", f"/families/{early_caller}/can-call/{early_target}", api.admin_token)
    assert granted.status_code == 201, granted.text
    families = {row["name"] for row in api.ok("GET", "/families", api.admin_token)}
    assert {early_caller, early_target} <= families
    again = api.call("POST", f"/families/{early_caller}/can-call/{early_target}", api.admin_token)
    assert again.status_code == 200

    # taking back a grant that was never made is a 404 naming it
    missing = api.call("DELETE", f"/families/{unique('nosuch')}/can-call/{target}", api.admin_token)
    assert missing.status_code == 404 and "not found" in missing.json()["error"]
