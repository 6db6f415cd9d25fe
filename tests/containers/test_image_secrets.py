"""Build secrets reach the install step of an image and nothing else: a job whose requirement lives
on a private index (HTTP Basic auth, the password a secret build variable) builds, and neither the
image's layers, its history, its configuration, the container's configuration nor the build log
holds the secret; a non-secret build variable is not baked into the image either. (Built with
--no-cache, which the build honours.)"""

from __future__ import annotations

import base64
import gzip
import hashlib
import http.server
import io
import json
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.containers.conftest import ContainerPlatform, manifest
from tests.containers.podman import podman
from tests.gitservers import make_repo

pytestmark = pytest.mark.slow

INDEX_USER = "probe"
INDEX_PASSWORD = "index-secret-5b0c9e1d7a"
PLAIN_MARKER = "plain-build-marker-4e8a"
PROBE_VALUE = "installed from the private index"
WHEEL_NAME = "trackside_probe-1.0-py3-none-any.whl"


def _probe_wheel() -> bytes:
    files = {
        "trackside_probe/__init__.py": f"VALUE = {PROBE_VALUE!r}\n".encode(),
        "trackside_probe-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: trackside-probe\nVersion: 1.0\n",
        "trackside_probe-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(
        f"{name},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},{len(data)}\n"
        for name, data in files.items()
    )
    files["trackside_probe-1.0.dist-info/RECORD"] = (
        record + "trackside_probe-1.0.dist-info/RECORD,,\n"
    ).encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


class PrivateIndex:
    """A PEP 503 index with one package, behind HTTP Basic auth."""

    def __init__(self) -> None:
        self.wheel = _probe_wheel()
        self.port = free_port()
        self.downloads = 0
        expected = "Basic " + base64.b64encode(f"{INDEX_USER}:{INDEX_PASSWORD}".encode()).decode()
        index = self
        digest = hashlib.sha256(self.wheel).hexdigest()

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _send(self, status: int, body: bytes, content_type: str = "text/html") -> None:
                self.send_response(status)
                if status == 401:
                    self.send_header("WWW-Authenticate", 'Basic realm="probe"')
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.headers.get("Authorization") != expected:
                    self._send(401, b"")
                elif self.path.rstrip("/") == "/simple/trackside-probe":
                    link = f'<a href="/files/{WHEEL_NAME}#sha256={digest}">{WHEEL_NAME}</a>'
                    self._send(200, f"<html><body>{link}</body></html>".encode())
                elif self.path == f"/files/{WHEEL_NAME}":
                    index.downloads += 1
                    self._send(200, index.wheel, "application/octet-stream")
                else:
                    self._send(404, b"")

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def private_index() -> Iterator[PrivateIndex]:
    index = PrivateIndex()
    try:
        yield index
    finally:
        index.close()


def _archive_members(data: bytes, layers: bool = True) -> Iterator[tuple[str, bytes]]:
    """Every file of a `podman save` archive, its layer tars opened too (gzip or not)."""
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        for member in archive:
            if not member.isfile():
                continue
            extracted = archive.extractfile(member)
            assert extracted is not None
            content = extracted.read()
            yield member.name, content
            if content[:2] == b"\x1f\x8b":
                content = gzip.decompress(content)
            if layers and content[257:262] == b"ustar":
                inner = _archive_members(content, layers=False)
                yield from ((f"{member.name}/{name}", data) for name, data in inner)


def test_build_secrets_reach_the_install_step_and_no_layer_history_or_config(
    container_platform: ContainerPlatform, private_index: PrivateIndex, tmp_path: Path
) -> None:
    p = container_platform
    repo = make_repo(
        p.root / "repos" / "probe",
        {
            "entrypoint.py": (
                "import trackside_probe\n\n\nclass Probe:\n"
                "    def perform(self) -> str:\n        return trackside_probe.VALUE\n"
            ),
            "requirements.txt": "trackside-probe==1.0\n",
        },
    )
    index_url = f"http://{INDEX_USER}:{INDEX_PASSWORD}@127.0.0.1:{private_index.port}/simple/"
    body = {
        "manifest": manifest(
            "probe",
            repo,
            jobtype_extra={"entrypoint_path": "entrypoint.py", "requirements_path": "requirements.txt"},
            build_env={"PIP_TRUSTED_HOST": "127.0.0.1", "PLAIN_BUILD_SETTING": PLAIN_MARKER},
        ),
        "secret_vars": {"build_env": {"PIP_EXTRA_INDEX_URL": index_url}},
        "build_flags": ["--no-cache"],
    }
    done = p.wait(p.deploy(body))
    build_log = p.build_log("probe")
    assert done["status"] == "done", (done, build_log[-3000:])
    assert private_index.downloads >= 1  # pip used the secret credentials
    r = p.call("probe", {})
    assert r.status_code == 200 and r.json() == PROBE_VALUE, r.text

    assert INDEX_PASSWORD not in build_log
    assert "STEP 2/" in build_log and "Using cache" not in build_log  # --no-cache: every step ran
    assert "PIP_EXTRA_INDEX_URL" in build_log  # the names are shown, the values never
    [container] = p.containers("probe")
    image = container["Image"]
    inspected = {
        "history": podman("history", "--no-trunc", "--format", "json", image),
        "image config": podman("image", "inspect", image),
        "container config": podman("container", "inspect", container["Id"]),
    }
    for what, text in inspected.items():
        assert INDEX_PASSWORD not in text, what
        # the container's JOB_MANIFEST_YAML shows the manifest, plain build_env included
        assert what == "container config" or PLAIN_MARKER not in text, what
    assert "--mount=type=secret,id=build_env" in inspected["history"]  # how it got there instead

    archive = tmp_path / "image.tar"
    podman("save", "--format", "docker-archive", "--output", str(archive), image, timeout=600)
    files = 0
    for name, content in _archive_members(archive.read_bytes()):
        files += 1
        assert INDEX_PASSWORD.encode() not in content, f"the secret is in {name}"
        assert PLAIN_MARKER.encode() not in content, f"the plain build variable is in {name}"
    assert files > 1000  # the layers were opened, not just the outer archive
    assert json.loads(podman("image", "inspect", image))[0]["Config"].get("User") == "10001:10001"
