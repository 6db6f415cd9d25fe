"""A Kubernetes API server stand-in on loopback, for tests of the Kubernetes runner and the Kaniko builder.

It answers the few calls those use the way a real API server does, well enough for the official `kubernetes`
client: namespaced create/get/list/replace/patch/delete of a handful of resources, watches, pod logs, and Status
errors. The tests play the controllers and kubelets through the store methods (`put_object`, `update_status`,
`append_log`, `on_create`...).

Where it knowingly differs from Kubernetes:
- DELETE removes the object at once (no graceful deletion, finalizers are not honoured) and answers 200 with
  what Kubernetes answers: the deleted object for pods and services, otherwise a `Status` of
  `"status": "Success"` (the client's `delete_namespaced_pod` expects a V1Pod, the others an object).
- Garbage collection is direct: a deleted Deployment takes the pods matching its `spec.selector.matchLabels`
  (no ReplicaSets), a deleted Job the pods matching its template labels or labelled `job-name=<job>`.
  As in Kubernetes, a Job deleted with no propagation policy orphans its pods (with the same `Warning` header);
  a Deployment's default is Background.
- Strategic merge patches are applied as JSON merge patches (lists are replaced, not merged by key);
  JSON patches get 415. A body whose namespace differs from the path's gets 422, not 400.
- Validation covers names, labels, kind/apiVersion and a Secret's base64 `data`; the `status` of a resource with
  a status subresource is dropped on create and kept on replace/patch, as Kubernetes does.
- Status `details.kind` is the plural (the Kind for `Invalid`), and `details.group` is left out for the core
  group, as Kubernetes does.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import copy
import hmac
import json
import re
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import yaml


@dataclass(frozen=True)
class Resource:
    plural: str
    group: str
    version: str
    kind: str
    has_status: bool
    returns_deleted_object: bool = False  # as Kubernetes' registries for pods and services do

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """How Kubernetes names the resource in messages: `secrets`, `deployments.apps`."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def qualified_kind(self) -> str:
        return f"{self.kind}.{self.group}" if self.group else self.kind


RESOURCES = {
    r.plural: r
    for r in (
        Resource("secrets", "", "v1", "Secret", has_status=False),
        Resource("services", "", "v1", "Service", has_status=True, returns_deleted_object=True),
        Resource("pods", "", "v1", "Pod", has_status=True, returns_deleted_object=True),
        Resource("deployments", "apps", "v1", "Deployment", has_status=True),
        Resource("jobs", "batch", "v1", "Job", has_status=True),
        Resource("networkpolicies", "networking.k8s.io", "v1", "NetworkPolicy", has_status=False),
        Resource("poddisruptionbudgets", "policy", "v1", "PodDisruptionBudget", has_status=True),
    )
}

PROPAGATION_POLICIES = ("Foreground", "Background", "Orphan")
JOB_ORPHAN_WARNING = (
    '299 - "child pods are preserved by default when jobs are deleted; '
    'set propagationPolicy=Background to remove them"'
)
STREAM_WAIT_S = 0.5  # how long a stream sleeps between checks when nothing wakes it

Json = dict[str, Any]
Callback = Callable[["ApiServerStandIn", Json], None]


@dataclass(frozen=True)
class Recorded:
    """One request as the stand-in saw it. `verb` is the method, or WATCH for a watch and LOG for a pod log."""

    method: str
    path: str
    query: dict[str, str]
    content_type: str | None
    body: Any | None
    verb: str = ""
    plural: str | None = None
    namespace: str | None = None
    name: str | None = None

    @property
    def propagation_policy(self) -> str | None:
        if isinstance(self.body, dict) and self.body.get("propagationPolicy"):
            return str(self.body["propagationPolicy"])
        return self.query.get("propagationPolicy")


class ApiError(Exception):
    """Answered as a Kubernetes Status."""

    def __init__(self, code: int, reason: str, message: str, details: Json | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> Json:
        body: Json = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
        }
        if self.details is not None:
            body["details"] = self.details
        body["code"] = self.code
        return body


def details_for(resource: Resource | None, name: str | None, kind: str | None = None) -> Json:
    details: Json = {}
    if name:
        details["name"] = name
    if resource is not None:
        if resource.group:
            details["group"] = resource.group
        details["kind"] = kind or resource.plural
    return details


def not_found(resource: Resource, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{resource.qualified} "{name}" not found', details_for(resource, name))


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def invalid(resource: Resource, name: str, causes: list[tuple[str, str]]) -> ApiError:
    """422 as Kubernetes words it; causes are (field, detail) pairs."""
    text = ", ".join(f"{field}: {detail}" for field, detail in causes)
    details = details_for(resource, name or None, kind=resource.kind)
    details["causes"] = [
        {"reason": "FieldValueInvalid", "message": detail, "field": field} for field, detail in causes
    ]
    return ApiError(422, "Invalid", f'{resource.qualified_kind} "{name}" is invalid: {text}', details)


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_rfc3339_nano() -> str:
    ns = time.time_ns()
    stamp = datetime.fromtimestamp(ns // 1_000_000_000, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{ns % 1_000_000_000:09d}Z"


# --- validation --------------------------------------------------------------------------------------------

DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
DNS_LABEL_1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
LABEL_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
SUBDOMAIN_MESSAGE = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
    "and must start and end with an alphanumeric character"
)
LABEL_1035_MESSAGE = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic "
    "character, and end with an alphanumeric character"
)
LABEL_VALUE_MESSAGE = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
    "and must start and end with an alphanumeric character"
)


def name_problems(resource: Resource, name: str) -> list[tuple[str, str]]:
    if resource.plural == "services":
        if len(name) > 63 or not DNS_LABEL_1035.fullmatch(name):
            return [("metadata.name", f'Invalid value: "{name}": {LABEL_1035_MESSAGE}')]
    elif len(name) > 253 or not DNS_SUBDOMAIN.fullmatch(name):
        return [("metadata.name", f'Invalid value: "{name}": {SUBDOMAIN_MESSAGE}')]
    return []


def label_problems(labels: Any) -> list[tuple[str, str]]:
    if labels is None:
        return []
    if not isinstance(labels, dict):
        return [("metadata.labels", "Invalid value: must be a map of strings")]
    problems = []
    for key, value in labels.items():
        prefix, _, name = key.rpartition("/")
        if (prefix and (len(prefix) > 253 or not DNS_SUBDOMAIN.fullmatch(prefix))) or (
            len(name) > 63 or not LABEL_NAME.fullmatch(name)
        ):
            problems.append(("metadata.labels", f'Invalid value: "{key}": name part must be a valid label'))
        if not isinstance(value, str):
            problems.append(("metadata.labels", f"Invalid value: {json.dumps(value)}: must be a string"))
        elif value and (len(value) > 63 or not LABEL_NAME.fullmatch(value)):
            problems.append(("metadata.labels", f'Invalid value: "{value}": {LABEL_VALUE_MESSAGE}'))
    return problems


def check_type(resource: Resource, body: Json) -> None:
    """kind/apiVersion: missing is a decoding error (400), a mismatch with the path is 422 here."""
    for field in ("apiVersion", "kind"):
        if not body.get(field):
            raise bad_request(f"Object '{field[0].upper() + field[1:]}' is missing in '{json.dumps(body)}'")
    if body["kind"] != resource.kind or body["apiVersion"] != resource.api_version:
        name = str((body.get("metadata") or {}).get("name") or "")
        raise invalid(
            resource,
            name,
            [
                (
                    "kind",
                    f'Invalid value: "{body["apiVersion"]}, Kind={body["kind"]}": must be '
                    f'"{resource.api_version}, Kind={resource.kind}"',
                )
            ],
        )


def normalise_secret(obj: Json) -> None:
    """Secret `data` must be base64 (a decoding error otherwise); `stringData` is folded into it."""
    data = obj.get("data") or {}
    for key, value in data.items():
        try:
            base64.b64decode(str(value), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise bad_request(
                f'Secret in version "v1" cannot be handled as a Secret: illegal base64 data in key "{key}": {exc}'
            ) from exc
    string_data = obj.pop("stringData", None) or {}
    for key, value in string_data.items():
        data[key] = base64.b64encode(str(value).encode()).decode()
    if data:
        obj["data"] = data
    obj.setdefault("type", "Opaque")


# --- selectors ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # = != in notin exists !exists
    values: tuple[str, ...]

    def matches(self, labels: dict[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.op == "exists":
            return present
        if self.op == "!exists":
            return not present
        if self.op in ("=", "in"):
            return present and value in self.values
        return not present or value not in self.values  # != and notin match a missing label


SET_TERM = re.compile(r"^\s*([^\s!=(),]+)\s+(in|notin)\s*\(([^()]*)\)\s*$")
EQ_TERM = re.compile(r"^\s*([^\s!=(),]+)\s*(==|!=|=)\s*([^\s!=(),]*)\s*$")
EXISTS_TERM = re.compile(r"^\s*(!?)\s*([^\s!=(),]+)\s*$")


def parse_label_selector(text: str | None) -> list[Requirement]:
    if not text or not text.strip():
        return []
    terms, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            terms.append(text[start:i])
            start = i + 1
    terms.append(text[start:])
    requirements = []
    for term in terms:
        if m := SET_TERM.match(term):
            values = tuple(v.strip() for v in m.group(3).split(",") if v.strip())
            requirements.append(Requirement(m.group(1), m.group(2), values))
        elif m := EQ_TERM.match(term):
            op = "!=" if m.group(2) == "!=" else "="
            requirements.append(Requirement(m.group(1), op, (m.group(3),)))
        elif m := EXISTS_TERM.match(term):
            requirements.append(Requirement(m.group(2), "!exists" if m.group(1) else "exists", ()))
        else:
            raise bad_request(f"unable to parse requirement: found '{term.strip()}' in selector '{text}'")
    return requirements


FIELD_PATHS = {"metadata.name", "metadata.namespace", "status.phase", "spec.nodeName"}


def parse_field_selector(text: str | None) -> list[tuple[str, bool, str]]:
    """[(path, equal?, value)]."""
    if not text or not text.strip():
        return []
    result = []
    for term in text.split(","):
        m = EQ_TERM.match(term)
        if not m:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{term}'")
        if m.group(1) not in FIELD_PATHS:
            raise bad_request(f"field label not supported: {m.group(1)}")
        result.append((m.group(1), m.group(2) != "!=", m.group(3)))
    return result


@dataclass(frozen=True)
class Selector:
    labels: list[Requirement]
    fields: list[tuple[str, bool, str]]

    @classmethod
    def parse(cls, label_selector: str | None, field_selector: str | None = None) -> Selector:
        return cls(parse_label_selector(label_selector), parse_field_selector(field_selector))

    def matches(self, obj: Json) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        if not all(r.matches(labels) for r in self.labels):
            return False
        for path, equal, value in self.fields:
            current: Any = obj
            for part in path.split("."):
                current = current.get(part) if isinstance(current, dict) else None
            if (str(current or "") == value) != equal:
                return False
        return True


# --- merge patch -------------------------------------------------------------------------------------------


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def deep_merge(target: Json, extra: Json) -> Json:
    result = dict(target)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = deep_merge(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def without_meta(obj: Json) -> Json:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


# --- the server --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    rv: int
    plural: str
    namespace: str
    type: str
    obj: Json
    old: Json | None


@dataclass
class Failure:
    verb: str
    plural: str
    code: int
    reason: str
    message: str
    name: str | None
    times: int | None


@dataclass
class Log:
    lines: list[tuple[str, str]]
    ended: bool = False


class ApiServerStandIn:
    """`with ApiServerStandIn() as api:` - see the module docstring."""

    def __init__(self) -> None:
        self.token = secrets.token_urlsafe(24)
        self.compacted_before = 0
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._objects: dict[tuple[str, str, str], Json] = {}
        self._rv = 100  # a resourceVersion is never "0", which asks a watch for the current state
        self._history: list[Event] = []
        self._logs: dict[tuple[str, str, str, bool], Log] = {}
        self._failures: list[Failure] = []
        self._requests: list[Recorded] = []
        self._on_create: dict[str, list[Callback]] = {}
        self._on_delete: dict[str, list[Callback]] = {}
        self._errors: list[BaseException] = []
        self._stopping = threading.Event()
        self._streams = 0
        self._connections: set[socket.socket] = set()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.standin = self
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="apiserver-standin", daemon=True
        )
        self._thread.start()

    def __enter__(self) -> ApiServerStandIn:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close(raise_errors=exc is None)

    def close(self, raise_errors: bool = True) -> None:
        """Ends every open stream (cleanly where it can), then stops the server and drops its connections."""
        if not self._stopping.is_set():
            self._stopping.set()
            with self._changed:
                self._changed.notify_all()
                self._changed.wait_for(lambda: self._streams == 0, timeout=2)
            self._server.shutdown()
            with self._lock:
                connections = list(self._connections)
            for conn in connections:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
            self._server.server_close()
            self._thread.join(timeout=5)
        if raise_errors and self._errors:
            raise RuntimeError("the stand-in failed while answering a request") from self._errors[0]

    def kubeconfig(self, path: Path, namespace: str = "trackside-jobs") -> Path:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "standin", "cluster": {"server": self.url}}],
            "users": [{"name": "standin", "user": {"token": self.token}}],
            "contexts": [
                {
                    "name": "standin",
                    "context": {"cluster": "standin", "user": "standin", "namespace": namespace},
                }
            ],
            "current-context": "standin",
            "preferences": {},
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    # --- recording and failure injection ---

    @property
    def requests(self) -> list[Recorded]:
        with self._lock:
            return list(self._requests)

    def requests_for(self, method: str, plural: str, name: str | None = None) -> list[Recorded]:
        """`method` is matched against the verb: GET, POST, PUT, PATCH, DELETE, WATCH or LOG."""
        return [
            r
            for r in self.requests
            if r.verb == method.upper() and r.plural == plural and (name is None or r.name == name)
        ]

    def fail(
        self,
        method: str,
        plural: str,
        code: int,
        reason: str,
        message: str,
        name: str | None = None,
        times: int | None = None,
    ) -> None:
        with self._lock:
            self._failures.append(Failure(method.upper(), plural, code, reason, message, name, times))

    def _injected(self, verb: str, plural: str, name: str | None) -> ApiError | None:
        with self._lock:
            for failure in self._failures:
                if failure.verb == verb and failure.plural == plural and failure.name in (None, name):
                    if failure.times is not None:
                        failure.times -= 1
                        if failure.times <= 0:
                            self._failures.remove(failure)
                    details = details_for(RESOURCES.get(plural), name)
                    return ApiError(failure.code, failure.reason, failure.message, details)
        return None

    # --- store access for the tests (they play controllers and kubelets) ---

    def get(self, plural: str, ns: str, name: str) -> Json | None:
        with self._lock:
            obj = self._objects.get((plural, ns, name))
            return copy.deepcopy(obj) if obj is not None else None

    def objects(self, plural: str, ns: str, label_selector: str | None = None) -> list[Json]:
        return self._list(plural, ns, Selector.parse(label_selector))

    def put_object(self, plural: str, obj: Json) -> Json:
        """Create or replace as a controller would (no validation); fires on_create for a new object."""
        resource = RESOURCES[plural]
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        ns, name = meta.get("namespace"), meta.get("name")
        if not ns or not name:
            raise ValueError("put_object needs metadata.namespace and metadata.name")
        obj.setdefault("kind", resource.kind)
        obj.setdefault("apiVersion", resource.api_version)
        with self._lock:
            old = self._objects.get((plural, ns, name))
            if old is None:
                meta.setdefault("uid", str(uuid.uuid4()))
                meta.setdefault("creationTimestamp", now_rfc3339())
                meta.setdefault("generation", 1)
            else:
                for key in ("uid", "creationTimestamp", "generation"):
                    meta.setdefault(key, old["metadata"].get(key))
            stored = self._store(resource, obj, old)
        if old is None:
            self._run_callbacks(self._on_create, plural, stored)
        return stored

    def update_status(self, plural: str, ns: str, name: str, status: Json) -> Json:
        with self._lock:
            old = self._objects.get((plural, ns, name))
            if old is None:
                raise KeyError(f"{plural} {ns}/{name} does not exist")
            obj = copy.deepcopy(old)
            obj["status"] = deep_merge(obj.get("status") or {}, status)
            return self._store(RESOURCES[plural], obj, old)

    def delete_object(self, plural: str, ns: str, name: str) -> Json | None:
        """Removes the object alone (no garbage collection); fires on_delete. None when it was not there."""
        with self._lock:
            gone = self._remove(plural, ns, name)
        if gone is not None:
            self._run_callbacks(self._on_delete, plural, gone)
        return gone

    def on_create(self, plural: str, callback: Callback) -> None:
        """callback(api, obj) after an object is created (through the API or put_object), before the API
        answers; it runs outside the store's lock and may use the store methods, not HTTP calls."""
        with self._lock:
            self._on_create.setdefault(plural, []).append(callback)

    def on_delete(self, plural: str, callback: Callback) -> None:
        with self._lock:
            self._on_delete.setdefault(plural, []).append(callback)

    def append_log(self, ns: str, pod: str, container: str, *lines: str, previous: bool = False) -> None:
        stamp = now_rfc3339_nano()
        with self._changed:
            log = self._logs.setdefault((ns, pod, container, previous), Log([]))
            for text in lines:
                log.lines.extend((stamp, line) for line in (text.splitlines() or [""]))
            self._changed.notify_all()

    def end_log(self, ns: str, pod: str, container: str) -> None:
        """The container has ended: followers get the rest of its log and then the end of the stream."""
        with self._changed:
            self._logs.setdefault((ns, pod, container, False), Log([])).ended = True
            self._changed.notify_all()

    # --- internals: the store ---

    def _list(self, plural: str, ns: str, selector: Selector) -> list[Json]:
        with self._lock:
            found = [
                copy.deepcopy(obj)
                for (p, n, _), obj in self._objects.items()
                if p == plural and n == ns and selector.matches(obj)
            ]
        return sorted(found, key=lambda o: o["metadata"]["name"])

    def _store(self, resource: Resource, obj: Json, old: Json | None) -> Json:
        """Stores obj with the next resourceVersion and records the event; under the lock."""
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        meta = obj["metadata"]
        self._objects[(resource.plural, meta["namespace"], meta["name"])] = obj
        event_type = "ADDED" if old is None else "MODIFIED"
        self._history.append(
            Event(self._rv, resource.plural, meta["namespace"], event_type, copy.deepcopy(obj), old)
        )
        self._changed.notify_all()
        return copy.deepcopy(obj)

    def _remove(self, plural: str, ns: str, name: str) -> Json | None:
        """Under the lock."""
        old = self._objects.pop((plural, ns, name), None)
        if old is None:
            return None
        self._rv += 1
        gone = copy.deepcopy(old)
        gone["metadata"]["resourceVersion"] = str(self._rv)
        self._history.append(Event(self._rv, plural, ns, "DELETED", gone, old))
        if plural == "pods":
            for key in [k for k in self._logs if k[0] == ns and k[1] == name]:
                del self._logs[key]
        self._changed.notify_all()
        return copy.deepcopy(gone)

    def _run_callbacks(self, table: dict[str, list[Callback]], plural: str, obj: Json) -> None:
        with self._lock:
            callbacks = list(table.get(plural, []))
        for callback in callbacks:
            callback(self, copy.deepcopy(obj))

    # --- internals: API verbs ---

    def create(self, resource: Resource, ns: str, body: Json) -> Json:
        check_type(resource, body)
        obj = copy.deepcopy(body)
        meta = obj.get("metadata")
        if not isinstance(meta, dict):
            meta = obj["metadata"] = {}
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + secrets.token_hex(3)[:5]
        name = str(meta.get("name") or "")
        if not name:
            raise invalid(
                resource, "", [("metadata.name", "Required value: name or generateName is required")]
            )
        if meta.get("namespace") not in (None, "", ns):
            raise invalid(
                resource,
                name,
                [("metadata.namespace", "Invalid value: does not match the namespace of the request")],
            )
        problems = name_problems(resource, name) + label_problems(meta.get("labels"))
        if problems:
            raise invalid(resource, name, problems)
        if resource.plural == "secrets":
            normalise_secret(obj)
        if resource.has_status:
            obj.pop("status", None)
        meta.update(namespace=ns, uid=str(uuid.uuid4()), creationTimestamp=now_rfc3339(), generation=1)
        for key in ("resourceVersion", "deletionTimestamp"):
            meta.pop(key, None)
        with self._lock:
            if (resource.plural, ns, name) in self._objects:
                raise ApiError(
                    409,
                    "AlreadyExists",
                    f'{resource.qualified} "{name}" already exists',
                    details_for(resource, name),
                )
            stored = self._store(resource, obj, None)
        self._run_callbacks(self._on_create, resource.plural, stored)
        return stored

    def _rewrite(self, resource: Resource, ns: str, name: str, make: Callable[[Json], Json]) -> Json:
        """Shared by replace and patch: `make(old)` gives the new object, which is then checked and stored."""
        with self._lock:
            old = self._objects.get((resource.plural, ns, name))
            if old is None:
                raise not_found(resource, name)
            obj = make(copy.deepcopy(old))
            check_type(resource, obj)
            meta = obj.get("metadata")
            if not isinstance(meta, dict):
                meta = obj["metadata"] = {}
            if meta.get("namespace") not in (None, "", ns):
                raise invalid(
                    resource,
                    name,
                    [("metadata.namespace", "Invalid value: does not match the namespace of the request")],
                )
            if meta.get("name") not in (None, "", name):
                raise bad_request(
                    f"the name of the object ({meta.get('name')}) does not match the name on the URL ({name})"
                )
            wanted_rv = meta.get("resourceVersion")
            if wanted_rv and wanted_rv != old["metadata"]["resourceVersion"]:
                raise ApiError(
                    409,
                    "Conflict",
                    f'Operation cannot be fulfilled on {resource.qualified} "{name}": the object has been '
                    "modified; please apply your changes to the latest version and try again",
                    details_for(resource, name),
                )
            problems = label_problems(meta.get("labels"))
            if problems:
                raise invalid(resource, name, problems)
            if resource.plural == "secrets":
                normalise_secret(obj)
            if resource.has_status:
                obj.pop("status", None)
                if "status" in old:
                    obj["status"] = copy.deepcopy(old["status"])
            old_meta = old["metadata"]
            meta.update(name=name, namespace=ns, uid=old_meta["uid"])
            meta["creationTimestamp"] = old_meta["creationTimestamp"]
            generation = int(old_meta.get("generation", 1))
            meta["generation"] = generation + (without_meta(obj) != without_meta(old))
            if "deletionTimestamp" in old_meta:
                meta["deletionTimestamp"] = old_meta["deletionTimestamp"]
            return self._store(resource, obj, old)

    def replace(self, resource: Resource, ns: str, name: str, body: Json) -> Json:
        return self._rewrite(resource, ns, name, lambda _old: copy.deepcopy(body))

    def patch(self, resource: Resource, ns: str, name: str, patch: Json) -> Json:
        return self._rewrite(resource, ns, name, lambda old: merge_patch(old, patch))

    def delete(self, resource: Resource, ns: str, name: str, options: Json, policy: str | None) -> Json:
        preconditions = options.get("preconditions") or {}
        removed: list[tuple[str, Json]] = []
        with self._lock:
            current = self._objects.get((resource.plural, ns, name))
            if current is None:
                raise not_found(resource, name)
            for field, key in (("uid", "UID"), ("resourceVersion", "ResourceVersion")):
                wanted = preconditions.get(field)
                if wanted and wanted != current["metadata"].get(field):
                    raise ApiError(
                        409,
                        "Conflict",
                        f'Operation cannot be fulfilled on {resource.qualified} "{name}": Precondition failed: '
                        f"{key} in precondition: {wanted}, {key} in object meta: {current['metadata'].get(field)}",
                        details_for(resource, name),
                    )
            gone = self._remove(resource.plural, ns, name)
            assert gone is not None
            removed.append((resource.plural, gone))
            if policy in ("Background", "Foreground"):
                for pod in self._dependent_pods(resource, gone):
                    pod_gone = self._remove("pods", ns, pod["metadata"]["name"])
                    if pod_gone is not None:
                        removed.append(("pods", pod_gone))
        for plural, obj in removed:
            self._run_callbacks(self._on_delete, plural, obj)
        if resource.returns_deleted_object:
            return gone
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": {**details_for(resource, name), "uid": gone["metadata"]["uid"]},
        }

    def _dependent_pods(self, resource: Resource, owner: Json) -> list[Json]:
        ns, spec = owner["metadata"]["namespace"], owner.get("spec") or {}
        selectors: list[dict[str, str]] = []
        if resource.plural in ("deployments", "jobs"):
            selectors.append(((spec.get("selector") or {}).get("matchLabels")) or {})
        if resource.plural == "jobs":
            selectors.append(((spec.get("template") or {}).get("metadata") or {}).get("labels") or {})
            selectors.append({"job-name": owner["metadata"]["name"]})
            selectors.append({"batch.kubernetes.io/job-name": owner["metadata"]["name"]})
        pods = []
        for (plural, pod_ns, _), pod in self._objects.items():
            labels = pod["metadata"].get("labels") or {}
            if (
                plural == "pods"
                and pod_ns == ns
                and any(s and all(labels.get(k) == v for k, v in s.items()) for s in selectors)
            ):
                pods.append(pod)
        return pods

    def list_body(self, resource: Resource, ns: str, selector: Selector) -> Json:
        with self._lock:
            items, rv = self._list(resource.plural, ns, selector), self._rv
        return {
            "kind": f"{resource.kind}List",
            "apiVersion": resource.api_version,
            "metadata": {"resourceVersion": str(rv)},
            "items": items,
        }

    def watch_events(
        self, resource: Resource, ns: str, selector: Selector, since: str | None, timeout_s: float
    ) -> Iterator[Json]:
        """The events of a watch, as they happen, until the timeout or the server stops."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            compacted_before = self.compacted_before
            if since and since != "0" and int(since) < compacted_before:
                initial, position = None, 0
            elif not since or since == "0":
                initial = [{"type": "ADDED", "object": o} for o in self._list(resource.plural, ns, selector)]
                position = len(self._history)
            else:
                initial = []
                position = next(
                    (i for i, e in enumerate(self._history) if e.rv > int(since)), len(self._history)
                )
        if initial is None:
            expired = ApiError(410, "Expired", f"too old resource version: {since} ({compacted_before})")
            yield {"type": "ERROR", "object": expired.status()}
            return
        yield from initial
        while True:
            with self._changed:
                while position >= len(self._history):
                    left = deadline - time.monotonic()
                    if left <= 0 or self._stopping.is_set():
                        return
                    self._changed.wait(min(left, STREAM_WAIT_S))
                events = self._history[position:]
                position = len(self._history)
            for event in events:
                if event.plural != resource.plural or event.namespace != ns:
                    continue
                now = selector.matches(event.obj)
                before = event.old is not None and event.type != "ADDED" and selector.matches(event.old)
                if event.type == "DELETED":
                    if before:
                        yield {"type": "DELETED", "object": copy.deepcopy(event.obj)}
                elif now:
                    yield {"type": "MODIFIED" if before else "ADDED", "object": copy.deepcopy(event.obj)}
                elif before and event.old is not None:
                    # it left the selector: Kubernetes sends its previous state, at the event's version
                    previous = copy.deepcopy(event.old)
                    previous["metadata"]["resourceVersion"] = str(event.rv)
                    yield {"type": "DELETED", "object": previous}

    def log_lines(self, ns: str, pod_name: str, query: dict[str, str]) -> tuple[Iterator[str], bool]:
        """The log's text lines (each ending in a newline) and whether it is followed."""
        follow = query.get("follow", "").lower() in ("true", "1")
        previous = query.get("previous", "").lower() in ("true", "1")
        timestamps = query.get("timestamps", "").lower() in ("true", "1")
        tail = int(query["tailLines"]) if query.get("tailLines") else None
        with self._lock:
            pod = self._objects.get(("pods", ns, pod_name))
            if pod is None:
                raise not_found(RESOURCES["pods"], pod_name)
            spec = pod.get("spec") or {}
            names = [
                c.get("name") for c in (spec.get("containers") or []) + (spec.get("initContainers") or [])
            ]
            container = query.get("container")
            if not container:
                if len(names) != 1:
                    raise bad_request(
                        f"a container name must be specified for pod {pod_name}, choose one of: [{' '.join(names)}]"
                    )
                container = names[0]
            if container not in names:
                raise bad_request(f"container {container} is not valid for pod {pod_name}")
            key = (ns, pod_name, container, previous)
            if previous and key not in self._logs:
                raise bad_request(
                    f'previous terminated container "{container}" in pod "{pod_name}" not found'
                )
            uid = pod["metadata"]["uid"]
            log = self._logs.setdefault(key, Log([]))
            start = max(0, len(log.lines) - tail) if tail is not None else 0

        def render(line: tuple[str, str]) -> str:
            return f"{line[0]} {line[1]}\n" if timestamps else f"{line[1]}\n"

        def lines() -> Iterator[str]:
            position = start
            while True:
                with self._changed:
                    while True:
                        if self._logs.get(key) is not log:
                            return  # the pod was deleted
                        if position < len(log.lines):
                            break
                        current = self._objects.get(("pods", ns, pod_name))
                        if (
                            not follow
                            or previous
                            or log.ended
                            or self._stopping.is_set()
                            or current is None
                            or current["metadata"]["uid"] != uid
                        ):
                            return
                        self._changed.wait(STREAM_WAIT_S)
                    batch = log.lines[position:]
                    position = len(log.lines)
                for line in batch:
                    yield render(line)

        return lines(), follow

    # --- internals: HTTP ---

    def _connection_opened(self, conn: socket.socket) -> None:
        with self._lock:
            self._connections.add(conn)

    def _connection_closed(self, conn: socket.socket) -> None:
        with self._lock:
            self._connections.discard(conn)

    def _stream_started(self) -> None:
        with self._changed:
            self._streams += 1

    def _stream_ended(self) -> None:
        with self._changed:
            self._streams -= 1
            self._changed.notify_all()

    def _record(self, request: Recorded) -> None:
        with self._lock:
            self._requests.append(request)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    standin: ApiServerStandIn


CORE_PATH = re.compile(
    r"^/api/(?P<version>v1)/namespaces/(?P<ns>[^/]+)/(?P<plural>[^/]+)(?P<rest>(/[^/]+)*)$"
)
GROUP_PATH = re.compile(
    r"^/apis/(?P<group>[^/]+)/(?P<version>[^/]+)/namespaces/(?P<ns>[^/]+)/(?P<plural>[^/]+)(?P<rest>(/[^/]+)*)$"
)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        # headers and body go out in separate writes: without this, Nagle and delayed ACKs cost 40 ms a request
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.standin._connection_opened(self.connection)

    def finish(self) -> None:
        self.server.standin._connection_closed(self.connection)
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    # --- plumbing ---

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send_json(self, code: int, body: Json, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _stream(self, content_type: str, chunks: Iterator[str]) -> None:
        standin = self.server.standin
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        standin._stream_started()
        try:
            for text in chunks:
                data = text.encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            self.close_connection = True
        except Exception as exc:  # a bug here: the body is cut short, and close() raises it
            standin._errors.append(exc)
            self.close_connection = True
        finally:
            standin._stream_ended()
            if standin._stopping.is_set():
                self.close_connection = True

    def _handle(self) -> None:
        standin = self.server.standin
        split = urlsplit(self.path)
        path = split.path
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        raw = self._read_body()
        content_type = self.headers.get("Content-Type")
        body: Any = None
        body_error = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError as exc:
                body = raw.decode(errors="replace")
                body_error = f"couldn't get version/kind; json parse error: {exc}"

        resource, ns, name, subresource = None, None, None, None
        m = CORE_PATH.match(path) or GROUP_PATH.match(path)
        if m:
            found = RESOURCES.get(m["plural"])
            group = m.groupdict().get("group") or ""
            if found and found.group == group and found.version == m["version"]:
                resource, ns = found, unquote(m["ns"])
                parts = [unquote(p) for p in m["rest"].split("/")[1:]]
                name = parts[0] if parts else None
                subresource = "/".join(parts[1:]) or None
        is_watch = query.get("watch", "").lower() in ("true", "1")
        verb = self.command
        if resource and subresource == "log" and resource.plural == "pods" and self.command == "GET":
            verb = "LOG"
        elif resource and name is None and self.command == "GET" and is_watch:
            verb = "WATCH"
        recorded_name = name
        if self.command == "POST" and name is None and isinstance(body, dict):
            recorded_name = (body.get("metadata") or {}).get("name") or None
        standin._record(
            Recorded(
                self.command,
                path,
                query,
                content_type,
                body,
                verb=verb,
                plural=resource.plural if resource else None,
                namespace=ns,
                name=recorded_name,
            )
        )
        try:
            self._authorise()
            if resource is None or ns is None:
                if path == "/version" and self.command == "GET":
                    self._send_json(200, {"major": "1", "minor": "33", "gitVersion": "v1.33.0"})
                    return
                raise ApiError(404, "NotFound", "the server could not find the requested resource", {})
            if subresource and verb != "LOG":
                raise ApiError(404, "NotFound", "the server could not find the requested resource", {})
            if failure := standin._injected(verb, resource.plural, recorded_name):
                raise failure
            if body_error:
                raise bad_request(body_error)
            self._dispatch(resource, ns, name, verb, query, content_type, body)
        except ApiError as exc:
            self._send_json(exc.code, exc.status())
        except Exception as exc:  # a failing callback, or a bug here: a 500 now, raised again by close()
            standin._errors.append(exc)
            self._send_json(500, ApiError(500, "InternalError", f"stand-in failed: {exc!r}").status())

    def _authorise(self) -> None:
        header = self.headers.get("Authorization") or ""
        wanted = f"Bearer {self.server.standin.token}"
        if not hmac.compare_digest(header.encode(), wanted.encode()):
            raise ApiError(401, "Unauthorized", "Unauthorized")

    def _dispatch(
        self,
        resource: Resource,
        ns: str,
        name: str | None,
        verb: str,
        query: dict[str, str],
        content_type: str | None,
        body: Any,
    ) -> None:
        standin = self.server.standin
        if verb == "LOG":
            assert name is not None
            try:
                lines, follow = standin.log_lines(ns, name, query)
            except ValueError as exc:
                raise bad_request(str(exc)) from exc
            if follow:
                self._stream("text/plain", lines)
            else:
                data = "".join(lines).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            return
        if verb in ("GET", "WATCH") and name is None:
            selector = Selector.parse(query.get("labelSelector"), query.get("fieldSelector"))
            if verb == "WATCH":
                since = query.get("resourceVersion") or None
                if since is not None and not since.isdigit():
                    raise bad_request(f'resourceVersion: Invalid value: "{since}": must be an integer')
                timeout_s = float(query.get("timeoutSeconds") or 30)
                events = standin.watch_events(resource, ns, selector, since, timeout_s)
                self._stream("application/json", (json.dumps(e) + "\n" for e in events))
            else:
                self._send_json(200, standin.list_body(resource, ns, selector))
            return
        if name is None:
            if self.command != "POST":
                raise ApiError(
                    405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
                )
            self._send_json(201, standin.create(resource, ns, self._object_body(body)))
            return
        if self.command == "GET":
            obj = standin.get(resource.plural, ns, name)
            if obj is None:
                raise not_found(resource, name)
            self._send_json(200, obj)
        elif self.command == "PUT":
            self._send_json(200, standin.replace(resource, ns, name, self._object_body(body)))
        elif self.command == "PATCH":
            media = (content_type or "").split(";")[0].strip().lower()
            if media not in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
                raise ApiError(
                    415,
                    "UnsupportedMediaType",
                    f"the body of the request was in an unknown format - accepted media types include: "
                    f"application/merge-patch+json, application/strategic-merge-patch+json (got {media or 'none'})",
                )
            self._send_json(200, standin.patch(resource, ns, name, self._object_body(body)))
        elif self.command == "DELETE":
            options = body if isinstance(body, dict) else {}
            policy = options.get("propagationPolicy") or query.get("propagationPolicy")
            if policy is not None and policy not in PROPAGATION_POLICIES:
                raise bad_request(
                    f'propagationPolicy: Unsupported value: "{policy}": supported values: '
                    '"Foreground", "Background", "Orphan"'
                )
            headers = {}
            if policy is None:
                policy = "Orphan" if resource.plural == "jobs" else "Background"
                if resource.plural == "jobs":
                    headers["Warning"] = JOB_ORPHAN_WARNING
            self._send_json(200, standin.delete(resource, ns, name, options, policy), headers)
        else:
            raise ApiError(
                405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
            )

    @staticmethod
    def _object_body(body: Any) -> Json:
        if not isinstance(body, dict):
            raise bad_request("the body of the request must be a JSON object")
        return body
