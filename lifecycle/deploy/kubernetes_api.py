"""The few Kubernetes API calls the runner and the Kaniko builder make, on plain dicts.

Built on the official client's ApiClient (its kubeconfig and in-cluster loading, TLS, tokens and
token refresh) but not on its generated models: the objects come from `kubernetes_objects` and
`kaniko_job` as dicts, and answers are read as the API's JSON, so what is sent is exactly what
those modules build and what a test's stand-in API server records.

Every failure is a `KubernetesError` with the HTTP status (0 when the API server could not be
reached) and the API's own reason and message.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import quote

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

Obj = dict[str, Any]

IN_CLUSTER_ENV = "KUBERNETES_SERVICE_HOST"
_REQUEST_TIMEOUT = (10.0, 60.0)  # connect, read


@dataclass(frozen=True)
class Kind:
    kind: str
    api_version: str
    plural: str

    def collection(self, namespace: str) -> str:
        prefix = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        return f"{prefix}/namespaces/{quote(namespace, safe='')}/{self.plural}"

    def item(self, namespace: str, name: str) -> str:
        return f"{self.collection(namespace)}/{quote(name, safe='')}"


KINDS = {
    kind.kind: kind
    for kind in (
        Kind("Secret", "v1", "secrets"),
        Kind("Service", "v1", "services"),
        Kind("Pod", "v1", "pods"),
        Kind("Deployment", "apps/v1", "deployments"),
        Kind("Job", "batch/v1", "jobs"),
        Kind("NetworkPolicy", "networking.k8s.io/v1", "networkpolicies"),
        Kind("PodDisruptionBudget", "policy/v1", "poddisruptionbudgets"),
    )
}


class KubernetesError(Exception):
    """An API call failed: `status` is the HTTP status (0: no answer), `reason` Kubernetes' reason
    (AlreadyExists, NotFound, Forbidden, Conflict, Expired, Invalid ...)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message

    def __str__(self) -> str:
        if self.status == 0:
            return self.message
        return f"{self.reason or 'error'} ({self.status}): {self.message}"


def kind_of(obj: Obj) -> Kind:
    try:
        return KINDS[obj["kind"]]
    except KeyError:
        raise ValueError(f"no API call is made for objects of kind {obj.get('kind')!r}") from None


def missing_configuration(kubeconfig: str | None) -> str | None:
    """None when a configuration can be loaded, else why not (for the target's description)."""
    if kubeconfig is None and os.environ.get(IN_CLUSTER_ENV):
        return None
    path = kubeconfig or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or "~/.kube/config"
    if os.path.isfile(os.path.expanduser(path)):
        return None
    return (
        f"no Kubernetes configuration: not running in a cluster and no kubeconfig at {path} "
        "(set TRACKSIDE_KUBECONFIG)"
    )


class KubernetesApi:
    def __init__(self, client: ApiClient) -> None:
        self.client = client
        self.host = str(client.configuration.host)

    @classmethod
    def connect(cls, kubeconfig: str | None = None, context: str | None = None) -> KubernetesApi:
        """In the cluster (a service account's token) unless a kubeconfig is named or no cluster
        is around, else the kubeconfig (its current context, or `context`)."""
        from kubernetes import client, config

        configuration = client.Configuration()
        try:
            if kubeconfig is None and os.environ.get(IN_CLUSTER_ENV):
                config.load_incluster_config(client_configuration=configuration)
            else:
                config.load_kube_config(
                    config_file=kubeconfig, context=context, client_configuration=configuration
                )
        except config.ConfigException as e:
            raise KubernetesError(
                0, "Configuration", f"cannot load the Kubernetes configuration: {e}"
            ) from None
        return cls(client.ApiClient(configuration))

    def close(self) -> None:
        self.client.close()

    # ---- objects ---------------------------------------------------------------------------------

    def create(self, obj: Obj) -> Obj:
        kind = kind_of(obj)
        return self._json("POST", kind.collection(obj["metadata"]["namespace"]), body=obj)

    def get(self, kind: str, namespace: str, name: str) -> Obj | None:
        try:
            return self._json("GET", KINDS[kind].item(namespace, name))
        except KubernetesError as e:
            if e.status == 404:
                return None
            raise

    def merge_patch(self, kind: str, namespace: str, name: str, patch: Obj) -> Obj:
        return self._json(
            "PATCH",
            KINDS[kind].item(namespace, name),
            body=patch,
            content_type="application/merge-patch+json",
        )

    def delete(self, kind: str, namespace: str, name: str, propagation: str = "Background") -> bool:
        """Whether there was something to delete."""
        try:
            self._json(
                "DELETE",
                KINDS[kind].item(namespace, name),
                body={"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": propagation},
            )
        except KubernetesError as e:
            if e.status == 404:
                return False
            raise
        return True

    def list_objects(self, kind: str, namespace: str, selector: str | None = None) -> tuple[list[Obj], str]:
        """The objects and the list's resourceVersion (to watch from)."""
        query = {"labelSelector": selector} if selector else {}
        answer = self._json("GET", KINDS[kind].collection(namespace), query=query)
        items = answer.get("items") or []
        for item in items:  # list items carry no kind
            item.setdefault("kind", kind)
            item.setdefault("apiVersion", KINDS[kind].api_version)
        return items, str(answer.get("metadata", {}).get("resourceVersion", ""))

    def watch(
        self, kind: str, namespace: str, selector: str | None, resource_version: str, timeout: int = 60
    ) -> Iterator[tuple[str, Obj]]:
        """(event type, object) as they happen, until the server ends the watch (`timeout`
        seconds). An ERROR event (e.g. 410 Expired: list again) is raised as a KubernetesError."""
        query = {
            "watch": "true",
            "resourceVersion": resource_version,
            "timeoutSeconds": str(timeout),
            "allowWatchBookmarks": "false",
        }
        if selector:
            query["labelSelector"] = selector
        response = self._open("GET", KINDS[kind].collection(namespace), query, read_timeout=timeout + 15)
        try:
            for line in _lines(response):
                if not line.strip():
                    continue
                event = json.loads(line)
                if event.get("type") == "ERROR":
                    status = event.get("object") or {}
                    raise KubernetesError(
                        int(status.get("code") or 500),
                        str(status.get("reason", "")),
                        str(status.get("message", "")),
                    )
                yield str(event.get("type")), cast(Obj, event.get("object") or {})
        finally:
            response.release_conn()

    # ---- pod logs --------------------------------------------------------------------------------

    def pod_log(
        self, namespace: str, pod: str, container: str, tail: int | None = None, previous: bool = False
    ) -> list[str]:
        query = {"container": container, "timestamps": "true"}
        if tail is not None:
            query["tailLines"] = str(tail)
        if previous:
            query["previous"] = "true"
        response = self._open("GET", KINDS["Pod"].item(namespace, pod) + "/log", query)
        try:
            return response.data.decode("utf-8", errors="replace").splitlines()
        finally:
            response.release_conn()

    def follow_pod_log(
        self, namespace: str, pod: str, container: str, tail: int | None = None
    ) -> FollowedLog:
        """The container's log as it is written (lines with their timestamps); ends with the
        container, or when closed (from any thread)."""
        query = {"container": container, "follow": "true", "timestamps": "true"}
        if tail is not None:
            query["tailLines"] = str(tail)
        return FollowedLog(
            self._open("GET", KINDS["Pod"].item(namespace, pod) + "/log", query, read_timeout=None)
        )

    # ---- HTTP ------------------------------------------------------------------------------------

    def _json(
        self,
        method: str,
        path: str,
        query: dict[str, str] | None = None,
        body: Obj | None = None,
        content_type: str = "application/json",
    ) -> Obj:
        response = self._open(method, path, query or {}, body=body, content_type=content_type)
        try:
            data = response.data
        finally:
            response.release_conn()
        try:
            answer = json.loads(data) if data else {}
        except ValueError:
            raise KubernetesError(
                response.status, "BadResponse", f"{method} {path}: the answer is not JSON"
            ) from None
        return cast(Obj, answer)

    def _open(
        self,
        method: str,
        path: str,
        query: dict[str, str],
        body: Obj | None = None,
        content_type: str = "application/json",
        read_timeout: float | None = _REQUEST_TIMEOUT[1],
    ) -> Any:
        """The urllib3 response (body not read yet) of a call that succeeded."""
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        headers = {"Accept": "application/json", "Content-Type": content_type}
        _, url, headers, _, _ = self.client.param_serialize(
            method,
            path,
            query_params=list(query.items()),
            header_params=headers,
            auth_settings=["BearerToken"],
        )
        try:
            answer = self.client.call_api(
                method,
                url,
                header_params=headers,
                body=body,
                _request_timeout=(_REQUEST_TIMEOUT[0], read_timeout),
            )
        except (HTTPError, OSError, ApiException) as e:
            raise KubernetesError(
                0, "Unreachable", f"the Kubernetes API at {self.host} cannot be reached: {e}"
            ) from None
        response = answer.response
        if response.status >= 400:
            data = response.data
            response.release_conn()
            raise _error(response.status, data, f"{method} {path}")
        return response


def strip_timestamp(line: str) -> str:
    """A pod log line asked for with timestamps=true, without its timestamp."""
    stamp, space, text = line.partition(" ")
    return text if space and stamp[:1].isdigit() and "T" in stamp else line


class FollowedLog:
    def __init__(self, response: Any) -> None:
        self._response = response

    def __iter__(self) -> Iterator[str]:
        try:
            yield from _lines(self._response)
        except Exception:
            if not self._response.closed:
                raise
        finally:
            self._response.release_conn()

    def close(self) -> None:
        shutdown = getattr(self._response, "shutdown", None)  # urllib3 >= 2.3: wakes a blocked read
        if shutdown is not None:
            with contextlib.suppress(RuntimeError):  # the stream ended: already back in the pool
                shutdown()
        self._response.close()


def _lines(response: Any) -> Iterator[str]:
    pending = b""
    for chunk in response.stream(amt=None, decode_content=True):
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            yield line.decode("utf-8", errors="replace")
    if pending:
        yield pending.decode("utf-8", errors="replace")


def _error(status: int, data: bytes, request: str) -> KubernetesError:
    try:
        answer = json.loads(data)
    except ValueError:
        answer = None
    if isinstance(answer, dict) and answer.get("kind") == "Status":
        return KubernetesError(status, str(answer.get("reason", "")), str(answer.get("message", "")))
    text = data.decode("utf-8", errors="replace").strip()[:300]
    return KubernetesError(status, "", f"{request}: {text or 'no detail'}")
