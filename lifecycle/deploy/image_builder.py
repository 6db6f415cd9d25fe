"""Container builder: a job image from the python3 Dockerfile template (trackside_wrapper.job_image),
built by the container engine with its layer cache.

Tags are `REPOSITORY/NAME:VERSION-FINGERPRINT12`: the same for the same job, version and
dependencies. A build is remembered by a record directory (the BuildResult's `code_dir`) holding
`image.json` (image id, tag, fingerprint); an image is removed when no record refers to it any
more and no container uses it.

Build environment values reach the engine only as a secret file (mode 600, in a private directory
removed after the build), are mounted into the pip steps only, and are scrubbed from the build
log; the image's history shows an HMAC of them (so a changed value rebuilds the dependencies), never
a value.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from trackside_wrapper.job_image import (
    LABEL_FINGERPRINT,
    RecipeError,
    build_command,
    env_file,
    image_tag,
    stage_context,
)

from .builder import BuildError, BuildRequest, BuildResult
from .container_engine import EngineCli, EngineError
from .fingerprint import FINGERPRINT_RE, load_salt
from .image_recipe import IMAGE_PYTHON, image_recipe
from .streamed_command import Redactor

logger = logging.getLogger("trackside.lifecycle.images")

Log = Callable[[str], None]

ENVIRONMENT_PREFIX = "image:"
RECORD_FILE = "image.json"
_CACHED_STEP_RE = re.compile(r"^(--> Using cache|#\d+ CACHED)")
_BROKEN_CACHE = "layer not known"
# what the docker CLI says when it cannot build with BuildKit: without buildx (docker >= 23), or
# against a daemon without BuildKit such as podman's API socket (docker 20.10)
_NO_BUILDKIT = ("buildx component is missing or broken", "failed to dial gRPC")


def _summary(lines: list[str]) -> str:
    wanted = [line.strip() for line in lines if line.strip()]
    errors = [line for line in wanted if re.search(r"(?i)\berror\b", line)]
    return " ".join((errors or wanted)[-4:])[-800:] or "no output"


class ImageBuilder:
    infrastructure = "docker"

    def __init__(
        self,
        engine: EngineCli,
        records_dir: Path,
        *,
        base_image: str,
        repository: str,
        build_network: str | None = None,
        ca_bundle: Path | None = None,
        push: bool = False,
        registry_credentials: tuple[str, str] | None = None,
    ) -> None:
        self.engine = engine
        self.records_dir = records_dir.resolve()
        self.base_image = base_image
        self.repository = repository
        self.build_network = build_network
        self.ca_bundle = ca_bundle
        self.push = push
        self._credentials = registry_credentials
        self.records_dir.mkdir(parents=True, exist_ok=True)
        self._tmp = self.records_dir.parent / "tmp"
        self._salt = load_salt(self.records_dir.parent / "salt")
        self._lock = threading.Lock()
        self._base_locks: dict[str, threading.Lock] = {}

    # ---- Builder ---------------------------------------------------------------------------

    def build(self, request: BuildRequest, log: Log) -> BuildResult:
        scrub = Redactor(request.build_env.values())
        recipe = image_recipe(request, self.base_image, self._salt, log)
        base = recipe.base_image
        self._tmp.mkdir(parents=True, exist_ok=True)
        workspace = Path(tempfile.mkdtemp(prefix="build-", dir=self._tmp))  # mode 700
        try:
            try:
                staged = stage_context(recipe, request.source_dir, workspace / "context")
                env_path = workspace / "build_env"
                env_path.write_text(env_file(request.build_env))
                env_path.chmod(0o600)
            except RecipeError as e:
                raise BuildError(str(e)) from None
            ca_bundle = workspace / "ca_bundle"
            if self.ca_bundle is not None:
                shutil.copyfile(self.ca_bundle, ca_bundle)
            else:
                ca_bundle.write_bytes(b"")
            tag = image_tag(self.repository, request.job_name, request.job_version, staged.fingerprint)
            secret_files = {"build_env": env_path, "ca_bundle": ca_bundle}
            command, env = build_command(
                self.engine.engine,
                staged.directory,
                tag,
                secret_files,
                network=self.build_network,
                no_cache=request.no_cache,
            )
            started = time.monotonic()
            cached_steps: list[str] = []

            def collect(line: str) -> None:
                if _CACHED_STEP_RE.match(line):
                    cached_steps.append(line)
                log(line)

            # builds on one base image share their first layers: two at once would make two copies
            base_lock = self._base_lock(base)
            if not base_lock.acquire(blocking=False):
                log(f"waiting for another build on {base} to finish (they share layers)")
                base_lock.acquire()
            try:
                had_tag = self.engine.image_id(tag) is not None
                log(f"building image {tag} with {self.engine.name} (base {base})")
                rc, tail = self.engine.stream(command, env, collect, scrub)
                if rc != 0 and not request.no_cache and any(_BROKEN_CACHE in line for line in tail):
                    # buildah's cache can point at a layer that is gone (a removal racing a build)
                    log("the engine's layer cache refers to a missing layer: building again without it")
                    command, env = build_command(
                        self.engine.engine,
                        staged.directory,
                        tag,
                        secret_files,
                        network=self.build_network,
                        no_cache=True,
                    )
                    rc, tail = self.engine.stream(command, env, collect, scrub)
            finally:
                base_lock.release()
            if rc != 0:
                if self.engine.kind == "docker" and any(s in line for line in tail for s in _NO_BUILDKIT):
                    raise BuildError(
                        f"building the image failed: {self.engine.name} cannot build with BuildKit here "
                        f"({_summary(tail)}), and job images need it: build secrets reach the install "
                        "step only as BuildKit secret mounts. Use a Docker engine with the buildx "
                        "component, or set TRACKSIDE_CONTAINER_ENGINE=podman"
                    )
                raise BuildError(f"building the image failed: {_summary(tail)}")
            image = self.engine.image_id(tag)
            if image is None:
                raise BuildError(f"the engine reported success but has no image {tag}")
            log(f"image {tag} ({image[:12]}) built in {time.monotonic() - started:.1f} s")
        finally:
            shutil.rmtree(workspace, ignore_errors=True)
        if self.push:
            try:
                self._push(tag, log)
            except BuildError:
                self.prune_image(image)
                raise
        record = self._record(request, image, tag, staged.fingerprint)
        cached = had_tag and not request.no_cache and bool(cached_steps)
        return BuildResult(
            environment_id=ENVIRONMENT_PREFIX + staged.fingerprint,
            python=IMAGE_PYTHON,
            code_dir=record,
            cached=cached,
            infrastructure=self.infrastructure,
            image=image,
        )

    def restore(self, environment_id: str, code_dir: Path) -> BuildResult | None:
        if not self.owns(environment_id):
            return None
        data = self._read_record(code_dir)
        if data is None or self.engine.image_id(data["image"]) is None:
            return None
        return BuildResult(
            environment_id=environment_id,
            python=IMAGE_PYTHON,
            code_dir=code_dir,
            cached=True,
            infrastructure=self.infrastructure,
            image=data["image"],
        )

    def release(self, result: BuildResult) -> None:
        if not result.code_dir.resolve().is_relative_to(self.records_dir):
            return
        with self._lock:
            shutil.rmtree(result.code_dir, ignore_errors=True)
        if result.image:
            self.prune_image(result.image)

    # ---- images --------------------------------------------------------------------------------

    def _base_lock(self, base: str) -> threading.Lock:
        with self._lock:
            return self._base_locks.setdefault(base, threading.Lock())

    @staticmethod
    def owns(environment_id: str) -> bool:
        return environment_id.startswith(ENVIRONMENT_PREFIX) and bool(
            FINGERPRINT_RE.fullmatch(environment_id.removeprefix(ENVIRONMENT_PREFIX))
        )

    def prune_image(self, image: str) -> bool:
        """Remove `image` when it is a job image of this builder's repository, no build record refers
        to it and no container uses it; whether it was removed. Any other image (a base image, one
        another tool made) is left alone."""
        with self._lock:
            if any(data["image"] == image for data in self._records()):
                return False
            if not self._is_ours(image):
                return False
            removed = self.engine.remove_image(image)
        if removed:
            logger.info("removed image %s: nothing uses it any more", image[:12])
        return removed

    def _is_ours(self, image: str) -> bool:
        labels = self.engine.image_labels(image)
        if labels is None or LABEL_FINGERPRINT not in labels:
            return False
        prefix = self.repository.rstrip("/") + "/"
        return all(tag.startswith(prefix) for tag in self.engine.image_tags(image))

    def _records(self) -> list[dict[str, str]]:
        found = []
        for directory in self.records_dir.iterdir():
            data = self._read_record(directory)
            if data is not None:
                found.append(data)
        return found

    def _read_record(self, directory: Path) -> dict[str, str] | None:
        try:
            data = json.loads((directory / RECORD_FILE).read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or not isinstance(data.get("image"), str):
            return None
        return {str(k): str(v) for k, v in data.items()}

    def _record(self, request: BuildRequest, image: str, tag: str, fingerprint: str) -> Path:
        for part in (request.job_name, request.job_version):
            if not part or "/" in part or part in (".", ".."):
                raise BuildError(f"{part!r} cannot name a build record")
        with self._lock:
            record = self.records_dir / (
                f"{request.job_name}-{request.job_version}-{time.strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(4)}"
            )
            record.mkdir()
            (record / RECORD_FILE).write_text(
                json.dumps(
                    {
                        "image": image,
                        "tag": tag,
                        "fingerprint": fingerprint,
                        "job": request.job_name,
                        "version": request.job_version,
                    }
                )
            )
        return record

    def _push(self, tag: str, log: Log) -> None:
        log(f"pushing {tag}")
        auth_dir = Path(tempfile.mkdtemp(prefix="auth-", dir=self._tmp)) if self._credentials else None
        try:
            if auth_dir is not None and self._credentials is not None:
                user, password = self._credentials
                registry = tag.split("/", 1)[0]
                token = base64.b64encode(f"{user}:{password}".encode()).decode()
                config = auth_dir / "config.json"
                config.touch(mode=0o600)
                config.write_text(json.dumps({"auths": {registry: {"auth": token}}}))
            try:
                self.engine.push(tag, str(auth_dir) if auth_dir else None)
            except EngineError as e:
                raise BuildError(f"pushing {tag} failed: {e}") from None
        finally:
            if auth_dir is not None:
                shutil.rmtree(auth_dir, ignore_errors=True)
        log(f"pushed {tag}")
