"""Real git remotes for tests: local repositories, file:// URLs and a smart-HTTPS server.

`GitHttpsServer` serves every repository under a directory through `git http-backend` (CGI)
behind a Python `http.server` over TLS, with HTTP Basic auth. Its certificate is signed by a
throwaway CA made for the server (`ca_file`, to be given to git as `GIT_SSL_CAINFO`), for
`IP:127.0.0.1` and `DNS:localhost`.

Fixtures: `git_https_server` (one server per session) and `file_git_repo` (a fresh repository
and its file:// URL per test). Register the module as a plugin in the root conftest
(`pytest_plugins = ("tests.gitservers",)`), or bring a fixture into a test module by name
(`git_https_server = gitservers.git_https_server`).
"""

from __future__ import annotations

import base64
import datetime
import hmac
import http.server
import ipaddress
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Commits made by the helpers are reproducible and do not depend on the user's git config.
_GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_AUTHOR_NAME": "Trackside Tests",
    "GIT_AUTHOR_EMAIL": "tests@trackside.invalid",
    "GIT_COMMITTER_NAME": "Trackside Tests",
    "GIT_COMMITTER_EMAIL": "tests@trackside.invalid",
    "GIT_TERMINAL_PROMPT": "0",
    "LC_ALL": "C",
}


# ---------------------------------------------------------------------------------------------
# Repositories
# ---------------------------------------------------------------------------------------------


def git(repo: Path, *args: str) -> str:
    """Run `git -C repo ARGS` with an isolated config; return its stdout (stripped)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")} | _GIT_ENV
    done = subprocess.run(
        ["git", "-C", str(repo), *args], env=env, capture_output=True, text=True, timeout=30, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed in {repo}:\n{done.stdout}{done.stderr}")
    return done.stdout.strip()


def _write_files(repo: Path, files: Mapping[str, str | bytes]) -> None:
    for rel, content in files.items():
        path = repo / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)


def make_repo(path: Path, files: Mapping[str, str | bytes], branch: str = "master") -> Path:
    """Create a (non-bare) git repository at `path` with one commit of `files` on `branch`."""
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "--quiet", f"--initial-branch={branch}")
    commit_files(path, files, "initial commit")
    return path


def commit_files(repo: Path, files: Mapping[str, str | bytes], message: str = "update") -> str:
    """Write `files` (relative path -> content) on the current branch, commit them; return the SHA."""
    _write_files(repo, files)
    git(repo, "add", "--all")
    git(repo, "commit", "--quiet", "--allow-empty", "-m", message)
    return head_commit(repo)


def create_branch(repo: Path, name: str, files: Mapping[str, str | bytes] | None = None) -> str:
    """Create `name` from the current commit (with one more commit of `files` if given), switch
    back to the branch that was current; return the new branch's head SHA."""
    previous = git(repo, "symbolic-ref", "--short", "HEAD")
    git(repo, "checkout", "--quiet", "-b", name)
    sha = commit_files(repo, files, f"on {name}") if files else head_commit(repo)
    git(repo, "checkout", "--quiet", previous)
    return sha


def create_tag(repo: Path, name: str) -> str:
    """Tag the current commit; return its SHA."""
    git(repo, "tag", name)
    return head_commit(repo)


def head_commit(repo: Path, ref: str = "HEAD") -> str:
    return git(repo, "rev-parse", ref)


def file_url(repo: Path) -> str:
    return repo.resolve().as_uri()


# ---------------------------------------------------------------------------------------------
# TLS material
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TlsFiles:
    ca_file: Path  # the CA certificate (PEM): what clients trust
    cert_file: Path  # the server certificate (PEM), signed by the CA
    key_file: Path  # the server's private key (PEM)


def make_tls_files(directory: Path) -> TlsFiles:
    """A throwaway CA and a server certificate for 127.0.0.1 / localhost (EC P-256, 1 day)."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    validity = (now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=1))

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Trackside test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(validity[0])
        .not_valid_after(validity[1])
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(validity[0])
        .not_valid_after(validity[1])
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )

    files = TlsFiles(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    files.ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    files.key_file.chmod(0o600)
    return files


# ---------------------------------------------------------------------------------------------
# Smart HTTPS server
# ---------------------------------------------------------------------------------------------


@dataclass
class RequestRecord:
    method: str
    path: str  # path and query as requested
    user: str | None  # the authenticated user, None when the request was refused with 401
    status: int


@dataclass
class HeldRequests:
    """Authenticated requests wait at the door until `release()`; `arrived` is set by the first."""

    arrived: threading.Event = field(default_factory=threading.Event)
    _gate: threading.Event = field(default_factory=threading.Event)

    def release(self) -> None:
        self._gate.set()


class _TlsHttpServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    git_server: GitHttpsServer

    def finish_request(self, request: Any, client_address: Any) -> None:
        # The TLS handshake runs here, in the request's thread: a client that connects and stays
        # silent (or is not speaking TLS) cannot block the accept loop.
        request.settimeout(30)
        try:
            tls = self.git_server.ssl_context.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError):
            return
        try:
            _GitHandler(tls, client_address, self)
        except (OSError, ssl.SSLError):
            pass
        finally:
            with suppress(OSError):
                tls.close()


class _GitHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # git needs HTTP/1.1 (keep-alive, and a 401 with Content-Length: 0)
    server: _TlsHttpServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read `requests` instead
        pass

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _serve(self) -> None:
        owner = self.server.git_server
        user = owner._authenticate(self.headers.get("Authorization"))
        body = self._read_body()
        if user is None:
            owner._record(RequestRecord(self.command, self.path, None, 401))
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="trackside-test-git"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        held = owner._held
        if held is not None:
            held.arrived.set()
            held._gate.wait(60)
        status, headers, payload = owner._run_backend(self, user, body)
        owner._record(RequestRecord(self.command, self.path, user, status))
        self.send_response(status)
        for name, value in headers:
            if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""


class GitHttpsServer:
    """Smart-HTTP git over TLS on a free loopback port, serving every repository under `root`.

    `url_for("name")` is the clone URL of `root/name`; clients need `ca_file` (GIT_SSL_CAINFO)
    and Basic credentials `username`/`password`. Every request is recorded in `requests`.
    """

    def __init__(self, root: Path, username: str, password: str, tls_dir: Path | None = None) -> None:
        self.root = root
        self.username = username
        self.password = password
        self._own_tls_dir = tls_dir is None
        self._tls_dir = Path(tempfile.mkdtemp(prefix="git-tls-")) if tls_dir is None else tls_dir
        self.tls = make_tls_files(self._tls_dir)
        self.ssl_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ssl_context.load_cert_chain(self.tls.cert_file, self.tls.key_file)
        self.requests: list[RequestRecord] = []
        self._lock = threading.Lock()
        self._held: HeldRequests | None = None
        self._httpd: _TlsHttpServer | None = None
        self._thread: threading.Thread | None = None
        self._backend_home = Path(tempfile.mkdtemp(prefix="git-backend-home-"))

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> GitHttpsServer:
        self.root.mkdir(parents=True, exist_ok=True)
        httpd = _TlsHttpServer(("127.0.0.1", 0), _GitHandler)
        httpd.git_server = self
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, name="git-https-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._held is not None:
            self._held.release()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        shutil.rmtree(self._backend_home, ignore_errors=True)
        if self._own_tls_dir:
            shutil.rmtree(self._tls_dir, ignore_errors=True)

    def __enter__(self) -> GitHttpsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what tests use -------------------------------------------------------------------------

    @property
    def port(self) -> int:
        assert self._httpd is not None, "the server is not started"
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def ca_file(self) -> Path:
        return self.tls.ca_file

    @property
    def git_env(self) -> dict[str, str]:
        """Environment a git client needs to trust this server."""
        return {"GIT_SSL_CAINFO": str(self.ca_file)}

    def url_for(self, repo_name: str) -> str:
        return f"{self.base_url}/{repo_name}"

    def make_repo(self, name: str, files: Mapping[str, str | bytes], branch: str = "master") -> Path:
        """A repository served as `url_for(name)`."""
        return make_repo(self.root / name, files, branch)

    def clear_requests(self) -> None:
        with self._lock:
            self.requests.clear()

    @contextmanager
    def holding_requests(self) -> Iterator[HeldRequests]:
        """While inside, authenticated requests wait until `release()` (or the block ends), so a
        test can look at a client that has its credentials and is waiting for the server."""
        held = HeldRequests()
        self._held = held
        try:
            yield held
        finally:
            self._held = None
            held.release()

    # -- internals ------------------------------------------------------------------------------

    def _record(self, record: RequestRecord) -> None:
        with self._lock:
            self.requests.append(record)

    def _authenticate(self, header: str | None) -> str | None:
        if not header or not header.startswith("Basic "):
            return None
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            return None
        user, _, password = decoded.partition(":")
        ok = hmac.compare_digest(user.encode(), self.username.encode()) & hmac.compare_digest(
            password.encode(), self.password.encode()
        )
        return user if ok else None

    def _run_backend(
        self, handler: _GitHandler, user: str, body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        path, _, query = handler.path.partition("?")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self._backend_home),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_PROJECT_ROOT": str(self.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REQUEST_METHOD": handler.command,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "CONTENT_TYPE": handler.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_USER": user,
            "REMOTE_ADDR": handler.client_address[0],
        }
        if handler.headers.get("Content-Encoding"):
            env["HTTP_CONTENT_ENCODING"] = handler.headers["Content-Encoding"]
        if handler.headers.get("Git-Protocol"):
            env["GIT_PROTOCOL"] = handler.headers["Git-Protocol"]
        done = subprocess.run(
            ["git", "http-backend"], input=body, env=env, capture_output=True, timeout=60, check=False
        )
        head, sep, payload = done.stdout.partition(b"\r\n\r\n")
        if not sep:
            head, sep, payload = done.stdout.partition(b"\n\n")
        status = 200
        headers: list[tuple[str, str]] = []
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.strip().split()[0])
            elif name:
                headers.append((name.strip(), value.strip()))
        if not sep:  # http-backend died before answering
            return 500, [("Content-Type", "text/plain")], done.stderr[-2000:]
        return status, headers, payload


def free_closed_port() -> int:
    """A loopback port nothing listens on (bound then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def git_https_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitHttpsServer]:
    """One HTTPS git server per test session; user `alice` with a random token as password.
    Make repositories with `git_https_server.make_repo(unique_name, files)`."""
    base = tmp_path_factory.mktemp("git-https")
    server = GitHttpsServer(base / "repos", "alice", "tok-" + secrets.token_urlsafe(24), tls_dir=base / "tls")
    with server:
        yield server


@dataclass(frozen=True)
class FileRepo:
    path: Path
    url: str  # file:// URL
    commit: str


@pytest.fixture
def file_git_repo(tmp_path: Path) -> FileRepo:
    """A fresh local repository (job.yaml + entrypoint.py on `master`) and its file:// URL."""
    path = make_repo(
        tmp_path / "remote-repo",
        {
            "job.yaml": "name: filejob\nowner_email: t@example.com\njobtype: python3:latest\n",
            "entrypoint.py": "class Job:\n    def perform(self) -> int:\n        return 1\n",
        },
    )
    return FileRepo(path, file_url(path), head_commit(path))
