"""The admin API: users, tokens, ESCs, permissions, families, audit log and public endpoints.

One platform for the module (a real control plane on a SQLite file, without job processes);
each test works on names of its own.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient

from lifecycle.api.app import create_app
from lifecycle.auth import passwords
from lifecycle.auth.admin import ensure_admin
from lifecycle.auth.public_endpoints import is_public_endpoint, request_public_endpoints
from lifecycle.control_plane import ControlPlane
from lifecycle.store import deployments as deployment_store
from lifecycle.store import jobs as job_store
from lifecycle.store.models import JobStatus
from tests.db import count_queries
from tests.lifecycle.platform import lifecycle_config, store_only_job

PASSWORD = "correct horse battery"
_names = itertools.count(1)


class Api:
    def __init__(self, client: TestClient, plane: ControlPlane, admin_token: str) -> None:
        self.client = client
        self.plane = plane
        self.admin_token = admin_token

    def call(
        self, method: str, path: str, token: str | None = "admin", json: Any = None, **params: Any
    ) -> httpx.Response:
        """`token`: "admin" for the admin's, None for no token, else the token itself."""
        headers = (
            {} if token is None else {"X-Racetrack-Auth": self.admin_token if token == "admin" else token}
        )
        return self.client.request(
            method, f"/api/v1{path}", headers=headers, json=json, params=params or None
        )

    def ok(self, method: str, path: str, token: str | None = "admin", json: Any = None, **params: Any) -> Any:
        r = self.call(method, path, token, json, **params)
        assert r.status_code in (200, 201), r.text
        return r.json()

    def new_user(self, prefix: str = "user", password: str = PASSWORD) -> tuple[str, str]:
        """A new user (Racetrack's default permissions) and a login token of it."""
        name = f"{prefix}{next(_names)}"
        self.ok("POST", "/users", json={"username": name, "password": password})
        token = self.ok("POST", "/users/login", token=None, json={"username": name, "password": password})
        return name, token["token"]

    def new_esc(self) -> str:
        name = f"esc{next(_names)}"
        self.ok("POST", "/escs", json={"name": name})
        return name

    def events(self, **filters: Any) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = self.ok("GET", "/audit", limit=1000, **filters)["events"]
        return events

    def job(self, name: str, version: str, status: JobStatus) -> None:
        """A job version in the store (no process runs for it)."""
        store_only_job(self.plane, name, version, status, deployed_by="User admin")

    def authenticates(self, token: str) -> bool:
        status = self.call("GET", "/users/validate_user_auth", token).status_code
        assert status in (200, 401)
        return status == 200


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    data = tmp_path_factory.mktemp("lifecycle-admin")
    config = lifecycle_config(data)
    with pytest.MonkeyPatch.context() as patch:
        # argon2id with tiny parameters: the real ones cost about 0.1 s a hash
        patch.setattr(passwords, "hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
        plane = ControlPlane(config, pub_url="http://127.0.0.1:7200/pub")
        # no plane.start(): these tests run no jobs, and the job monitor would call stored jobs lost
        admin_token = ensure_admin(plane.db, data)
        assert admin_token
        with TestClient(create_app(plane)) as client:
            yield Api(client, plane, admin_token)
        plane.stop()


def assert_field_error(r: httpx.Response, field: str, text: str = "") -> None:
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["type"] == "InvalidRequest"
    assert field in {e["field"] for e in body["errors"]}, body
    assert text in body["error"], body


def assert_admin_only(r: httpx.Response, subject: str, resource: str) -> None:
    assert r.status_code == 403, r.text
    body = r.json()
    assert body["type"] == "Forbidden"
    assert body["error"] == f"{subject} has no call_admin_api permission for {resource}"
    assert (body["subject"], body["scope"], body["resource"]) == (subject, "call_admin_api", resource)


# ---- every admin route: 401 without a token, 403 for a plain user ------------------------------

ADMIN_ROUTES = [
    ("POST", "/users", {"username": "nobody1", "password": PASSWORD}, "users"),
    ("GET", "/users", None, "users"),
    ("PATCH", "/users/admin", {"is_active": False}, "user admin"),
    ("DELETE", "/users/admin", None, "user admin"),
    ("PUT", "/users/admin/password", {"new_password": "another password"}, "user admin"),
    ("POST", "/users/admin/tokens", {}, "user admin"),
    ("GET", "/users/admin/tokens", None, "user admin"),
    ("DELETE", "/tokens/1", None, "token 1 of User admin"),
    ("POST", "/escs", {"name": "nobody2"}, "ESCs"),
    ("GET", "/escs", None, "ESCs"),
    ("DELETE", "/escs/any", None, "ESC any"),
    ("POST", "/escs/any/tokens", {}, "ESC any"),
    ("GET", "/escs/any/tokens", None, "ESC any"),
    (
        "POST",
        "/permissions",
        {"subject_type": "user", "subject_name": "admin", "scope": "read_job"},
        "permissions",
    ),
    ("GET", "/permissions", None, "permissions"),
    ("DELETE", "/permissions/1", None, "permissions"),
    ("GET", "/audit", None, "the audit log"),
    ("GET", "/public-endpoints", None, "public endpoints"),
    ("POST", "/public-endpoints/1/approve", None, "public endpoint request 1"),
    ("POST", "/public-endpoints/1/reject", None, "public endpoint request 1"),
]


def test_admin_routes_need_a_token(api: Api) -> None:
    for method, path, body, _ in [*ADMIN_ROUTES, ("GET", "/families", None, "")]:
        for token in (None, "tst_not-a-real-token", "garbage"):
            r = api.call(method, path, token, body)
            assert r.status_code == 401, (method, path, r.text)
            assert r.json()["type"] == "Unauthenticated"


def test_admin_routes_refuse_a_plain_user_naming_subject_scope_and_resource(api: Api) -> None:
    name, token = api.new_user("plain")
    for method, path, body, resource in ADMIN_ROUTES:
        assert_admin_only(api.call(method, path, token, body), f"User {name}", resource)
    # and nothing was done
    assert api.ok("GET", "/users/admin/tokens") and api.authenticates(api.admin_token)
    assert "nobody1" not in [u["username"] for u in api.ok("GET", "/users")]


def test_both_prefixes_serve_the_admin_api(api: Api) -> None:
    headers = {"X-Racetrack-Auth": api.admin_token}
    for prefix in ("/api/v1", "/lifecycle/api/v1"):
        r = api.client.get(f"{prefix}/users", headers=headers)
        assert r.status_code == 200 and "admin" in [u["username"] for u in r.json()]


# ---- users ------------------------------------------------------------------------------------


def test_create_and_list_users(api: Api) -> None:
    name = f"alice{next(_names)}"
    r = api.call("POST", "/users", json={"username": name, "password": PASSWORD})
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["username"] == name and created["is_active"] and not created["is_admin"]
    assert "password" not in r.text and "argon2" not in r.text and PASSWORD not in r.text
    listed = {u["username"]: u for u in api.ok("GET", "/users")}
    assert listed[name] == created and listed["admin"]["is_admin"]

    login = api.ok("POST", "/users/login", token=None, json={"username": name, "password": PASSWORD})
    assert api.ok("GET", "/users/validate_user_auth", login["token"])["username"] == name

    [event] = api.events(action="user.create", actor="User admin")[:1]
    assert event["target"] == f"User {name}"
    granted = api.events(action="permission.grant")
    assert {e["details"]["scope"] for e in granted if e["target"] == f"User {name}"} == {
        "read_job",
        "call_job",
        "deploy_job",
        "deploy_new_family",
    }


def test_creating_users_validates_and_refuses_duplicates(api: Api) -> None:
    name, _ = api.new_user()
    r = api.call("POST", "/users", json={"username": name, "password": PASSWORD})
    assert r.status_code == 409 and r.json() == {"error": f"user {name} already exists", "type": "Conflict"}

    assert_field_error(
        api.call("POST", "/users", json={"username": "-bad name", "password": PASSWORD}), "username"
    )
    r = api.call("POST", "/users", json={"username": "shortpass", "password": "1234"})
    assert_field_error(r, "password", "a password has 8 to 1024 characters")
    assert "1234" not in r.text
    assert_field_error(api.call("POST", "/users", json={"username": "nopass"}), "password")
    assert_field_error(
        api.call("POST", "/users", json={"username": "x", "password": PASSWORD, "role": 1}), "role"
    )
    assert not {"shortpass", "nopass", "x"} & {u["username"] for u in api.ok("GET", "/users")}


def test_change_own_password_with_the_old_one(api: Api) -> None:
    name, token = api.new_user()
    path = f"/users/{name}/password"
    assert_field_error(api.call("PUT", path, token, {"new_password": "new password 1"}), "old_password")
    r = api.call("PUT", path, token, {"old_password": "wrong password", "new_password": "new password 1"})
    assert r.status_code == 403 and r.json()["field"] == "old_password"
    r = api.call("PUT", path, token, {"old_password": PASSWORD, "new_password": "short"})
    assert_field_error(r, "new_password", "8 to 1024")
    assert api.ok("PUT", path, token, {"old_password": PASSWORD, "new_password": "new password 1"}) == {
        "username": name,
        "password_changed": True,
    }
    login = api.call("POST", "/users/login", None, {"username": name, "password": PASSWORD})
    assert login.status_code == 401
    api.ok("POST", "/users/login", None, {"username": name, "password": "new password 1"})
    assert api.events(action="user.change_password", actor=f"User {name}")[0]["target"] == f"User {name}"


def test_admin_sets_any_password_and_others_may_not(api: Api) -> None:
    name, _ = api.new_user()
    other, other_token = api.new_user()
    r = api.call(
        "PUT", f"/users/{name}/password", other_token, {"old_password": PASSWORD, "new_password": "x" * 9}
    )
    assert_admin_only(r, f"User {other}", f"user {name}")
    api.ok("PUT", f"/users/{name}/password", json={"new_password": "set by the admin"})
    api.ok("POST", "/users/login", None, {"username": name, "password": "set by the admin"})
    assert api.call("PUT", "/users/ghost/password", json={"new_password": "whatever 123"}).status_code == 404


def test_patch_user_deactivates_and_makes_admin(api: Api) -> None:
    name, token = api.new_user()
    assert api.ok("PATCH", f"/users/{name}", json={"is_active": False})["is_active"] is False
    assert not api.authenticates(token)  # at once
    assert api.call("POST", "/users/login", None, {"username": name, "password": PASSWORD}).status_code == 401
    assert api.call("POST", f"/users/{name}/tokens", json={}).status_code == 409

    assert api.ok("PATCH", f"/users/{name}", json={"is_active": True, "is_admin": True})["is_admin"] is True
    assert api.authenticates(token)
    assert api.ok("GET", "/users", token)  # an admin now
    assert [e["action"] for e in api.events(actor="User admin")[:3]] == [
        "user.set_admin",
        "user.activate",
        "user.deactivate",
    ]

    assert api.call("PATCH", f"/users/{name}", token, {"is_admin": False}).status_code == 409  # not oneself
    assert_field_error(api.call("PATCH", f"/users/{name}", json={}), "body")
    assert_field_error(api.call("PATCH", f"/users/{name}", json={"is_active": "maybe"}), "is_active")
    assert api.call("PATCH", "/users/ghost", json={"is_active": False}).status_code == 404


def test_delete_user_removes_its_tokens(api: Api) -> None:
    name, token = api.new_user()
    assert api.ok("DELETE", f"/users/{name}") == {"username": name, "deleted": True}
    assert not api.authenticates(token)
    assert api.call("DELETE", f"/users/{name}").status_code == 404
    assert api.call("DELETE", "/users/admin").status_code == 409  # not oneself
    assert api.events(action="user.delete")[0]["target"] == f"User {name}"


# ---- tokens -----------------------------------------------------------------------------------


def test_a_token_is_shown_once_then_works_and_is_listed_without_its_secret(api: Api) -> None:
    name, login_token = api.new_user()
    r = api.call("POST", f"/users/{name}/tokens", login_token, {"description": "ci"})
    assert r.status_code == 201, r.text
    issued = r.json()
    secret = issued["token"]
    assert (
        secret.startswith("tst_")
        and secret.startswith(issued["prefix"])
        and issued["subject"] == f"User {name}"
    )
    assert issued["expires_at"] is None and issued["revoked_at"] is None

    assert api.ok("GET", "/users/validate_user_auth", secret)["username"] == name
    listing = api.call("GET", f"/users/{name}/tokens", secret)
    assert secret not in listing.text and secret[len(issued["prefix"]) :] not in listing.text
    tokens = {t["id"]: t for t in listing.json()}
    assert len(tokens) == 2 and issued["id"] in tokens  # the login's and this one
    assert {k: v for k, v in issued.items() if k not in ("token", "subject", "last_used_at")} == {
        k: v for k, v in tokens[issued["id"]].items() if k != "last_used_at"
    }
    assert tokens[issued["id"]]["last_used_at"] is not None  # it was used above
    assert "token" not in tokens[issued["id"]]
    assert [t["id"] for t in api.ok("GET", f"/users/{name}/tokens")] == list(
        tokens
    )  # the admin sees them too

    [event] = [e for e in api.events(action="token.create") if e["details"]["token_id"] == issued["id"]]
    assert event["actor"] == f"User {name}" and event["details"]["prefix"] == issued["prefix"]
    assert secret not in str(api.events())


def test_revoking_a_token_takes_effect_at_once(api: Api) -> None:
    name, token = api.new_user()
    spare = api.ok("POST", f"/users/{name}/tokens", token, {})
    assert api.authenticates(spare["token"])
    revoked = api.ok("DELETE", f"/tokens/{spare['id']}", token)
    assert revoked["id"] == spare["id"] and revoked["revoked_at"] is not None and "token" not in revoked
    assert not api.authenticates(spare["token"])
    assert api.call("GET", f"/users/{name}/tokens", spare["token"]).status_code == 401
    assert api.authenticates(token)

    assert spare["id"] not in [t["id"] for t in api.ok("GET", f"/users/{name}/tokens", token)]
    listed = api.ok("GET", f"/users/{name}/tokens", token, include_revoked="true")
    assert [t["revoked_at"] is not None for t in listed if t["id"] == spare["id"]] == [True]
    assert api.events(action="token.revoke", actor=f"User {name}")[0]["details"]["token_id"] == spare["id"]

    other, other_token = api.new_user()
    r = api.call("DELETE", f"/tokens/{spare['id']}", other_token)
    assert_admin_only(r, f"User {other}", f"token {spare['id']} of User {name}")
    assert api.call("DELETE", "/tokens/999999").status_code == 404
    assert_field_error(api.call("DELETE", "/tokens/abc"), "token_id")
    api.ok("DELETE", f"/tokens/{api.ok('POST', f'/users/{other}/tokens', json={})['id']}")  # the admin may


def test_token_expiry(api: Api) -> None:
    name, token = api.new_user()
    path = f"/users/{name}/tokens"
    in_a_week = api.ok("POST", path, token, {"expires_in_days": 7})
    expires = datetime.fromisoformat(in_a_week["expires_at"])
    assert timedelta(days=6.9) < expires - datetime.now(UTC) <= timedelta(days=7)
    # a token cannot make one that outlives it
    child = api.ok("POST", path, in_a_week["token"], {})
    assert child["expires_at"] == in_a_week["expires_at"]
    r = api.call("POST", path, in_a_week["token"], {"expires_in_days": 30})
    assert_field_error(r, "expires_at", "must not be later than the expiry of the token")

    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    assert_field_error(api.call("POST", path, token, {"expires_at": past}), "expires_at", "in the future")
    assert_field_error(api.call("POST", path, token, {"expires_at": "2999-01-01T00:00:00"}), "expires_at")
    assert_field_error(api.call("POST", path, token, {"expires_in_days": 0}), "expires_in_days")
    r = api.call("POST", path, token, {"expires_in_days": 1, "expires_at": "2999-01-01T00:00:00Z"})
    assert_field_error(r, "body", "not both")
    assert api.call("POST", "/users/ghost/tokens", json={}).status_code == 404
    assert api.call("GET", "/users/ghost/tokens").status_code == 404


# ---- ESCs -------------------------------------------------------------------------------------


def test_escs_lifecycle(api: Api) -> None:
    name = f"billing{next(_names)}"
    r = api.call("POST", "/escs", json={"name": name})
    assert r.status_code == 201 and r.json()["name"] == name
    assert name in [e["name"] for e in api.ok("GET", "/escs")]
    assert api.call("POST", "/escs", json={"name": name}).status_code == 409
    assert_field_error(api.call("POST", "/escs", json={"name": "no spaces"}), "name", "ESC name")
    assert_field_error(api.call("POST", "/escs", json={}), "name")

    issued = api.ok("POST", f"/escs/{name}/tokens", json={"description": "prod"})
    assert issued["subject"] == f"ESC {name}"
    assert api.ok("GET", "/users/validate_user_auth", issued["token"])["subject"] == f"ESC {name}"
    listing = api.call("GET", f"/escs/{name}/tokens")
    assert [t["id"] for t in listing.json()] == [issued["id"]] and issued["token"] not in listing.text
    api.ok("DELETE", f"/tokens/{issued['id']}")
    assert not api.authenticates(issued["token"])

    second = api.ok("POST", f"/escs/{name}/tokens", json={})
    assert api.ok("DELETE", f"/escs/{name}") == {"name": name, "deleted": True}
    assert not api.authenticates(second["token"])
    for method, path in (
        ("DELETE", f"/escs/{name}"),
        ("POST", f"/escs/{name}/tokens"),
        ("GET", f"/escs/{name}/tokens"),
    ):
        r = api.call(method, path, json={} if method == "POST" else None)
        assert r.status_code == 404 and r.json() == {"error": f"ESC {name} not found", "type": "NotFound"}
    actions = [e["action"] for e in api.events(actor="User admin") if e["target"] == f"ESC {name}"]
    assert actions == [
        "esc.delete",
        "token.revoke",
        "token.create",
        "token.revoke",
        "token.create",
        "esc.create",
    ]


# ---- permissions ------------------------------------------------------------------------------


def test_grant_list_and_revoke_permissions(api: Api) -> None:
    name, token = api.new_user()
    assert api.call("GET", "/audit", token).status_code == 403
    body = {"subject_type": "user", "subject_name": name, "scope": "call_admin_api"}
    r = api.call("POST", "/permissions", json=body)
    assert r.status_code == 201, r.text
    granted = r.json()
    assert {k: granted[k] for k in body} == body and granted["job_family"] is None
    again = api.call("POST", "/permissions", json=body)
    assert again.status_code == 200 and again.json()["id"] == granted["id"]

    assert api.ok("GET", "/audit", token)  # in effect at once
    listed = api.ok("GET", "/permissions", subject_type="user", subject_name=name)
    assert sorted(p["scope"] for p in listed) == [
        "call_admin_api",
        "call_job",
        "deploy_job",
        "deploy_new_family",
        "read_job",
    ]
    assert all(p["subject_name"] == name for p in listed)
    assert granted["id"] in [p["id"] for p in api.ok("GET", "/permissions")]

    assert api.ok("DELETE", f"/permissions/{granted['id']}") == {"id": granted["id"], "revoked": True}
    assert api.call("GET", "/audit", token).status_code == 403  # revoked at once
    assert api.call("DELETE", f"/permissions/{granted['id']}").status_code == 404
    actions = [(e["action"], e["details"]["permission_id"]) for e in api.events(actor="User admin")[:2]]
    assert actions == [("permission.revoke", granted["id"]), ("permission.grant", granted["id"])]


def test_permissions_for_escs_and_families_with_resource_filters(api: Api) -> None:
    esc = api.new_esc()
    body = {
        "subject_type": "esc",
        "subject_name": esc,
        "scope": "call_job",
        "job_family": "adder",
        "job_version": "1.0.0",
        "endpoint": "api/v1/perform/",
    }
    granted = api.ok("POST", "/permissions", json=body)
    assert granted["endpoint"] == "/api/v1/perform" and granted["job_version"] == "1.0.0"
    assert [p["id"] for p in api.ok("GET", "/permissions", subject_type="esc", subject_name=esc)] == [
        granted["id"]
    ]

    with api.plane.db.session() as session:
        job_store.ensure_family(session, f"fam{next(_names)}")
        family = job_store.list_families(session)[-1].name
    r = api.call(
        "POST", "/permissions", json={"subject_type": "family", "subject_name": family, "scope": "call_job"}
    )
    assert r.status_code == 201 and r.json()["subject_name"] == family


def test_permission_requests_are_validated(api: Api) -> None:
    def post(**changes: Any) -> httpx.Response:
        body = {"subject_type": "user", "subject_name": "admin", "scope": "read_job", **changes}
        return api.call("POST", "/permissions", json={k: v for k, v in body.items() if v is not None})

    r = post(scope="read_everything")
    assert_field_error(r, "scope", "read_job")
    assert "call_admin_api" in r.json()["error"]  # the allowed values are named
    assert_field_error(post(subject_type="robot"), "subject_type", "esc")
    assert_field_error(post(job_version="1.0.0"), "job_version", "job_family")
    assert_field_error(post(family="adder"), "family")  # a typo must not grant on every family
    assert_field_error(post(endpoint="/a/../b", job_family="adder"), "endpoint")
    assert_field_error(post(subject_name=""), "subject_name")
    for subject_type, kind in (("user", "user"), ("esc", "ESC"), ("family", "job family")):
        r = post(subject_type=subject_type, subject_name="ghost")
        assert r.status_code == 404 and r.json()["error"] == f"{kind} ghost not found", r.text
    assert api.call("GET", "/permissions", subject_type="esc", subject_name="ghost").status_code == 404
    assert_field_error(api.call("GET", "/permissions", subject_name="admin"), "subject_type")
    assert_field_error(api.call("GET", "/permissions", subject_type="robot"), "subject_type")


# ---- families ---------------------------------------------------------------------------------


def test_families_list_their_versions_in_one_query(api: Api) -> None:
    first, second = f"famx{next(_names)}", f"famy{next(_names)}"
    for version, status in (
        ("0.1.0", JobStatus.RUNNING),
        ("0.2.0", JobStatus.RUNNING),
        ("0.3.0", JobStatus.ERROR),
    ):
        api.job(first, version, status)
    api.job(first, "1.0.0-rc.1", JobStatus.RUNNING)
    api.job(second, "2.0.0", JobStatus.STOPPED)

    with count_queries(api.plane.db.engine) as statements:
        families = {f["name"]: f for f in api.ok("GET", "/families")}
    # authentication, then the families with their versions: one query whatever their number
    assert len([s for s in statements if "FROM job_families" in s]) == 1 and len(statements) <= 3, statements
    assert [v["version"] for v in families[first]["versions"]] == ["0.1.0", "0.2.0", "0.3.0", "1.0.0-rc.1"]
    assert families[first]["versions"][2]["status"] == "error"
    assert families[first]["latest"] == "0.2.0"  # stable and running
    assert families[second]["latest"] is None and families[second]["versions"][0]["status"] == "stopped"

    _, token = api.new_user()  # Racetrack's defaults: read_job on everything
    assert {first, second} <= {f["name"] for f in api.ok("GET", "/families", token)}


def test_families_show_only_what_the_caller_may_read(api: Api) -> None:
    family = f"famz{next(_names)}"
    api.job(family, "1.0.0", JobStatus.RUNNING)
    api.job(family, "2.0.0", JobStatus.RUNNING)
    name, token = api.new_user()
    [read_all] = [
        p
        for p in api.ok("GET", "/permissions", subject_type="user", subject_name=name)
        if p["scope"] == "read_job"
    ]
    api.ok("DELETE", f"/permissions/{read_all['id']}")
    r = api.call("GET", "/families", token)
    assert r.status_code == 403 and r.json()["error"] == f"User {name} has no read_job permission for any job"

    grant = {"subject_type": "user", "subject_name": name, "scope": "read_job", "job_family": family}
    api.ok("POST", "/permissions", json={**grant, "job_version": "2.0.0"})
    [shown] = api.ok("GET", "/families", token)
    assert shown["name"] == family and [v["version"] for v in shown["versions"]] == ["2.0.0"]
    api.ok("POST", "/permissions", json=grant)
    [shown] = api.ok("GET", "/families", token)
    assert [v["version"] for v in shown["versions"]] == ["1.0.0", "2.0.0"]


# ---- audit ------------------------------------------------------------------------------------


def test_audit_log_pages_newest_first_and_filters(api: Api) -> None:
    for _ in range(3):
        api.new_esc()
    page = api.ok("GET", "/audit", limit=2)
    first_ids = [e["id"] for e in page["events"]]
    assert len(first_ids) == 2 and first_ids[0] > first_ids[1] and page["next_before_id"] == first_ids[1]
    older = api.ok("GET", "/audit", limit=2, before_id=page["next_before_id"])
    assert all(e["id"] < first_ids[1] for e in older["events"])
    event = page["events"][0]
    assert (
        event["action"] == "esc.create"
        and event["actor"] == "User admin"
        and event["target"].startswith("ESC ")
    )
    assert datetime.fromisoformat(event["time"]).tzinfo is not None

    creates = api.ok("GET", "/audit", action="esc.create")["events"]
    assert len(creates) >= 3 and {e["action"] for e in creates} == {"esc.create"}
    assert api.ok("GET", "/audit", actor="nobody at all") == {"events": [], "next_before_id": None}
    assert_field_error(api.call("GET", "/audit", limit=0), "limit")
    assert_field_error(api.call("GET", "/audit", limit=5000), "limit")
    assert_field_error(api.call("GET", "/audit", before_id="x"), "before_id")


# ---- public endpoints -------------------------------------------------------------------------


def test_public_endpoint_requests_are_approved_or_rejected(api: Api) -> None:
    job = f"pubjob{next(_names)}"
    with api.plane.db.session() as session:
        made = request_public_endpoints(session, job, "1.0.0", ["/api/v1/perform", "docs/"])
        ids = [request.id for request in made]
    pending = api.ok("GET", "/public-endpoints", status="pending", job_name=job)
    assert [(p["id"], p["endpoint"], p["status"]) for p in pending] == [
        (ids[0], "/api/v1/perform", "pending"),
        (ids[1], "/docs", "pending"),
    ]

    approved = api.ok("POST", f"/public-endpoints/{ids[0]}/approve")
    assert (
        approved["status"] == "approved" and approved["decided_by"] == "User admin" and approved["decided_at"]
    )
    rejected = api.ok("POST", f"/public-endpoints/{ids[1]}/reject")
    assert rejected["status"] == "rejected"
    with api.plane.db.session() as session:
        assert is_public_endpoint(session, job, "1.0.0", "/api/v1/perform")
        assert not is_public_endpoint(session, job, "1.0.0", "/docs")
    assert api.ok("GET", "/public-endpoints", status="pending", job_name=job) == []
    assert [p["id"] for p in api.ok("GET", "/public-endpoints", job_name=job, job_version="1.0.0")] == ids

    decisions = [(e["action"], e["details"]["request_id"]) for e in api.events(actor="User admin")[:2]]
    assert decisions == [("public_endpoint.reject", ids[1]), ("public_endpoint.approve", ids[0])]
    r = api.call("POST", "/public-endpoints/999999/approve")
    assert r.status_code == 404 and "999999" in r.json()["error"]
    assert_field_error(api.call("GET", "/public-endpoints", status="maybe"), "status")


def test_job_and_deployment_listings_show_a_family_reader_its_families(api: Api) -> None:
    """Racetrack's list (GET /job, GET /deploy) for a user allowed to read some families: those,
    not a 403."""
    mine, other = f"mine{next(_names)}", f"other{next(_names)}"
    for family in (mine, other):
        api.job(family, "1.0.0", JobStatus.RUNNING)
        with api.plane.db.session() as session:
            deployment_store.create_deployment(
                session, job_name=family, job_version="1.0.0", manifest_yaml="", deployed_by="User admin"
            )
    name, token = api.new_user()
    [read_all] = [
        p
        for p in api.ok("GET", "/permissions", subject_type="user", subject_name=name)
        if p["scope"] == "read_job"
    ]
    api.ok("DELETE", f"/permissions/{read_all['id']}")
    for path in ("/job", "/deploy"):
        r = api.call("GET", path, token)
        assert (
            r.status_code == 403
            and r.json()["error"] == f"User {name} has no read_job permission for any job"
        )

    grant = {"subject_type": "user", "subject_name": name, "scope": "read_job", "job_family": mine}
    api.ok("POST", "/permissions", json=grant)
    assert [j["name"] for j in api.ok("GET", "/job", token)] == [mine]
    assert [d["job_name"] for d in api.ok("GET", "/deploy", token)] == [mine]
    r = api.call("GET", "/deploy", token, job_name=other)
    assert r.status_code == 403
    assert {mine, other} <= {j["name"] for j in api.ok("GET", "/job")}  # the admin still sees all
