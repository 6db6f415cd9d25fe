"""Kubernetes runner: each generation of a job version is a Deployment (with its Secret and, for
several replicas, a PodDisruptionBudget); each version has a Service and a NetworkPolicy (see
`kubernetes_objects`). Replicas are the Deployment's pods; the gateway calls their pod IPs (the
lifecycle hands them out from `serving`), so it balances across them itself.

What runs is read from two informers (Deployments and pods of the jobs namespace that carry the
lifecycle's labels), never from the API on each call. Job objects outlive the lifecycle: a
lifecycle that stops leaves its jobs serving, and the next one adopts them (`start` of a
generation that exists changes nothing) and deletes the generations nothing claims
(`remove_unclaimed`).

Replica errors come from the pods' status (`kubernetes_pod_status`), with the last lines of a
crashed container's log, and from the job's own `/live` when it answers that the entrypoint
failed to load (the lifecycle may reach job pods, like the gateway).
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx

from .kubernetes_api import FollowedLog, KubernetesApi, KubernetesError, Obj, strip_timestamp
from .kubernetes_informer import Informer
from .kubernetes_objects import (
    ANNOTATION_VERSION,
    COMPONENT_JOB,
    LABEL_COMPONENT,
    LABEL_GENERATION,
    LABEL_MANAGED_BY,
    LABEL_NAME,
    LABEL_VERSION,
    MANAGED_BY,
    JobSettings,
    JobVersion,
    generation_object_name,
    job_objects,
    label_value,
    version_object_name,
)
from .kubernetes_pod_status import JOB_CONTAINER, PodView, deployment_problem, pod_view
from .runner import ReplicaState, RunnerError, RunSpec

logger = logging.getLogger("trackside.lifecycle.kubernetes")

STUCK_FAILURES = 3  # what a stuck replica reports as its failures (pipeline and monitor give up)
_PER_VERSION = ("Service", "NetworkPolicy")
_PER_GENERATION = ("Deployment", "Secret", "PodDisruptionBudget")
_LOG_TAIL = 5
_LIVE_CHECK_INTERVAL = 2.0


@dataclass(frozen=True)
class KubernetesRunSettings:
    jobs: JobSettings
    job_pub_url: str  # PUB_URL as the jobs see it: the gateway's Service in the cluster
    scheduling_timeout: float = 120.0  # unschedulable this long: the deploy fails with the reason
    watch_timeout: int = 60


def _selector(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def _labels(obj: Obj) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("labels") or {})


class KubernetesRunner:
    def __init__(self, api: KubernetesApi, settings: KubernetesRunSettings) -> None:
        self.api = api
        self.settings = settings
        self.namespace = settings.jobs.namespace
        selector = _selector({LABEL_MANAGED_BY: MANAGED_BY, LABEL_COMPONENT: COMPONENT_JOB})
        self._deployments = Informer(api, "Deployment", self.namespace, selector, settings.watch_timeout)
        self._pods = Informer(api, "Pod", self.namespace, selector, settings.watch_timeout)
        # generations this lifecycle started or adopted: (name, version, deployment timestamp)
        self._claimed: set[tuple[str, str, int]] = set()
        self._lock = threading.Lock()
        self._crash_logs: dict[tuple[str, int], str] = {}  # (pod uid, restarts) -> last lines
        self._live_errors: dict[str, tuple[float, str | None]] = {}  # pod uid -> (checked at, error)
        self._http = httpx.Client(timeout=1.0)
        self._deployments.start()
        self._pods.start()

    def wait_synced(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        return self._deployments.wait_synced(timeout) and self._pods.wait_synced(
            max(0.0, deadline - time.monotonic())
        )

    # ---- Runner: starting and stopping -------------------------------------------------------------

    def start(self, spec: RunSpec) -> None:
        env = {**spec.env, "PUB_URL": self.settings.job_pub_url}
        try:
            job = JobVersion.from_run_spec(dataclasses.replace(spec, env=env))
            objects = job_objects(job, self.settings.jobs)
        except ValueError as e:
            raise RunnerError(str(e)) from None
        with self._lock:  # claimed before any call: remove_unclaimed never takes a half-started one
            self._claimed.add((spec.job_name, spec.job_version, spec.deployment_timestamp))
        for obj in objects.all():
            kind, name = obj["kind"], obj["metadata"]["name"]
            created: Obj | None
            try:
                created = self.api.create(obj)
            except KubernetesError as e:
                if e.status != 409:
                    raise RunnerError(self._refused("create", kind, name, e)) from None
                created = self._adopt(obj)
            if kind == "Deployment" and created is not None:
                self._deployments.upsert(created)

    def _adopt(self, obj: Obj) -> Obj | None:
        """An object of this name exists: a generation's are this generation's (left by an earlier
        lifecycle); a version's are brought up to date."""
        kind, name = obj["kind"], obj["metadata"]["name"]
        try:
            if kind in _PER_VERSION:
                patch = {"metadata": {"labels": obj["metadata"]["labels"]}, "spec": obj["spec"]}
                return self.api.merge_patch(kind, self.namespace, name, patch)
            if kind == "Deployment":
                return self.api.get(kind, self.namespace, name)
        except KubernetesError as e:
            raise RunnerError(
                self._refused("update" if kind in _PER_VERSION else "read", kind, name, e)
            ) from None
        return None

    def _refused(self, verb: str, kind: str, name: str, error: KubernetesError) -> str:
        text = f"cannot {verb} the {kind} {name} in namespace {self.namespace}: {error}"
        if error.status == 403:
            text += (
                " (the lifecycle's Role in that namespace must allow it: kustomize/base/lifecycle-rbac.yaml)"
            )
        return text

    def retire_others(self, name: str, version: str, keep: int) -> None:
        for timestamp in self.generations(name, version):
            if timestamp != keep:
                self._delete_generation(name, version, timestamp)

    def stop_generation(self, name: str, version: str, deployment_timestamp: int) -> None:
        self._delete_generation(name, version, deployment_timestamp)
        if not self.generations(name, version):
            self._delete_version_objects(name, version)

    def stop(self, name: str, version: str) -> None:
        timestamps = set(self.generations(name, version))
        selector = _selector(
            {LABEL_NAME: name, LABEL_VERSION: label_value(version), LABEL_MANAGED_BY: MANAGED_BY}
        )
        for kind in _PER_GENERATION:  # also what no informer shows: a Secret whose Deployment failed
            try:
                items, _ = self.api.list_objects(kind, self.namespace, selector)
            except KubernetesError as e:
                raise RunnerError(self._refused("list", kind, f"of {name} {version}", e)) from None
            for item in items:
                try:
                    timestamps.add(int(_labels(item).get(LABEL_GENERATION, "")))
                except ValueError:
                    continue
        for timestamp in sorted(timestamps):
            self._delete_generation(name, version, timestamp)
        self._delete_version_objects(name, version)

    def _delete_generation(self, name: str, version: str, timestamp: int) -> None:
        object_name = generation_object_name(name, version, timestamp)
        for kind in _PER_GENERATION:
            self._delete(kind, object_name)
        self._deployments.forget(object_name)
        with self._lock:
            self._claimed.discard((name, version, timestamp))

    def _delete_version_objects(self, name: str, version: str) -> None:
        for kind in _PER_VERSION:
            self._delete(kind, version_object_name(name, version))

    def _delete(self, kind: str, name: str) -> None:
        try:
            self.api.delete(kind, self.namespace, name)
        except KubernetesError as e:
            raise RunnerError(self._refused("delete", kind, name, e)) from None

    def remove_unclaimed(self, timeout: float = 30.0) -> int:
        """Delete the generations no job of this lifecycle claims (deleted while the lifecycle was
        down, or replaced by a redeploy it did not finish); how many."""
        if not self.wait_synced(timeout):
            logger.warning("the job Deployments could not be listed: nothing unclaimed was removed")
            return 0
        removed = 0
        for deployment in self._deployments.items():
            key = self._key(deployment)
            with self._lock:
                claimed = key in self._claimed
            if key is None or claimed:
                continue
            name, version, timestamp = key
            logger.info("removing %s %s (deployment %d): no job claims it", name, version, timestamp)
            self.stop_generation(name, version, timestamp)
            removed += 1
        return removed

    def shutdown(self) -> None:
        """Jobs keep running in the cluster; only watching them stops."""
        self._deployments.stop()
        self._pods.stop()
        self._http.close()

    # ---- Runner: what runs ------------------------------------------------------------------------

    @staticmethod
    def _key(deployment: Obj) -> tuple[str, str, int] | None:
        metadata = deployment.get("metadata") or {}
        labels = metadata.get("labels") or {}
        version = (metadata.get("annotations") or {}).get(ANNOTATION_VERSION)
        try:
            timestamp = int(labels.get(LABEL_GENERATION, ""))
        except ValueError:
            return None
        if not labels.get(LABEL_NAME) or not version or metadata.get("deletionTimestamp"):
            return None
        return labels[LABEL_NAME], version, timestamp

    def _generation_deployments(self, name: str, version: str) -> dict[int, Obj]:
        found: dict[int, Obj] = {}
        for deployment in self._deployments.items():
            key = self._key(deployment)
            if key is not None and key[:2] == (name, version):
                found[key[2]] = deployment
        return found

    def versions(self) -> list[tuple[str, str]]:
        keys = (self._key(d) for d in self._deployments.items())
        return list(dict.fromkeys(key[:2] for key in keys if key is not None))

    def generations(self, name: str, version: str) -> list[int]:
        return sorted(self._generation_deployments(name, version))

    def _pod_views(self, name: str, version: str) -> list[tuple[PodView, Obj]]:
        wanted = {LABEL_NAME: name, LABEL_VERSION: label_value(version)}
        now = time.time()
        views = []
        for pod in self._pods.items():
            labels = _labels(pod)
            if all(labels.get(k) == v for k, v in wanted.items()):
                views.append((pod_view(pod, now, self.settings.scheduling_timeout), pod))
        return sorted(views, key=lambda item: item[0].name)

    def replicas(
        self, name: str, version: str, deployment_timestamp: int | None = None
    ) -> list[ReplicaState]:
        deployments = self._generation_deployments(name, version)
        if not deployments:
            if not (self._deployments.synced and self._pods.synced) and self._claims(name, version):
                # not read from the cluster yet: unknown, which is not "nothing runs"
                why = self._deployments.error or self._pods.error or "the Kubernetes API has not answered yet"
                return [ReplicaState(address="", ready=False, restarts=0, last_error=why)]
            return []
        timestamp = max(deployments) if deployment_timestamp is None else deployment_timestamp
        deployment = deployments.get(timestamp)
        if deployment is None:
            return []
        states = [
            self._state(view)
            for view, _ in self._pod_views(name, version)
            if view.deployment_timestamp == timestamp and not view.terminating
        ]
        wanted = int((deployment.get("spec") or {}).get("replicas") or 1)
        if len(states) < wanted:  # pods not made (yet): the Deployment may say why
            problem = deployment_problem(deployment)
            missing = ReplicaState(
                address="",
                ready=False,
                restarts=0,
                last_error=problem,
                deployment_timestamp=timestamp,
                failures=STUCK_FAILURES if problem else 0,
            )
            states += [missing] * (wanted - len(states))
        return states

    def _claims(self, name: str, version: str) -> bool:
        with self._lock:
            return any(claimed[:2] == (name, version) for claimed in self._claimed)

    def serving(self, name: str, version: str) -> list[ReplicaState]:
        by_generation: dict[int, list[ReplicaState]] = {}
        for view, _ in self._pod_views(name, version):
            if view.ready and view.address:
                by_generation.setdefault(view.deployment_timestamp, []).append(self._state(view))
        running = set(self.generations(name, version))
        for timestamp in sorted(by_generation, reverse=True):
            if timestamp in running:
                return by_generation[timestamp]
        return []

    def _state(self, view: PodView) -> ReplicaState:
        error, failures = view.error, (0 if view.ready else view.restarts)
        if view.stuck:
            failures = max(failures, STUCK_FAILURES)
        elif not view.ready and view.restarts and view.crashed:
            tail = self._crash_log(view)
            if tail:
                error = f"{error or 'the job exited'}; its last output: {tail}"
        if not view.ready and view.running and view.address:
            load_error = self._load_error(view)
            if load_error:
                error, failures = load_error, max(failures, STUCK_FAILURES)
        return ReplicaState(
            address=view.address,
            ready=view.ready,
            restarts=view.restarts,
            last_error=error,
            deployment_timestamp=view.deployment_timestamp,
            failures=failures,
        )

    def _crash_log(self, view: PodView) -> str:
        key = (view.uid, view.restarts)
        with self._lock:
            if key in self._crash_logs:
                return self._crash_logs[key]
        try:
            lines = self.api.pod_log(
                self.namespace, view.name, JOB_CONTAINER, tail=_LOG_TAIL * 4, previous=True
            )
        except KubernetesError:
            lines = []
        text = " | ".join([strip_timestamp(line).strip() for line in lines if line.strip()][-_LOG_TAIL:])[
            -600:
        ]
        with self._lock:
            self._crash_logs[key] = text
        return text

    def _load_error(self, view: PodView) -> str | None:
        """The job's /live answers 500 with the error when its entrypoint failed to load: restarting
        the container will not mend the code."""
        now = time.monotonic()
        with self._lock:
            checked = self._live_errors.get(view.uid)
        if checked is not None and now - checked[0] < _LIVE_CHECK_INTERVAL:
            return checked[1]
        error: str | None = None
        try:
            response = self._http.get(f"{view.address}/live")
            if response.status_code == 500:
                body = response.json()
                if isinstance(body, dict) and body.get("error"):
                    error = f"the job failed to load: {body['error']}"
        except (httpx.HTTPError, ValueError):
            error = None
        with self._lock:
            self._live_errors[view.uid] = (now, error)
        return error

    # ---- Runner: logs -----------------------------------------------------------------------------

    def logs(self, name: str, version: str, tail: int) -> list[str]:
        stamped: list[tuple[str, str]] = []
        for view, _ in self._pod_views(name, version):
            try:
                lines = self.api.pod_log(self.namespace, view.name, JOB_CONTAINER, tail=tail)
            except KubernetesError:
                continue  # not started yet, or gone
            for line in lines:
                stamp, _, text = line.partition(" ")
                stamped.append((stamp, f"[{view.name}] {text}"))
        stamped.sort(key=lambda item: item[0])
        return [text for _, text in stamped[-tail:]] if tail > 0 else []

    def follow(self, name: str, version: str) -> Iterator[str]:
        """New lines of every pod of the version (pods that start later too), until the version
        has no Deployment left."""
        lines: queue.Queue[str] = queue.Queue()
        streams: dict[str, _PodLogStream] = {}
        first = True
        try:
            while True:
                for view, _ in self._pod_views(name, version):
                    if view.name not in streams and (view.running or view.restarts):
                        stream = _PodLogStream(
                            self.api, self.namespace, view.name, lines, tail=0 if first else None
                        )
                        streams[view.name] = stream
                        stream.start()
                first = False
                if not self._generation_deployments(name, version):
                    break
                try:
                    yield lines.get(timeout=0.5)
                except queue.Empty:
                    continue
                while not lines.empty():
                    yield lines.get_nowait()
            while not lines.empty():
                yield lines.get_nowait()
        finally:
            for stream in streams.values():
                stream.close()


class _PodLogStream:
    """One pod's log, followed in a thread into a shared queue."""

    def __init__(
        self, api: KubernetesApi, namespace: str, pod: str, lines: queue.Queue[str], tail: int | None
    ) -> None:
        self._api = api
        self._namespace = namespace
        self._pod = pod
        self._lines = lines
        self._tail = tail
        self._closed = threading.Event()
        self._stream: FollowedLog | None = None

    def start(self) -> None:
        threading.Thread(target=self._run, name=f"log-{self._pod}", daemon=True).start()

    def _run(self) -> None:
        try:
            self._stream = self._api.follow_pod_log(
                self._namespace, self._pod, JOB_CONTAINER, tail=self._tail
            )
            if self._closed.is_set():
                self._stream.close()
            for line in self._stream:
                if self._closed.is_set():
                    break
                self._lines.put(f"[{self._pod}] {strip_timestamp(line)}")
        except KubernetesError as e:
            logger.debug("following the log of %s: %s", self._pod, e)
        except Exception:
            if not self._closed.is_set():
                logger.exception("following the log of %s failed", self._pod)

    def close(self) -> None:
        self._closed.set()
        if self._stream is not None:
            self._stream.close()
