"""Static files and the webview's `static/` folder cannot be used to read anything else.

A real wrapper process serves a job whose served folders hold symlinks out of the job's root,
symlinks to undeclared files inside it, and neighbours whose names share a prefix with them; a
secret file lies next to (outside) the job's root. Attack paths go over a plain socket with the
request target written byte for byte, because HTTP clients normalise dot segments before
sending. Every attack must answer 404 in the wrapper's error shape, and no secret may appear in
any response. The only exception: request lines that are not valid HTTP at all (raw NUL, tab or
non-ASCII bytes in the target, listed under "invalid:") may instead be refused by uvicorn's HTTP
parser with its own plain-text 400, before the job's app sees them.

Entries of static_endpoints() that resolve outside the job's root make the job fail to load.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.conftest import RunningJob, start_job, write_job

NAME = "statictest"
VERSION = "1.2.3"
PUB = f"/pub/job/{NAME}/{VERSION}"
FILES = "/api/v1/files/"  # the static directory endpoint, serving <root>/public
WEBVIEW_STATIC = "/api/v1/webview/static/"  # the webview's static folder, <root>/static
MOUNTS = (("files", FILES, "public"), ("webview", WEBVIEW_STATIC, "static"))

RUN = uuid.uuid4().hex[:12]
OUTSIDE_MARKER = f"OUTSIDE-SECRET-{RUN}"  # in files outside the job's root
SIBLING_MARKER = f"SIBLING-SECRET-{RUN}"  # in the root, next to a served folder, names sharing its prefix
ROOT_MARKER = f"ROOT-ONLY-{RUN}"  # in the root's own undeclared files (entrypoint.py, job.yaml, ...)
PASSWD_MARKER = "root:x:0:0"
MARKERS = (OUTSIDE_MARKER, SIBLING_MARKER, ROOT_MARKER, PASSWD_MARKER)

NESTED_TEXT = "nested file, legitimately served\n"
INDEX_TEXT = "public index\n"
README_TEXT = "# Readme\n\nserved as text/markdown\n"
CSS_TEXT = "body { color: #123456; }\n"
NESTED_CSS_TEXT = ".nested { margin: 0; }\n"
WEBVIEW_PAGE = "<html><body>webview home</body></html>"

ENTRYPOINT = f'''\
# {ROOT_MARKER}
import json


async def webview(scope, receive, send):
    """A tiny ASGI web UI: its home page, and 404 in the wrapper's error shape for anything else."""
    if scope["type"] != "http":
        return
    if scope["path"].endswith("/api/v1/webview/"):
        status, ctype, body = 200, b"text/html; charset=utf-8", {WEBVIEW_PAGE!r}.encode()
    else:
        status, ctype = 404, b"application/json"
        body = json.dumps({{"error": "webview: not found", "type": "NotFound"}}).encode()
    await send({{"type": "http.response.start", "status": status,
                "headers": [(b"content-type", ctype), (b"content-length", str(len(body)).encode())]}})
    await send({{"type": "http.response.body", "body": body}})


class StaticJob:
    def perform(self) -> str:
        return "ok"

    def static_endpoints(self):
        return {{
            "files": "public",
            "readme": ("docs/readme.md", "text/markdown"),
            "readme-link": "readme-link.md",
        }}

    def webview_app(self, base_url):
        return webview
'''


# ---- the job on disk ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    job_dir: Path
    secret: Path


def build_job(base: Path) -> Layout:
    outside = base / "outside"
    (outside / "sub").mkdir(parents=True)
    secret = outside / "secret.txt"
    secret.write_text(OUTSIDE_MARKER + "\n")
    (outside / "sub" / "deeper.txt").write_text(OUTSIDE_MARKER + " (beneath)\n")
    (base / "outside.txt").write_text(OUTSIDE_MARKER + " (right next to the root)\n")

    job_dir = write_job(
        base / "job",
        ENTRYPOINT,
        manifest_extra=f"# {ROOT_MARKER}\n",
        name=NAME,
        files={
            "root_only.txt": ROOT_MARKER + "\n",
            "public/index.txt": INDEX_TEXT,
            "public/nested/deep/file.txt": NESTED_TEXT,
            "public2/secret.txt": SIBLING_MARKER + "\n",
            "public_secret.txt": SIBLING_MARKER + "\n",
            "docs/readme.md": README_TEXT,
            "static/style.css": CSS_TEXT,
            "static/css/nested.css": NESTED_CSS_TEXT,
            "static2/secret.txt": SIBLING_MARKER + "\n",
            "static_secret.txt": SIBLING_MARKER + "\n",
        },
    )
    # a declared single file that is a symlink to another file inside the root: allowed
    (job_dir / "readme-link.md").symlink_to("docs/readme.md")
    # inside the served folder, pointing inside it: allowed
    (job_dir / "public" / "alias.txt").symlink_to("nested/deep/file.txt")
    (job_dir / "static" / "alias.css").symlink_to("css/nested.css")
    for served in ("public", "static"):
        folder = job_dir / served
        folder.joinpath("outlink.txt").symlink_to(secret)  # absolute, out of the root
        folder.joinpath("outlink-rel.txt").symlink_to(Path("..", "..", "outside", "secret.txt"))
        folder.joinpath("outdir").symlink_to(outside, target_is_directory=True)
        folder.joinpath("rootlink.txt").symlink_to(Path("..", "root_only.txt"))  # in the root, not served
        folder.joinpath("entrylink.py").symlink_to(Path("..", "entrypoint.py"))
        folder.joinpath("siblink").symlink_to(Path("..", served + "2"), target_is_directory=True)
        folder.joinpath("rootdir").symlink_to(Path(".."), target_is_directory=True)
        folder.joinpath("dangling.txt").symlink_to(Path("..", "does-not-exist.txt"))
        folder.joinpath("loop").symlink_to("loop")
        folder.joinpath("devzero").symlink_to("/dev/zero")  # would never end if it were read
        os.mkfifo(folder / "pipe")  # opening it would block the server forever
    return Layout(job_dir, secret)


# ---- raw HTTP ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes
    raw: bytes

    def app_error(self) -> dict[str, Any] | None:
        """The wrapper's JSON error body ({"error", "type"}), or None when the body is something else."""
        try:
            payload = json.loads(self.body)
        except ValueError:
            return None
        if isinstance(payload, dict) and isinstance(payload.get("error"), str) and "type" in payload:
            return payload
        return None

    def short(self) -> str:
        return f"{self.status} {self.body[:200]!r}"


def raw_request(port: int, target: bytes, method: bytes = b"GET", timeout: float = 10) -> RawResponse:
    """Send one request with `target` exactly as given and read the response until the server closes."""
    request = (
        method
        + b" "
        + target
        + b" HTTP/1.1\r\nHost: 127.0.0.1:"
        + str(port).encode()
        + b"\r\nConnection: close\r\n\r\n"
    )
    chunks: list[bytes] = []
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
        else:
            raise TimeoutError(f"no complete response within {timeout}s")
    raw = b"".join(chunks)
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        raise ValueError(f"malformed response: {raw[:300]!r}")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    return RawResponse(status, headers, body, raw)


# ---- the attacks -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Attack:
    label: str
    target: bytes
    method: bytes = b"GET"
    # Not valid HTTP: uvicorn's parser may answer 400 itself, before the wrapper sees the request.
    invalid_http: bool = False


def _q(text: str) -> str:
    return quote(text, safe="")


def _suffixes(served: str, secret: Path) -> list[tuple[str, str]]:
    """(label, what follows the served folder's URL) for one served folder."""
    long_dots = "../" * 4000 + "etc/passwd"
    return [
        ("dotdot", "../entrypoint.py"),
        ("dotdot-manifest", "../job.yaml"),
        ("dotdot-root-file", "../root_only.txt"),
        ("dotdot-deep-passwd", "../../../../../../../../etc/passwd"),
        ("dotdot-to-outside", "../../outside/secret.txt"),
        ("dotdot-next-to-root", "../../outside.txt"),
        ("dotdot-after-segment", "nested/../../entrypoint.py"),
        ("dot-then-dotdot", "./../entrypoint.py"),
        ("dot-only", "."),
        ("dotdot-only", ".."),
        ("dotdot-slash", "../"),
        ("enc-dotdot-lower", "%2e%2e/entrypoint.py"),
        ("enc-dotdot-upper", "%2E%2E/entrypoint.py"),
        ("enc-dot-half-1", ".%2e/entrypoint.py"),
        ("enc-dot-half-2", "%2e./entrypoint.py"),
        ("enc-dotdot-mixed-case", "%2e%2E/job.yaml"),
        ("enc-slash", "..%2fentrypoint.py"),
        ("enc-slash-upper", "..%2Fjob.yaml"),
        ("enc-all", "%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd"),
        ("enc-backslash", "..%5centrypoint.py"),
        ("enc-backslash-upper", "..%5Cjob.yaml"),
        ("enc-all-backslash", "%2e%2e%5c%2e%2e%5centrypoint.py"),
        ("raw-backslash", "..\\entrypoint.py"),
        ("raw-backslash-deep", "..\\..\\outside\\secret.txt"),
        ("double-enc-dotdot", "%252e%252e/entrypoint.py"),
        ("double-enc-all", "%252e%252e%252fentrypoint.py"),
        ("double-enc-slash", "..%252fentrypoint.py"),
        ("overlong-dot", "%c0%ae%c0%ae/entrypoint.py"),
        ("overlong-dot-slash", "%c0%ae%c0%ae%c0%afentrypoint.py"),
        ("overlong-3byte-dot", "%e0%80%ae%e0%80%ae/entrypoint.py"),
        ("overlong-backslash", "..%c1%9centrypoint.py"),
        ("null-after", "../entrypoint.py%00"),
        ("null-before-ext", "../entrypoint.py%00.txt"),
        ("null-in-dotdot", "..%00/entrypoint.py"),
        ("null-served-file", "index.txt%00"),
        ("abs-etc-passwd", "/etc/passwd"),
        ("enc-abs-etc-passwd", "%2fetc%2fpasswd"),
        ("abs-secret", str(secret)),
        ("enc-abs-secret", _q(str(secret))),
        ("symlink-out-abs", "outlink.txt"),
        ("symlink-out-rel", "outlink-rel.txt"),
        ("symlink-out-dir-file", "outdir/secret.txt"),
        ("symlink-out-dir-deeper", "outdir/sub/deeper.txt"),
        ("symlink-out-dir-itself", "outdir"),
        ("symlink-out-dir-slash", "outdir/"),
        ("symlink-out-trailing-slash", "outlink.txt/"),
        ("symlink-out-trailing-dot", "outlink.txt."),
        ("symlink-out-enc", "outlink%2etxt"),
        ("symlink-to-root-file", "rootlink.txt"),
        ("symlink-to-entrypoint", "entrylink.py"),
        ("symlink-to-sibling-dir", "siblink/secret.txt"),
        ("symlink-to-root-dir", "rootdir/entrypoint.py"),
        ("symlink-to-root-dir-sibling", f"rootdir/{served}2/secret.txt"),
        ("symlink-dangling", "dangling.txt"),
        ("symlink-loop", "loop"),
        ("symlink-loop-beneath", "loop/x"),
        ("symlink-dev-zero", "devzero"),
        ("fifo", "pipe"),
        ("prefix-sibling-dir", f"../{served}2/secret.txt"),
        ("prefix-sibling-file", f"../{served}_secret.txt"),
        ("prefix-sibling-enc", f"%2e%2e/{served}2/secret.txt"),
        ("prefix-sibling-enc-slash", f"..%2f{served}2%2fsecret.txt"),
        ("trailing-slash", "../entrypoint.py/"),
        ("trailing-dot", "../entrypoint.py."),
        ("trailing-dots-segment", "..../entrypoint.py"),
        ("three-dots", ".../entrypoint.py"),
        ("dotdot-space", "..%20/entrypoint.py"),
        ("dotdot-dot-segment", "../."),
        ("double-slash-dotdot", "..//..//entrypoint.py"),
        ("four-dots-double-slash", "....//entrypoint.py"),
        ("directory-itself", ""),
        ("nested-directory", "nested/"),
        ("semicolon-dotdot", "..;/entrypoint.py"),
        ("semicolon-param-dotdot", "..;x=1/entrypoint.py"),
        ("semicolon-segment", "nested;/../../entrypoint.py"),
        ("query-after", "../entrypoint.py?x=1"),
        ("query-in-dotdot", "..?/entrypoint.py"),
        ("query-only", "?../../entrypoint.py"),
        ("enc-question", "%3f/../../entrypoint.py"),
        ("enc-hash", "..%23/entrypoint.py"),
        ("hash-fragment", "..#/entrypoint.py"),
        ("hash-then-dotdot", "x#/../../entrypoint.py"),
        ("fullwidth-dots", "%ef%bc%8e%ef%bc%8e/entrypoint.py"),
        ("one-dot-leader", "%e2%80%a4%e2%80%a4/entrypoint.py"),
        ("two-dot-leader", "%e2%80%a5/entrypoint.py"),
        ("fullwidth-solidus", "..%ef%bc%8fentrypoint.py"),
        ("iis-unicode-dot", "%u002e%u002e/entrypoint.py"),
        ("long-dotdot", long_dots),
        ("long-enc-dotdot", "%2e%2e/" * 300 + "etc/passwd"),
        ("long-segment", "a" * 10000),
        ("long-many-segments", "a/" * 4000 + "x"),
    ]


def build_attacks(port: int, secret: Path) -> list[Attack]:
    attacks: list[Attack] = []
    for mount, url, served in MOUNTS:
        for prefix in ("", PUB):
            for label, suffix in _suffixes(served, secret):
                attacks.append(
                    Attack(f"{mount}{'+pub' if prefix else ''}:{label}", (prefix + url + suffix).encode())
                )
    # the webview folder's alias without /api/v1
    for label, suffix in (
        ("dotdot", "../entrypoint.py"),
        ("enc-dotdot", "%2e%2e/entrypoint.py"),
        ("symlink-out", "outlink.txt"),
        ("symlink-out-dir", "outdir/secret.txt"),
        ("prefix-sibling", "../static2/secret.txt"),
    ):
        attacks.append(Attack(f"webview-alias:{label}", f"/webview/static/{suffix}".encode()))

    specials = [
        # absolute paths and traversal outside any mount
        ("abs-double-slash", "//etc/passwd"),
        ("root-dotdot", "/../../../etc/passwd"),
        ("root-dotdot-entrypoint", "/../entrypoint.py"),
        ("api-dotdot", "/api/v1/../../entrypoint.py"),
        ("api-enc-dotdot", "/api/v1/%2e%2e/%2e%2e/entrypoint.py"),
        # absolute-form request targets
        ("absolute-form-dotdot", "http://127.0.0.1/.."),
        ("absolute-form-files-dotdot", "http://127.0.0.1/api/v1/files/../entrypoint.py"),
        ("absolute-form-files-enc", f"http://127.0.0.1:{port}/api/v1/files/%2e%2e/entrypoint.py"),
        ("absolute-form-symlink-out", f"http://127.0.0.1:{port}/api/v1/files/outlink.txt"),
        ("absolute-form-webview", "http://127.0.0.1/api/v1/webview/static/../entrypoint.py"),
        ("absolute-form-pub", f"http://localhost{PUB}/api/v1/files/%2e%2e/job.yaml"),
        # URL paths sharing a prefix with the served ones
        ("url-prefix-files2", "/api/v1/files2/secret.txt"),
        ("url-prefix-files-secret", "/api/v1/files_secret.txt"),
        ("url-prefix-files-dotdot", "/api/v1/files../public2/secret.txt"),
        ("url-prefix-files-enc-dotdot", "/api/v1/files%2e%2e/public2/secret.txt"),
        ("url-prefix-files-no-slash", "/api/v1/files"),
        ("url-prefix-pub-files2", f"{PUB}/api/v1/files2/secret.txt"),
        ("url-prefix-static2", "/api/v1/webview/static2/secret.txt"),
        ("url-prefix-static-secret", "/api/v1/webview/static_secret.txt"),
        ("url-prefix-static-dotdot", "/api/v1/webview/static../static2/secret.txt"),
        ("url-prefix-pub-static2", f"{PUB}/api/v1/webview/static2/secret.txt"),
        # the declared single file: nothing beneath or beside it
        ("file-trailing-slash", "/api/v1/readme/"),
        ("file-beneath", "/api/v1/readme/x"),
        ("file-dotdot", "/api/v1/readme/../entrypoint.py"),
        ("file-enc-dotdot", "/api/v1/readme%2f..%2f..%2fentrypoint.py"),
        ("file-trailing-dot", "/api/v1/readme."),
        ("file-semicolon", "/api/v1/readme;.txt"),
        ("file-null", "/api/v1/readme%00"),
        ("file-pub-dotdot", f"{PUB}/api/v1/readme/../../../entrypoint.py"),
        # the /pub/job prefix itself
        ("pub-dotdot", f"{PUB}/../../../../entrypoint.py"),
        ("pub-enc-dotdot", f"{PUB}/%2e%2e/%2e%2e/%2e%2e/%2e%2e/entrypoint.py"),
        ("pub-name-dotdot", "/pub/job/../../api/v1/files/../entrypoint.py"),
        ("pub-fatman-dotdot", f"/pub/fatman/{NAME}/{VERSION}/api/v1/files/../entrypoint.py"),
        # the wrapper's own assets are not a way out either
        ("docs-assets-dotdot", "/docs/assets/../../entrypoint.py"),
        ("docs-assets-enc", "/docs/assets/%2e%2e%2f%2e%2e%2fapp.py"),
        ("docs-assets-abs", "/docs/assets//etc/passwd"),
        ("asterisk-form", "*"),
    ]
    attacks += [Attack(f"special:{label}", target.encode()) for label, target in specials]

    # HEAD must not be a way around the checks either
    for label, target in (
        ("dotdot", FILES + "../entrypoint.py"),
        ("enc", FILES + "%2e%2e/job.yaml"),
        ("symlink-out", FILES + "outlink.txt"),
        ("webview-dotdot", WEBVIEW_STATIC + "../job.yaml"),
        ("webview-symlink-out", WEBVIEW_STATIC + "outdir/secret.txt"),
        ("pub-files", f"{PUB}{FILES}..%2fentrypoint.py"),
    ):
        attacks.append(Attack(f"head:{label}", target.encode(), method=b"HEAD"))

    # request lines that are not valid HTTP: raw bytes a request-target may not contain
    invalid = [
        ("raw-nul", FILES.encode() + b"..\x00/entrypoint.py"),
        ("raw-utf8-one-dot-leader", FILES.encode() + "\u2025/entrypoint.py".encode()),
        ("raw-utf8-fullwidth-dots", WEBVIEW_STATIC.encode() + "\uff0e\uff0e/entrypoint.py".encode()),
        ("raw-latin1-overlong", FILES.encode() + b"\xc0\xae\xc0\xae/entrypoint.py"),
        ("raw-tab", FILES.encode() + b"..\t/entrypoint.py"),
    ]
    attacks += [Attack(f"invalid:{label}", target, invalid_http=True) for label, target in invalid]

    targets = [(a.method, a.target) for a in attacks]
    assert len(set(targets)) == len(targets), "duplicate attack variants"
    return attacks


# ---- fixtures ----------------------------------------------------------------------------------


@dataclass
class Served:
    job: RunningJob
    port: int
    layout: Layout


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    base = tmp_path_factory.mktemp("static-security")
    layout = build_job(base)
    job = start_job(layout.job_dir, base)
    try:
        yield Served(job, int(job.url.rsplit(":", 1)[1]), layout)
    finally:
        job.stop()


def _leaks(raw: bytes) -> list[str]:
    text = raw.decode("latin-1")
    return [marker for marker in MARKERS if marker in text]


# ---- legitimate use ----------------------------------------------------------------------------


LEGIT = [
    (FILES + "nested/deep/file.txt", NESTED_TEXT, "text/plain; charset=utf-8"),
    (FILES + "index.txt", INDEX_TEXT, "text/plain; charset=utf-8"),
    (FILES + "alias.txt", NESTED_TEXT, "text/plain; charset=utf-8"),  # symlink within the folder
    ("/api/v1/readme", README_TEXT, "text/markdown; charset=utf-8"),  # explicit mimetype
    ("/api/v1/readme-link", README_TEXT, "text/markdown; charset=utf-8"),  # symlink within the root
    (WEBVIEW_STATIC + "style.css", CSS_TEXT, "text/css; charset=utf-8"),
    (WEBVIEW_STATIC + "css/nested.css", NESTED_CSS_TEXT, "text/css; charset=utf-8"),
    (WEBVIEW_STATIC + "alias.css", NESTED_CSS_TEXT, "text/css; charset=utf-8"),
]


@pytest.mark.parametrize("prefix", ["", PUB], ids=["plain", "pub"])
@pytest.mark.parametrize(("path", "content", "content_type"), LEGIT, ids=[p for p, _, _ in LEGIT])
def test_legit_static_files_are_served(
    served: Served, prefix: str, path: str, content: str, content_type: str
) -> None:
    r = served.job.client.get(prefix + path)
    assert r.status_code == 200, f"GET {prefix + path}: {r.status_code} {r.text[:300]}"
    assert r.text == content
    assert r.headers["content-type"] == content_type
    assert int(r.headers["content-length"]) == len(content.encode())

    head = raw_request(served.port, (prefix + path).encode(), b"HEAD")
    assert head.status == 200, f"HEAD {prefix + path}: {head.short()}"
    assert head.body == b""
    assert head.headers["content-type"] == content_type
    assert int(head.headers["content-length"]) == len(content.encode())


def test_legit_file_by_raw_request(served: Served) -> None:
    """The raw client itself works: the same request that attacks build on answers 200."""
    r = raw_request(served.port, (FILES + "nested/deep/file.txt").encode())
    assert r.status == 200, r.short()
    assert r.body == NESTED_TEXT.encode()
    r = raw_request(served.port, f"{PUB}{WEBVIEW_STATIC}style.css".encode())
    assert r.status == 200, r.short()
    assert r.body == CSS_TEXT.encode()
    # the webview itself still works next to its static folder
    home = served.job.client.get("/api/v1/webview/")
    assert home.status_code == 200
    assert home.text == WEBVIEW_PAGE


STATIC_PATHS = [FILES + "nested/deep/file.txt", "/api/v1/readme", WEBVIEW_STATIC + "style.css"]


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
@pytest.mark.parametrize("path", STATIC_PATHS, ids=STATIC_PATHS)
def test_other_methods_on_static_paths_are_405(served: Served, method: str, path: str) -> None:
    r = served.job.client.request(method, path, content=b"{}")
    assert r.status_code == 405, f"{method} {path}: {r.status_code} {r.text[:300]}"
    body = r.json()
    assert body["type"] == "MethodNotAllowed" and isinstance(body["error"], str)
    assert "GET" in r.headers.get("allow", "")
    assert not _leaks(r.content)


# ---- attacks -----------------------------------------------------------------------------------


def test_attack_paths_answer_404_and_leak_nothing(served: Served) -> None:
    attacks = build_attacks(served.port, served.layout.secret)
    assert len(attacks) >= 50
    failures: list[str] = []
    parser_rejected: list[str] = []
    for attack in attacks:
        shown = f"{attack.method.decode()} {attack.target[:160]!r}"
        if len(attack.target) > 160:
            shown += f" (+{len(attack.target) - 160} bytes)"
        try:
            r = raw_request(served.port, attack.target, attack.method)
        except (OSError, ValueError) as e:
            failures.append(f"{attack.label}: {shown} -> no response ({e!r})")
            continue
        leaked = _leaks(r.raw)
        if leaked:
            failures.append(f"{attack.label}: {shown} -> LEAKED {leaked}: {r.short()}")
            continue
        if r.status == 404:
            error = r.app_error()
            if attack.method == b"GET" and (error is None or error["type"] != "NotFound"):
                failures.append(f"{attack.label}: {shown} -> 404 without the JSON error body: {r.short()}")
            continue
        if (
            attack.invalid_http
            and r.status == 400
            and r.app_error() is None
            and r.headers.get("content-type", "").startswith("text/plain")
        ):
            parser_rejected.append(attack.label)  # uvicorn's parser refused it; the app never saw it
            continue
        failures.append(f"{attack.label}: {shown} -> expected 404, got {r.short()}")

    logs = served.job.logs()
    assert not failures, (
        f"{len(failures)} of {len(attacks)} attack variants did not answer a clean 404 "
        f"(refused by the HTTP parser, allowed: {parser_rejected}):\n" + "\n".join(failures)
    )
    assert "Traceback" not in logs, f"the server logged a traceback during the attacks:\n{logs[-5000:]}"

    # the server is unharmed
    assert served.job.client.get("/live").status_code == 200
    assert served.job.client.get("/ready").status_code == 200
    legit = served.job.client.get(FILES + "nested/deep/file.txt")
    assert legit.status_code == 200 and legit.text == NESTED_TEXT
    assert served.job.process.poll() is None


# ---- static endpoints declared outside the root --------------------------------------------------


OUTSIDE_CASES = [
    "dotdot",
    "absolute-secret",
    "absolute-etc-passwd",
    "directory-dotdot",
    "dotdot-through-served",
    "in-root-symlink-out",
    "in-root-dir-symlink-out",
]


def _outside_entry(case: str, outside: Path, job_dir: Path) -> str:
    """The static_endpoints() file name for `case`; every one resolves outside `job_dir`."""
    if case == "dotdot":
        return "../outside/secret.txt"
    if case == "absolute-secret":
        return str(outside / "secret.txt")
    if case == "absolute-etc-passwd":
        return "/etc/passwd"
    if case == "directory-dotdot":
        return "../outside"
    if case == "dotdot-through-served":
        return "public/../../outside/secret.txt"
    if case == "in-root-symlink-out":
        (job_dir / "leak.txt").symlink_to(outside / "secret.txt")
        return "leak.txt"
    if case == "in-root-dir-symlink-out":
        (job_dir / "leakdir").symlink_to(outside, target_is_directory=True)
        return "leakdir"
    raise AssertionError(case)


@pytest.mark.parametrize("case", OUTSIDE_CASES)
@pytest.mark.parametrize("with_mimetype", [False, True], ids=["name", "tuple"])
def test_static_endpoint_outside_root_fails_to_load(
    run_job: Callable[..., RunningJob], tmp_path: Path, case: str, with_mimetype: bool
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text(OUTSIDE_MARKER + "\n")
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    filename = _outside_entry(case, outside, job_dir)
    spec = f"({filename!r}, 'text/plain')" if with_mimetype else repr(filename)
    write_job(
        job_dir,
        f"""\
class LeakyJob:
    def perform(self) -> str:
        return "ok"

    def static_endpoints(self):
        return {{"leak": {spec}}}
""",
        name="leaky",
        files={"public/ok.txt": "fine\n"},
    )

    job = run_job(job_dir, wait="live")
    deadline = time.monotonic() + 30
    while True:
        r = job.client.get("/live")
        if r.status_code != 200 or r.json().get("status") != "initialising":
            break
        assert time.monotonic() < deadline, "the job never finished loading"
        time.sleep(0.05)

    assert r.status_code == 500, f"/live answered {r.status_code}: {r.text[:500]}"
    body = r.json()
    assert body["live"] is False
    assert isinstance(body["location"], str) and body["location"], body
    error = body["error"]
    assert "static_endpoints()" in error and "'leak'" in error, error
    assert "outside the job's root" in error, error
    assert repr(filename) in error, error
    assert OUTSIDE_MARKER not in r.text
    assert job.client.get("/ready").status_code == 500
    # nothing was mounted: the path answers an error (the job is not loaded), never the file
    leak = job.client.get("/api/v1/leak")
    assert leak.status_code in (404, 503), f"{leak.status_code} {leak.text[:300]}"
    assert OUTSIDE_MARKER not in leak.text
    assert job.process.poll() is None
    assert os.path.exists(outside / "secret.txt")
