"""Kaniko builder: a job image built in the cluster by a Kubernetes Job (`kaniko_job`) and pushed
to the registry the job pods pull from.

The lifecycle stages the build context as the container builder does (the python3 Dockerfile
template of `trackside_wrapper.job_image`), then the build pod gets it:
  * for a git deploy over HTTPS, by cloning the same commit (credentials in the build's Secret),
    the rest of the context (Dockerfile, wrapper wheel ...) from a second Secret;
  * otherwise as a tar the lifecycle hands out once, to the holder of a single-use token
    (`context_handout`), at TRACKSIDE_K8S_LIFECYCLE_URL.
The pod's log is streamed into the deployment's build log (secret values masked). A failure names
Kubernetes' reason (ImagePullBackOff of the Kaniko image, OOMKilled, Error with the log's last
lines, DeadlineExceeded). The Job and its Secrets are deleted once the build ended, whatever
the outcome.

No local files outlive a build: the BuildResult's `code_dir` holds the pushed image's reference
(`REPOSITORY/NAME:TAG@sha256:DIGEST`), which is all `restore` needs after a lifecycle restart.
"""

from __future__ import annotations

import logging
import re
import shutil
import tarfile
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from trackside_wrapper.job_image import (
    RecipeError,
    image_tag,
    stage_context,
)

from .builder import BuildError, BuildRequest, BuildResult
from .context_handout import ContextHandout
from .fingerprint import FINGERPRINT_RE
from .image_recipe import IMAGE_PYTHON, image_recipe
from .kaniko_job import (
    COMPONENT_BUILD,
    LABEL_BUILD,
    GitContext,
    KanikoBuild,
    KanikoSettings,
    UploadedContext,
    kaniko_objects,
)
from .kubernetes_api import FollowedLog, KubernetesApi, KubernetesError, Obj, strip_timestamp
from .kubernetes_objects import LABEL_COMPONENT, LABEL_MANAGED_BY, MANAGED_BY, label_value
from .kubernetes_pod_status import IMAGE_PULL_REASONS, timestamp_of
from .streamed_command import Redactor

Log = Callable[[str], None]
logger = logging.getLogger("trackside.lifecycle.kaniko")

INFRASTRUCTURE = "kubernetes"
ENVIRONMENT_PREFIX = "kaniko:"
CONTEXT_PATH = "/lifecycle/api/v1/build-contexts/"
_DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")
_CACHE_HIT = "Using caching version of cmd"
_CACHE_MISS = "No cached layer found for cmd"
_CONTAINERS = ("context", "kaniko")


@dataclass(frozen=True)
class KanikoBuilderSettings:
    kaniko: KanikoSettings
    base_image: str  # `{python_version}` placeholder allowed (ContainerConfig.base_image)
    lifecycle_url: str  # how build pods reach the lifecycle (the uploaded context)
    build_env_key: bytes  # HMAC key for the build environment's digest (stable across restarts)
    git_context: bool = True  # clone git deploys in the pod (False: always hand out the context)
    ca_bundle: Path | None = None  # CA certificates pip trusts during builds
    poll_interval: float = 1.0
    scheduling_timeout: float = 300.0  # a build pod no node takes for this long fails the build


class _BuildFailed(Exception):
    pass


class KanikoBuilder:
    infrastructure = INFRASTRUCTURE

    def __init__(
        self, api: KubernetesApi, settings: KanikoBuilderSettings, handout: ContextHandout, tmp_dir: Path
    ) -> None:
        self.api = api
        self.settings = settings
        self.handout = handout
        self.tmp_dir = tmp_dir

    @staticmethod
    def owns(environment_id: str) -> bool:
        return environment_id.startswith(ENVIRONMENT_PREFIX) and bool(
            FINGERPRINT_RE.fullmatch(environment_id.removeprefix(ENVIRONMENT_PREFIX))
        )

    def restore(self, environment_id: str, code_dir: Path) -> BuildResult | None:
        if not self.owns(environment_id):
            return None
        return BuildResult(
            environment_id=environment_id,
            python=IMAGE_PYTHON,
            code_dir=code_dir,
            cached=True,
            infrastructure=INFRASTRUCTURE,
            image=str(code_dir),
        )

    def release(self, result: BuildResult) -> None:
        """Nothing is kept here; images stay in the registry (its own retention removes them)."""

    def build(self, request: BuildRequest, log: Log) -> BuildResult:
        secrets_to_mask = list(request.build_env.values())
        if request.git_credentials:
            secrets_to_mask.append(request.git_credentials[1])
        scrub = Redactor(secrets_to_mask)
        recipe = image_recipe(request, self.settings.base_image, self.settings.build_env_key, log)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        workspace = Path(tempfile.mkdtemp(prefix="kaniko-", dir=self.tmp_dir))
        offer_id: str | None = None
        try:
            try:
                staged = stage_context(recipe, request.source_dir, workspace / "context")
            except RecipeError as e:
                raise BuildError(str(e)) from None
            tag = image_tag(
                self.settings.kaniko.repository, request.job_name, request.job_version, staged.fingerprint
            )
            build_id = uuid.uuid4().hex[:16]
            if self._clone_in_pod(request):
                assert request.git_remote is not None and request.git_commit is not None
                username, password = request.git_credentials or (None, None)
                context: GitContext | UploadedContext = GitContext(
                    remote=request.git_remote,
                    commit=request.git_commit,
                    directory=request.git_directory or ".",
                    username=username,
                    password=password,
                    scaffold=_scaffold(staged.directory),
                )
                log(f"the build pod clones {request.git_remote} at {request.git_commit[:12]}")
            else:
                archive = workspace / "context.tar"
                with tarfile.open(archive, "w") as tar:
                    tar.add(staged.directory, arcname=".")
                offer = self.handout.offer(archive)
                offer_id = offer.id
                url = self.settings.lifecycle_url.rstrip("/") + CONTEXT_PATH + offer.id
                context = UploadedContext(url=url, token=offer.token)
                log(f"the build pod downloads the build context ({archive.stat().st_size} bytes) from {url}")
            build = KanikoBuild(
                build_id=build_id,
                job_name=request.job_name,
                job_version=request.job_version,
                destination=tag,
                context=context,
                build_env=dict(request.build_env),
                ca_bundle=self.settings.ca_bundle.read_text() if self.settings.ca_bundle else None,
            )
            try:
                objects = kaniko_objects(build, self.settings.kaniko)
            except ValueError as e:
                raise BuildError(str(e)) from None
            image, cached = self._run(objects.all(), build, tag, log, scrub)
        finally:
            if offer_id is not None:
                self.handout.withdraw(offer_id)
            shutil.rmtree(workspace, ignore_errors=True)
        return BuildResult(
            environment_id=ENVIRONMENT_PREFIX + staged.fingerprint,
            python=IMAGE_PYTHON,
            code_dir=Path(image),
            cached=cached,
            infrastructure=INFRASTRUCTURE,
            image=image,
        )

    def _clone_in_pod(self, request: BuildRequest) -> bool:
        remote = request.git_remote or ""
        return (
            self.settings.git_context
            and bool(request.git_commit)
            and remote.startswith(("https://", "http://"))
        )

    # ---- the Job ---------------------------------------------------------------------------------

    def _run(
        self, objects: list[Obj], build: KanikoBuild, tag: str, log: Log, scrub: Redactor
    ) -> tuple[str, bool]:
        namespace = self.settings.kaniko.namespace
        job_name = next(o["metadata"]["name"] for o in objects if o["kind"] == "Job")
        created: list[Obj] = []
        watcher = _BuildWatch(self.api, namespace, build, job_name, log, scrub, self.settings)
        try:
            for obj in objects:
                try:
                    answer = self.api.create(obj)
                except KubernetesError as e:
                    hint = " (the lifecycle's Role must allow it: kustomize/base/lifecycle-rbac.yaml)"
                    raise BuildError(
                        f"cannot create the build's {obj['kind']} {obj['metadata']['name']} in namespace "
                        f"{namespace}: {e}{hint if e.status == 403 else ''}"
                    ) from None
                created.append(obj)
                if obj["kind"] == "Job":
                    self._owned_by(answer, [o for o in created if o["kind"] == "Secret"], log)
            log(f"building image {tag} with Kaniko: Job {job_name} in namespace {namespace}")
            started = time.monotonic()
            try:
                digest = watcher.wait()
            except _BuildFailed as e:
                raise BuildError(scrub(str(e))) from None
            image = f"{tag}@{digest}" if digest else tag
            log(f"image {image} built and pushed in {time.monotonic() - started:.1f} s")
            return image, watcher.cached
        finally:
            watcher.close()
            for obj in reversed(created):
                try:
                    self.api.delete(obj["kind"], namespace, obj["metadata"]["name"])
                except KubernetesError as e:
                    log(f"could not delete the build's {obj['kind']} {obj['metadata']['name']}: {e}")
            if created:
                log("the build's Job and Secrets are deleted")

    def _owned_by(self, job: Obj, secrets: list[Obj], log: Log) -> None:
        """The Secrets go with the Job (its TTL removes it after the build) even when this
        lifecycle dies before it deletes them."""
        owner = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "name": job["metadata"]["name"],
            "uid": job["metadata"].get("uid", ""),
            "blockOwnerDeletion": False,
        }
        if not owner["uid"]:
            return
        for secret in secrets:
            name = secret["metadata"]["name"]
            try:
                self.api.merge_patch(
                    "Secret",
                    secret["metadata"]["namespace"],
                    name,
                    {"metadata": {"ownerReferences": [owner]}},
                )
            except KubernetesError as e:
                log(f"the build's Secret {name} could not be tied to its Job: {e}")

    def remove_leftovers(self) -> int:
        """Delete the build Jobs and Secrets a lifecycle that died during a build left (its
        deployments were marked failed on start); how many objects."""
        namespace = self.settings.kaniko.namespace
        selector = f"{LABEL_COMPONENT}={COMPONENT_BUILD},{LABEL_MANAGED_BY}={MANAGED_BY}"
        removed = 0
        try:
            for kind in ("Job", "Secret"):
                items, _ = self.api.list_objects(kind, namespace, selector)
                for item in items:
                    removed += self.api.delete(kind, namespace, item["metadata"]["name"])
        except KubernetesError as e:
            logger.warning("builds left by an earlier lifecycle could not be removed: %s", e)
        if removed:
            logger.info("removed %d build object(s) an interrupted lifecycle left", removed)
        return removed


class _BuildWatch:
    """Follows one build Job to its end: its pod's containers' logs into the build log, its outcome."""

    def __init__(
        self,
        api: KubernetesApi,
        namespace: str,
        build: KanikoBuild,
        job_name: str,
        log: Log,
        scrub: Redactor,
        settings: KanikoBuilderSettings,
    ) -> None:
        self.api = api
        self.namespace = namespace
        self.job_name = job_name
        self.selector = f"{LABEL_BUILD}={label_value(build.build_id)}"
        self.log = log
        self.scrub = scrub
        self.settings = settings
        self.tail: dict[str, list[str]] = {name: [] for name in _CONTAINERS}
        self.cache_hits = 0
        self.cache_misses = 0
        self._threads: dict[str, threading.Thread] = {}
        self._streams: dict[str, FollowedLog] = {}
        self._lock = threading.Lock()
        self._closed = threading.Event()

    @property
    def cached(self) -> bool:
        return self.cache_hits > 0 and self.cache_misses == 0

    def wait(self) -> str | None:
        """The pushed image's digest (None when Kaniko did not report one); raises _BuildFailed."""
        kaniko = self.settings.kaniko
        deadline = time.monotonic() + kaniko.active_deadline_seconds + 120
        pod: Obj | None = None
        while True:
            try:
                job = self.api.get("Job", self.namespace, self.job_name)
                pods, _ = self.api.list_objects("Pod", self.namespace, self.selector)
            except KubernetesError as e:
                if e.status in (0, 429, 500, 503) and time.monotonic() < deadline:
                    self.log(f"the Kubernetes API did not answer ({e}); trying again")
                    time.sleep(self.settings.poll_interval * 5)
                    continue
                raise _BuildFailed(f"the build's status cannot be read: {e}") from None
            if job is None:
                raise _BuildFailed(f"the build Job {self.job_name} was deleted before it ended")
            pod = max(pods, key=lambda p: p["metadata"].get("creationTimestamp", ""), default=None)
            if pod is not None:
                self._stream_logs(pod)
                self._check_pod(pod)
            conditions = {c.get("type"): c for c in (job.get("status") or {}).get("conditions") or []}
            if _true(conditions.get("Complete")) or _true(conditions.get("SuccessCriteriaMet")):
                self._finish_streams(pod)
                return self._digest(pod)
            if _true(conditions.get("Failed")):
                self._finish_streams(pod)
                raise _BuildFailed(self._failure(conditions["Failed"], pod))
            if time.monotonic() > deadline:
                raise _BuildFailed(
                    f"the build Job {self.job_name} did not end within {kaniko.active_deadline_seconds} s"
                )
            time.sleep(self.settings.poll_interval)

    def _check_pod(self, pod: Obj) -> None:
        status = pod.get("status") or {}
        for container in [
            *(status.get("initContainerStatuses") or []),
            *(status.get("containerStatuses") or []),
        ]:
            waiting = (container.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in IMAGE_PULL_REASONS - {"ErrImagePull"}:
                raise _BuildFailed(
                    f"the build pod cannot start: {waiting['reason']}: "
                    f"{waiting.get('message') or 'cannot pull ' + str(container.get('image'))}"
                )
            if waiting.get("reason") in ("CreateContainerConfigError", "CreateContainerError"):
                raise _BuildFailed(
                    f"the build pod cannot start: {waiting['reason']}: {waiting.get('message', '')}"
                )
        for condition in status.get("conditions") or []:
            if (
                condition.get("type") == "PodScheduled"
                and condition.get("status") == "False"
                and condition.get("reason") == "Unschedulable"
            ):
                since = timestamp_of(condition.get("lastTransitionTime")) or timestamp_of(
                    pod["metadata"].get("creationTimestamp")
                )
                if since is not None and time.time() - since >= self.settings.scheduling_timeout:
                    raise _BuildFailed(
                        f"FailedScheduling: no node can run the build pod: {condition.get('message')}"
                    )

    def _failure(self, condition: Obj, pod: Obj | None) -> str:
        reason = condition.get("reason") or "Failed"
        if reason == "DeadlineExceeded":
            return (
                f"the image build took longer than {self.settings.kaniko.active_deadline_seconds} s "
                "and was stopped (DeadlineExceeded)"
            )
        status = (pod or {}).get("status") or {}
        for name, statuses in (
            ("context", status.get("initContainerStatuses") or []),
            ("kaniko", status.get("containerStatuses") or []),
        ):
            for container in statuses:
                terminated = (container.get("state") or {}).get("terminated") or {}
                if not terminated or terminated.get("exitCode") == 0:
                    continue
                why = terminated.get("reason") or "Error"
                if why == "OOMKilled":
                    return (
                        f"the image build ran out of memory (OOMKilled in the {name} container; its limit is "
                        f"{self.settings.kaniko.memory_limit}: raise TRACKSIDE_KANIKO_MEMORY_LIMIT)"
                    )
                what = "fetching the build context" if name == "context" else "building the image"
                return f"{what} failed ({why}, exit code {terminated.get('exitCode')}): {self._tail(name, terminated)}"
        return f"the build Job failed ({reason}): {condition.get('message') or 'no detail'}"

    def _tail(self, container: str, terminated: Obj) -> str:
        lines = self.tail.get(container) or []
        if not lines:  # not streamed: the termination message holds the log's end (FallbackToLogsOnError)
            lines = str(terminated.get("message") or "").splitlines()
        wanted = [line.strip() for line in lines if line.strip()]
        errors = [line for line in wanted if re.search(r"(?i)\b(error|fatal)\b", line)]
        return self.scrub(" | ".join((errors or wanted)[-4:])[-800:]) or "no output"

    def _digest(self, pod: Obj | None) -> str | None:
        for container in ((pod or {}).get("status") or {}).get("containerStatuses") or []:
            if container.get("name") == "kaniko":
                message = str(((container.get("state") or {}).get("terminated") or {}).get("message") or "")
                found = _DIGEST_RE.search(message)
                return found.group(0) if found else None
        return None

    # ---- logs ------------------------------------------------------------------------------------

    def _stream_logs(self, pod: Obj) -> None:
        status = pod.get("status") or {}
        states = {
            c.get("name"): c.get("state") or {}
            for c in [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]
        }
        for name in _CONTAINERS:
            if name in self._threads:
                continue
            state = states.get(name) or {}
            if "running" not in state and "terminated" not in state:
                return  # in order: kaniko's lines after the context's
            if name == "kaniko" and self._threads["context"].is_alive():
                return
            thread = threading.Thread(
                target=self._follow,
                args=(pod["metadata"]["name"], name),
                name=f"build-log-{name}",
                daemon=True,
            )
            self._threads[name] = thread
            thread.start()

    def _follow(self, pod: str, container: str) -> None:
        try:
            stream = self.api.follow_pod_log(self.namespace, pod, container)
            with self._lock:
                self._streams[container] = stream
            if self._closed.is_set():
                stream.close()
            for line in stream:
                text = self.scrub(strip_timestamp(line))
                if _CACHE_HIT in text:
                    self.cache_hits += 1
                elif _CACHE_MISS in text:
                    self.cache_misses += 1
                self.tail[container] = [*self.tail[container][-40:], text]
                self.log(text)
        except KubernetesError as e:
            self.log(f"the {container} container's log cannot be read: {e}")
        except Exception:
            if not self._closed.is_set():
                raise

    def _finish_streams(self, pod: Obj | None) -> None:
        """A finished pod's logs, in container order: the streams end by themselves; a container
        that started and ended between two looks is read now, whole."""
        for name in _CONTAINERS:
            if pod is not None:
                self._stream_logs(pod)
            thread = self._threads.get(name)
            if thread is not None:
                thread.join(10)

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            streams = list(self._streams.values())
        for stream in streams:
            stream.close()


def _true(condition: Obj | None) -> bool:
    return condition is not None and condition.get("status") == "True"


def _scaffold(context: Path) -> dict[str, bytes]:
    """Every file of the staged context outside code/ (the pod gets code/ from git)."""
    files: dict[str, bytes] = {}
    for path in sorted(context.rglob("*")):
        relative = path.relative_to(context).as_posix()
        if path.is_file() and not relative.startswith("code/") and relative != "code":
            files[relative] = path.read_bytes()
    return files
