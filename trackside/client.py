"""A typed client of the lifecycle API (`/lifecycle/api/v1/...`) and of the gateway (`/pub`).

    client = LifecycleClient(Remote.parse("http://127.0.0.1:7200"), token)
    client.list_jobs()                               # typed helpers for the common calls
    client.request("POST", "/escs", json={...})     # anything else: one generic request method
    for event in client.deployment_events(deployment_id): ...   # Server-Sent Events

Every failure is a `RemoteError` (a `CommandFailed`, so the CLI ends with its exit code): the
remote cannot be reached → 1; 401/403 → 4; 404 → 3; 400/422 (invalid input) → 2; 409, 5xx and
anything else → 1. The message is the server's `error` field (and its field errors).
"""

from __future__ import annotations

import base64
import http.client
import json
import ssl
from collections.abc import Generator, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypedDict, cast
from urllib.parse import SplitResult, quote, unquote, urlencode, urlsplit

from trackside import __version__
from trackside.cli.exit_codes import CommandFailed, ExitCode
from trackside.user_config import GitCredentials, Remote

AUTH_HEADER = "X-Racetrack-Auth"
USER_AGENT = f"trackside-cli/{__version__}"
DEFAULT_TIMEOUT = 30.0
# streams send a comment at least every 15 s, so a minute of silence means the connection is gone
STREAM_READ_TIMEOUT = 60.0
UPLOAD_TIMEOUT = 300.0  # a deploy request may carry a 50 MiB build context


class RemoteError(CommandFailed):
    """A request that failed: `status` is the HTTP status (None when there was no answer)."""

    def __init__(
        self,
        message: str,
        exit_code: ExitCode = ExitCode.FAILED,
        status: int | None = None,
        error_type: str | None = None,
        body: Any = None,
        detail: str | None = None,
    ) -> None:
        super().__init__(message, exit_code)
        self.status = status
        self.error_type = error_type
        self.body = body
        self.detail = message if detail is None else detail  # the server's own words


def exit_code_for(status: int) -> ExitCode:
    if status in (401, 403):
        return ExitCode.AUTH
    if status == 404:
        return ExitCode.NOT_FOUND
    if status in (400, 422):
        return ExitCode.USAGE
    return ExitCode.FAILED


# ---- what the API answers (the fields the CLI relies on; the server may send more) -----------


class Job(TypedDict, total=False):
    name: str
    version: str
    status: str  # starting, running, error, lost, stopped
    error: str | None
    owner_email: str
    deployed_by: str | None
    infrastructure_target: str
    replicas: int
    create_time: float | None
    update_time: float | None
    last_call_time: float | None
    pub_url: str
    # one version (GET /job/{name}/{version}) only
    manifest: dict[str, Any]
    manifest_yaml: str
    deployment_id: str | None
    labels: dict[str, str]


class Phase(TypedDict, total=False):
    name: str
    started_at: str


class Deployment(TypedDict, total=False):
    id: str
    status: str  # in_progress, done, failed
    phase: str | None
    phases: list[Phase]
    error: str | None
    warnings: str | None
    job_name: str
    job_version: str
    deployed_by: str | None
    create_time: float | None
    update_time: float | None
    finish_time: float | None
    job: Job | None


class Identity(TypedDict):
    username: str
    subject: str
    is_admin: bool


class BuildLog(TypedDict):
    logs: str
    deployment_id: str | None


class PlatformInfo(TypedDict, total=False):
    lifecycle_version: str
    auth_required: bool
    external_pub_url: str | None
    infrastructure_targets: dict[str, str]


@dataclass(frozen=True)
class ServerEvent:
    """One Server-Sent Event: `event` is "message" for an unnamed one."""

    event: str
    data: str
    id: str | None = None

    def json(self) -> dict[str, Any]:
        try:
            value = json.loads(self.data)
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}


@dataclass(frozen=True)
class GatewayAnswer:
    status: int
    content_type: str
    content: bytes

    def data(self) -> Any:
        """The answer as JSON data when it is JSON, else as text."""
        if "json" in self.content_type:
            try:
                return json.loads(self.content)
            except ValueError:
                pass
        return self.content.decode("utf-8", "replace")


# ---- HTTP --------------------------------------------------------------------------------------
# The standard library's http.client rather than httpx: importing httpx (which imports its own
# CLI: click, rich, pygments) and making its TLS context took more than half of the 0.3 s that
# `trackside list` may take to start. A TLS context is made only for an https remote.


@dataclass(frozen=True)
class Response:
    status: int
    reason: str
    headers: dict[str, str]  # names in lower case
    content: bytes
    url: str

    @property
    def is_error(self) -> bool:
        return self.status >= 400

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.content)


class TransportError(Exception):
    """No answer came: `connecting` when the connection itself failed, `timed_out` when too slow."""

    def __init__(self, message: str, connecting: bool, timed_out: bool = False, tls: bool = False) -> None:
        super().__init__(message)
        self.connecting = connecting
        self.timed_out = timed_out
        self.tls = tls


class HttpSession:
    """HTTP/1.1 requests, one connection each (they are few, and a stream holds its own).

    Proxies come from the environment (HTTPS_PROXY, HTTP_PROXY, NO_PROXY) unless `use_proxies`
    is False (a lifecycle on loopback is never behind one)."""

    def __init__(self, headers: Mapping[str, str], timeout: float, use_proxies: bool) -> None:
        self.headers = dict(headers)
        self.timeout = timeout
        self.use_proxies = use_proxies
        self._tls: ssl.SSLContext | None = None

    def request(
        self,
        method: str,
        url: str,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Response:
        with self.open(method, url, body=body, headers=headers, timeout=timeout) as answer:
            try:
                content = answer.read()
            except (OSError, http.client.HTTPException) as e:
                raise _broken(url, e) from None
            return _response(answer, url, content)

    @contextmanager
    def open(
        self,
        method: str,
        url: str,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        read_timeout: float | None = None,
    ) -> Iterator[http.client.HTTPResponse]:
        """The answer, its body not read yet (for streams); the connection closes on exit."""
        parts = urlsplit(url)
        connection, target, extra = self._connection(parts, timeout or self.timeout)
        try:
            try:
                connection.connect()
            except OSError as e:
                raise TransportError(
                    _reason(e),
                    connecting=True,
                    timed_out=isinstance(e, TimeoutError),
                    tls=isinstance(e, ssl.SSLError),
                ) from None
            if read_timeout is not None and connection.sock is not None:
                connection.sock.settimeout(read_timeout)
            try:
                connection.request(
                    method, target, body=body, headers={**self.headers, **extra, **(headers or {})}
                )
                answer = connection.getresponse()
            except (OSError, http.client.HTTPException) as e:
                raise _broken(url, e) from None
            yield answer
        finally:
            connection.close()

    def _connection(
        self, parts: SplitResult, timeout: float
    ) -> tuple[http.client.HTTPConnection, str, dict[str, str]]:
        """A connection for `parts`, the request target to send on it and extra headers."""
        https = parts.scheme == "https"
        host, port = parts.hostname or "", parts.port or (443 if https else 80)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        proxy = self._proxy(parts.scheme, host)
        if proxy is None:
            if https:
                return (
                    http.client.HTTPSConnection(host, port, timeout=timeout, context=self._context()),
                    path,
                    {},
                )
            return http.client.HTTPConnection(host, port, timeout=timeout), path, {}
        authorization = {}
        if proxy.username:
            credentials = f"{unquote(proxy.username)}:{unquote(proxy.password or '')}".encode()
            authorization["Proxy-Authorization"] = "Basic " + base64.b64encode(credentials).decode("ascii")
        proxy_port = proxy.port or (443 if proxy.scheme == "https" else 80)
        if https:  # a tunnel through the proxy (CONNECT), TLS end to end
            tunnelled = http.client.HTTPSConnection(
                proxy.hostname or "", proxy_port, timeout=timeout, context=self._context()
            )
            tunnelled.set_tunnel(host, port, headers=authorization)
            return tunnelled, path, {}
        return (
            http.client.HTTPConnection(proxy.hostname or "", proxy_port, timeout=timeout),
            parts.geturl(),
            authorization,
        )

    def _proxy(self, scheme: str, host: str) -> SplitResult | None:
        if not self.use_proxies:
            return None
        from urllib.request import getproxies_environment, proxy_bypass

        proxy = getproxies_environment().get(scheme)
        if not proxy or proxy_bypass(host):  # NO_PROXY
            return None
        return urlsplit(proxy if "://" in proxy else f"http://{proxy}")

    def _context(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = ssl.create_default_context()  # the system's CAs (and $SSL_CERT_FILE)
        return self._tls


def _response(answer: http.client.HTTPResponse, url: str, content: bytes) -> Response:
    headers = {name.lower(): value for name, value in answer.getheaders()}
    return Response(answer.status, answer.reason, headers, content, url)


def _reason(error: BaseException) -> str:
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted: {error.verify_message or error}"
    if isinstance(error, TimeoutError):
        return "timed out"
    return str(error) or type(error).__name__


def _broken(url: str, error: BaseException) -> TransportError:
    return TransportError(_reason(error), connecting=False, timed_out=isinstance(error, TimeoutError))


def _segment(value: str) -> str:
    return quote(value, safe="")


class LifecycleClient:
    def __init__(self, remote: Remote, token: str | None = None, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.remote = remote
        self.token = token
        headers = {"User-Agent": USER_AGENT}
        if token:
            headers[AUTH_HEADER] = token
        self._http = HttpSession(headers, timeout, use_proxies=not remote.is_loopback)
        self._gateway: str | None = None

    def close(self) -> None:
        pass  # nothing is kept open between requests

    def __enter__(self) -> LifecycleClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- the generic part -----------------------------------------------------------------

    def url(self, path: str, params: Mapping[str, Any] | None = None) -> str:
        """The API URL of `path`; `params` as its query (None left out, booleans as true/false)."""
        url = self.remote.api + "/" + path.lstrip("/")
        query = [
            (name, ("true" if value else "false") if isinstance(value, bool) else str(value))
            for name, value in (params or {}).items()
            if value is not None
        ]
        return url + ("?" + urlencode(query) if query else "")

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> Any:
        """`method` `path` (relative to the API root) → the answer's JSON (None when empty)."""
        response = self.send(method, self.url(path, params), json=json, timeout=timeout)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            return response.text

    def send(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        timeout: float | None = None,
        what: str = "the lifecycle",
    ) -> Response:
        """`method` `url` (a whole URL); a RemoteError unless the answer is a success."""
        body, headers = _json_body(json)
        try:
            response = self._http.request(method, url, body=body, headers=headers, timeout=timeout)
        except TransportError as e:
            raise self._transport_error(e, what) from None
        if response.is_error:
            raise self._answer_error(response)
        return response

    def stream_events(
        self, path: str, params: Mapping[str, Any] | None = None, last_event_id: str | None = None
    ) -> Generator[ServerEvent, None, None]:
        """The Server-Sent Events at `path`, as they come; ends when the server ends the stream.
        Close the iterator (or break out of the loop) to stop listening."""
        headers = {"Accept": "text/event-stream"}
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        url = self.url(path, params)
        try:
            with self._http.open("GET", url, headers=headers, read_timeout=STREAM_READ_TIMEOUT) as answer:
                if answer.status >= 400:
                    raise self._answer_error(_response(answer, url, answer.read()))
                if answer.status == 204:
                    return
                yield from parse_events(_lines(answer, url))
        except TransportError as e:
            raise self._transport_error(e, "the lifecycle") from None

    # ---- errors ---------------------------------------------------------------------------

    def _transport_error(self, error: TransportError, what: str) -> RemoteError:
        where = self.remote.url if what == "the lifecycle" else self.gateway_url()
        if error.tls:
            return RemoteError(f"no secure connection to {what} at {where}: {error}")
        if error.connecting and not error.timed_out:
            return RemoteError(f"cannot reach {what} at {where} — is `trackside up` running? ({error})")
        if error.timed_out:
            return RemoteError(f"{what} at {where} did not answer in time ({error})")
        return RemoteError(f"talking to {what} at {where} failed: {error}")

    def _answer_error(self, response: Response) -> RemoteError:
        status = response.status
        body: Any = None
        try:
            body = response.json()
        except ValueError:
            body = None
        message, error_type = _error_text(body, response)
        detail = message
        if status == 401:
            if not self.token:
                message = (
                    f"not logged in to {self.remote.base}: run `trackside login TOKEN` "
                    f"(or set TRACKSIDE_TOKEN) ({message})"
                )
            else:
                message = f"{message} (remote {self.remote.base}; log in again with `trackside login`)"
        return RemoteError(message, exit_code_for(status), status, error_type, body, detail)

    # ---- platform and users ---------------------------------------------------------------

    def info(self) -> PlatformInfo:
        return cast(PlatformInfo, self.request("GET", "/info"))

    def whoami(self) -> Identity:
        """Who the token belongs to (GET /users/validate_user_auth); 401 → RemoteError(exit 4)."""
        return cast(Identity, self.request("GET", "/users/validate_user_auth"))

    def login(self, username: str, password: str) -> str:
        """A new token for `username` (POST /users/login)."""
        answer = self.request("POST", "/users/login", json={"username": username, "password": password})
        token = answer.get("token") if isinstance(answer, dict) else None
        if not isinstance(token, str) or not token:
            raise RemoteError(f"the lifecycle at {self.remote.base} answered the login without a token")
        return token

    # ---- jobs -----------------------------------------------------------------------------

    def list_jobs(self) -> list[Job]:
        return cast(list[Job], self.request("GET", "/job"))

    def job(self, name: str, version: str = "latest") -> Job:
        return cast(Job, self.request("GET", f"/job/{_segment(name)}/{_segment(version)}"))

    def delete_job(self, name: str, version: str) -> dict[str, Any]:
        return cast(dict[str, Any], self.request("DELETE", f"/job/{_segment(name)}/{_segment(version)}"))

    def job_logs(self, name: str, version: str = "latest", tail: int = 100) -> str:
        answer = self.request("GET", f"/job/{_segment(name)}/{_segment(version)}/logs", params={"tail": tail})
        return str(answer.get("logs", "")) if isinstance(answer, dict) else ""

    def follow_job_logs(
        self, name: str, version: str = "latest", tail: int = 100
    ) -> Generator[ServerEvent, None, None]:
        """The log as it is written (SSE): unnamed events are lines; `dropped`, then `end`."""
        return self.stream_events(
            f"/job/{_segment(name)}/{_segment(version)}/logs/stream", params={"tail": tail}
        )

    def build_logs(self, name: str, version: str = "latest", tail: int = 0) -> BuildLog:
        """The build log of the version's latest deployment (`latest`: of the job's latest one)."""
        answer = self.request(
            "GET", f"/job/{_segment(name)}/{_segment(version)}/build-logs", params={"tail": tail}
        )
        if not isinstance(answer, dict):
            return BuildLog(logs="", deployment_id=None)
        return BuildLog(logs=str(answer.get("logs") or ""), deployment_id=answer.get("deployment_id"))

    # ---- deployments ----------------------------------------------------------------------

    def deploy(
        self,
        manifest: Mapping[str, Any],
        *,
        git_credentials: GitCredentials | None = None,
        build_env: Mapping[str, str] | None = None,
        runtime_env: Mapping[str, str] | None = None,
        build_context: str | None = None,
        force: bool = False,
        build_flags: list[str] | None = None,
    ) -> str:
        """Start a deployment (POST /deploy); its id."""
        body: dict[str, Any] = {"manifest": dict(manifest), "force": force, "build_flags": build_flags or []}
        if git_credentials is not None:
            body["git_credentials"] = {
                "username": git_credentials.username,
                "password": git_credentials.password,
            }
        if build_env or runtime_env:
            body["secret_vars"] = {"build_env": dict(build_env or {}), "runtime_env": dict(runtime_env or {})}
        if build_context is not None:
            body["build_context"] = build_context
        answer = self.request("POST", "/deploy", json=body, timeout=UPLOAD_TIMEOUT)
        deployment_id = answer.get("id") if isinstance(answer, dict) else None
        if not isinstance(deployment_id, str):
            raise RemoteError(f"the lifecycle at {self.remote.base} accepted the deploy without an id")
        return deployment_id

    def deployment(self, deployment_id: str) -> Deployment:
        return cast(Deployment, self.request("GET", f"/deploy/{_segment(deployment_id)}"))

    def deployment_events(
        self, deployment_id: str, last_event_id: str | None = None
    ) -> Generator[ServerEvent, None, None]:
        """A deployment's progress (SSE): `phase`, `log`, `warning`, then `done` or `failed`."""
        return self.stream_events(f"/deploy/{_segment(deployment_id)}/events", last_event_id=last_event_id)

    # ---- the gateway ----------------------------------------------------------------------

    def gateway_url(self) -> str:
        """Where jobs are called: the lifecycle's `external_pub_url` (GET /info) when it is one
        this client can use, else `base/pub` (where `trackside up` serves it)."""
        if self._gateway is None:
            self._gateway = self._find_gateway()
        return self._gateway

    def _find_gateway(self) -> str:
        fallback = self.remote.base + "/pub"
        try:
            advertised = self.info().get("external_pub_url")
        except RemoteError:
            return fallback
        if not isinstance(advertised, str) or not advertised.startswith(("http://", "https://")):
            return fallback
        host = urlsplit(advertised).hostname or ""
        if host in ("0.0.0.0", "::"):  # an address the server listens on, not one to call
            return fallback
        if (host == "localhost" or host.startswith("127.") or host == "::1") and not self.remote.is_loopback:
            return fallback  # the server's own view of itself, not reachable from here
        return advertised.rstrip("/")

    def job_url(self, name: str, version: str, path: str = "") -> str:
        url = f"{self.gateway_url()}/job/{_segment(name)}/{_segment(version)}"
        return url + ("/" + path.lstrip("/") if path else "")

    def call_job(
        self,
        name: str,
        version: str,
        path: str,
        payload: Any = None,
        *,
        method: str = "POST",
        timeout: float | None = None,
    ) -> GatewayAnswer:
        """`method` `path` of the job through the gateway (`payload` as JSON); errors as for the
        lifecycle."""
        url = self.job_url(name, version, path)
        body = payload if method not in ("GET", "HEAD") else None
        response = self.send(method, url, json=body, timeout=timeout, what="the gateway")
        return GatewayAnswer(response.status, response.headers.get("content-type", ""), response.content)


def _json_body(data: Any) -> tuple[bytes | None, dict[str, str]]:
    if data is None:
        return None, {}
    return json.dumps(data, ensure_ascii=False).encode("utf-8"), {"Content-Type": "application/json"}


def _lines(answer: http.client.HTTPResponse, url: str) -> Iterator[str]:
    while True:
        try:
            raw = answer.readline()
        except (OSError, http.client.HTTPException) as e:
            raise _broken(url, e) from None
        if not raw:
            return
        yield raw.decode("utf-8", "replace").rstrip("\r\n")


def _error_text(body: Any, response: Response) -> tuple[str, str | None]:
    """The server's `error` (with the field errors it did not mention), else the status line."""
    status = response.status
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        message: str = body["error"]
        errors = body.get("errors")
        if isinstance(errors, list):
            extra = [
                f"{e.get('field')}: {e.get('message')}"
                for e in errors
                if isinstance(e, dict) and str(e.get("message")) not in message
            ]
            if extra:
                message = "\n".join([message, *(f"  - {line}" for line in extra)])
        error_type = body.get("type")
        return message, error_type if isinstance(error_type, str) else None
    text = response.text.strip()
    detail = f": {text[:300]}" if text and "html" not in response.headers.get("content-type", "") else ""
    return f"HTTP {status} {response.reason} from {response.url.partition('?')[0]}{detail}", None


def parse_events(lines: Iterator[str]) -> Iterator[ServerEvent]:
    """Server-Sent Events from the lines of a `text/event-stream` (comments are skipped)."""
    event, event_id = "", None
    buffer: list[str] = []
    for line in lines:
        if not line:
            if buffer:
                yield ServerEvent(event or "message", "\n".join(buffer), event_id)
            event, buffer = "", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            buffer.append(value)
        elif name == "event":
            event = value
        elif name == "id":
            event_id = value
    if buffer:
        yield ServerEvent(event or "message", "\n".join(buffer), event_id)
