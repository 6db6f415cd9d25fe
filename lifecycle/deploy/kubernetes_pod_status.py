"""What a job pod's (and its Deployment's) status says about a replica, in words a user can act
on: Kubernetes' reason (CrashLoopBackOff, OOMKilled, ImagePullBackOff, FailedScheduling ...)
followed by what it means here.

`stuck` marks a replica that cannot start without outside help (its image cannot be pulled, its
container cannot be created, no node has fitted it for a while): waiting longer changes nothing,
so the deploy fails at once instead of after its init timeout.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from trackside_wrapper.job_image import CONTAINER_PORT

from .kubernetes_objects import LABEL_GENERATION

Obj = dict[str, Any]

JOB_CONTAINER = "job"
IMAGE_PULL_REASONS = frozenset(
    {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull", "RegistryUnavailable"}
)
CREATE_REASONS = frozenset({"CreateContainerConfigError", "CreateContainerError", "RunContainerError"})


@dataclass(frozen=True)
class PodView:
    name: str
    uid: str
    deployment_timestamp: int
    address: str  # "" until the pod has an IP
    ready: bool
    terminating: bool
    restarts: int
    running: bool  # the job's container runs now
    crashed: bool  # its last run ended in failure (the previous container's log tells why)
    error: str | None
    stuck: bool


def timestamp_of(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _condition(status: Obj, kind: str) -> Obj | None:
    return next((c for c in status.get("conditions") or [] if c.get("type") == kind), None)


def describe_termination(terminated: Obj) -> str:
    reason = terminated.get("reason") or "Error"
    code = terminated.get("exitCode")
    if reason == "OOMKilled":
        return "OOMKilled: the job used more memory than its limit (resources.memory_max)"
    return f"{reason}: the job's process exited with code {code}"


def pod_view(pod: Obj, now: float, scheduling_timeout: float) -> PodView:
    metadata = pod.get("metadata") or {}
    status = pod.get("status") or {}
    statuses = status.get("containerStatuses") or []
    container = next((c for c in statuses if c.get("name") == JOB_CONTAINER), statuses[0] if statuses else {})
    state = container.get("state") or {}
    last = (container.get("lastState") or {}).get("terminated")
    waiting = state.get("waiting") or {}
    restarts = int(container.get("restartCount") or 0)
    terminating = bool(metadata.get("deletionTimestamp"))
    ready_condition = _condition(status, "Ready")
    ready = (
        status.get("phase") == "Running"
        and not terminating
        and ready_condition is not None
        and ready_condition.get("status") == "True"
    )
    ip = status.get("podIP")
    error: str | None = None
    stuck = False
    reason = waiting.get("reason")
    scheduled = _condition(status, "PodScheduled")
    if reason in IMAGE_PULL_REASONS:
        error = f"{reason}: {waiting.get('message') or 'the image ' + str(container.get('image')) + ' cannot be pulled'}"
        stuck = reason != "ErrImagePull" or restarts > 0  # the first failed pull may be retried
    elif reason in CREATE_REASONS:
        error = f"{reason}: {waiting.get('message') or 'the container cannot be created'}"
        stuck = True
    elif reason == "CrashLoopBackOff":
        error = "CrashLoopBackOff: " + (describe_termination(last) if last else "the job keeps exiting")
    elif last and not ready and last.get("reason") == "OOMKilled":
        error = describe_termination(last)
    elif status.get("phase") == "Failed":
        error = f"{status.get('reason') or 'Failed'}: {status.get('message') or 'the pod failed'}"
        stuck = True
    elif (
        scheduled is not None
        and scheduled.get("status") == "False"
        and scheduled.get("reason") == "Unschedulable"
    ):
        error = f"FailedScheduling: {scheduled.get('message') or 'no node can run the pod'}"
        created = timestamp_of(metadata.get("creationTimestamp")) or now
        since = timestamp_of(scheduled.get("lastTransitionTime")) or created
        stuck = now - min(created, since) >= scheduling_timeout
    labels = metadata.get("labels") or {}
    try:
        generation = int(labels.get(LABEL_GENERATION, "0"))
    except ValueError:
        generation = 0
    return PodView(
        name=str(metadata.get("name", "")),
        uid=str(metadata.get("uid", "")),
        deployment_timestamp=generation,
        address=f"http://{ip}:{CONTAINER_PORT}" if ip else "",
        ready=ready,
        terminating=terminating,
        restarts=restarts,
        running="running" in state,
        crashed=last is not None and (last.get("exitCode") != 0 or last.get("reason") == "OOMKilled"),
        error=error,
        stuck=stuck,
    )


def deployment_problem(deployment: Obj) -> str | None:
    """Why the Deployment cannot make its pods (a quota, an admission policy ...), if it says so."""
    for condition in (deployment.get("status") or {}).get("conditions") or []:
        kind, state = condition.get("type"), condition.get("status")
        if kind == "ReplicaFailure" and state == "True":
            return f"{condition.get('reason') or 'ReplicaFailure'}: {condition.get('message') or 'pods cannot be created'}"
        if (
            kind == "Progressing"
            and state == "False"
            and condition.get("reason") == "ProgressDeadlineExceeded"
        ):
            return f"ProgressDeadlineExceeded: {condition.get('message') or 'the rollout made no progress'}"
    return None
