"""pub.async_store.AsyncCallStore over the lifecycle's HTTP API (lifecycle/api/async_calls.py), for
a gateway in a process of its own: tasks live in the lifecycle's database either way, so they
survive a gateway restart and every gateway replica sees them.

Failures to reach the lifecycle, or answers it should not give, raise StoreUnavailable (the
gateway answers 503 naming the problem). A task deleted meanwhile is None (`get`) or nothing to do
(the updates), as with the embedded store.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

import httpx

from .async_store import AsyncTask, NewAsyncTask, StoreUnavailable, TaskStatus
from .lifecycle_client import API_PREFIX, AUTH_HEADER

PREFIX = "/gateway/async-calls"


class LifecycleAsyncStore:
    def __init__(
        self,
        base_url: str,
        gateway_token: str,
        *,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """`base_url` as for pub.lifecycle_client.LifecycleRegistry."""
        base = base_url.rstrip("/")
        self.api_url = base if base.endswith("/api/v1") else base + API_PREFIX
        self._settings: dict[str, Any] = {
            "base_url": self.api_url,
            "headers": {AUTH_HEADER: gateway_token, "User-Agent": "trackside-gateway"},
            "timeout": timeout,
            "transport": transport,
            "trust_env": False,
        }
        self._client: httpx.AsyncClient | None = None

    def __repr__(self) -> str:
        return f"LifecycleAsyncStore({self.api_url!r})"

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # ---- AsyncCallStore ------------------------------------------------------------------------

    async def create(self, task: NewAsyncTask) -> tuple[AsyncTask, bool]:
        body = {
            "job_name": task.job_name,
            "job_version": task.job_version,
            "method": task.method,
            "path": task.path,
            "request_headers": task.request_headers,
            "request_body": _b64(task.request_body),
            "subject_key": task.subject_key,
            "idempotency_key": task.idempotency_key,
        }
        answer = await self._call("POST", PREFIX, body, "store an async task", ok=(200, 201))
        try:
            return _task(answer["task"]), bool(answer["created"])
        except (KeyError, TypeError) as error:
            raise StoreUnavailable(
                f"the lifecycle's answer to a new async task is malformed ({error!r})"
            ) from None

    async def get(self, task_id: str, *, bodies: bool = True) -> AsyncTask | None:
        params = {"bodies": "true" if bodies else "false"}
        answer = await self._call("GET", f"{PREFIX}/{task_id}", None, "read an async task", params=params)
        return None if answer is None else _task(answer)

    async def mark_running(self, task_id: str) -> None:
        await self._call("POST", f"{PREFIX}/{task_id}/running", None, "mark an async task running")

    async def mark_retried(self, task_id: str, note: str) -> None:
        await self._call("POST", f"{PREFIX}/{task_id}/retried", {"note": note}, "mark an async task retried")

    async def finish(
        self, task_id: str, *, status_code: int, headers: dict[str, str], body: bytes, expires_at: datetime
    ) -> None:
        result = {
            "status_code": status_code,
            "headers": headers,
            "body": _b64(body),
            "expires_at": expires_at.isoformat(),
        }
        await self._call("POST", f"{PREFIX}/{task_id}/finish", result, "store an async result")

    async def fail(self, task_id: str, error: str, *, expires_at: datetime) -> None:
        failure = {"error": error, "expires_at": expires_at.isoformat()}
        await self._call("POST", f"{PREFIX}/{task_id}/fail", failure, "store an async failure")

    async def unfinished(self) -> list[AsyncTask]:
        answer = await self._call(
            "GET", PREFIX, None, "list unfinished async tasks", params={"state": "unfinished"}
        )
        if not isinstance(answer, list):
            raise StoreUnavailable("the lifecycle's list of unfinished async tasks is malformed")
        return [_task(item) for item in answer]

    async def delete_expired(self, now: datetime) -> int:
        answer = await self._call(
            "POST", f"{PREFIX}/expired", {"now": now.isoformat()}, "delete expired tasks"
        )
        try:
            return int(answer["deleted"])
        except (KeyError, TypeError, ValueError):
            raise StoreUnavailable("the lifecycle's answer to deleting expired tasks is malformed") from None

    # ---- HTTP ----------------------------------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        what: str,
        *,
        params: dict[str, str] | None = None,
        ok: tuple[int, ...] = (200, 204),
    ) -> Any:
        """The answer's JSON (None for 204 and for a task the lifecycle does not have)."""
        if self._client is None:
            self._client = httpx.AsyncClient(**self._settings)
        try:
            response = await self._client.request(method, path, json=body, params=params)
        except httpx.TimeoutException:
            raise StoreUnavailable(
                f"cannot {what}: the lifecycle at {self.api_url} did not answer in time"
            ) from None
        except httpx.HTTPError as error:
            raise StoreUnavailable(
                f"cannot {what}: the lifecycle at {self.api_url} is unreachable ({error.__class__.__name__})"
            ) from None
        if response.status_code in ok:
            return None if response.status_code == 204 else _json(response, what)
        answer = _json(response, what, strict=False)
        message = answer.get("error") if isinstance(answer, dict) else None
        if response.status_code == 404 and isinstance(answer, dict) and "task" in answer:
            return None  # no such task (not a lifecycle without this API: that 404 names no task)
        raise StoreUnavailable(
            f"cannot {what}: the lifecycle answered {response.status_code}"
            + (f" ({message})" if message else f" {response.reason_phrase}")
        )


def _json(response: httpx.Response, what: str, strict: bool = True) -> Any:
    try:
        return response.json()
    except ValueError:
        if strict:
            raise StoreUnavailable(f"cannot {what}: the lifecycle's answer is not JSON") from None
        return None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _time(value: Any) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _task(item: Any) -> AsyncTask:
    try:
        created_at = datetime.fromisoformat(item["created_at"])
        result_body = item.get("result_body")
        return AsyncTask(
            id=str(item["id"]),
            job_name=str(item["job_name"]),
            job_version=str(item["job_version"]),
            method=str(item["method"]),
            path=str(item["path"]),
            status=TaskStatus(item["status"]),
            subject_key=item.get("subject_key"),
            idempotency_key=item.get("idempotency_key"),
            created_at=created_at,
            started_at=_time(item.get("started_at")),
            finished_at=_time(item.get("finished_at")),
            expires_at=_time(item.get("expires_at")),
            retried=bool(item.get("retried")),
            error=item.get("error"),
            request_headers=dict(item.get("request_headers") or {}),
            request_body=base64.b64decode(item.get("request_body") or ""),
            result_status=item.get("result_status"),
            result_headers=dict(item.get("result_headers") or {}),
            result_body=None if result_body is None else base64.b64decode(result_body),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise StoreUnavailable(f"the lifecycle's async task is malformed ({error!r})") from None
