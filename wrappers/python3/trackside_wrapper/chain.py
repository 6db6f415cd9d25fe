"""Calling other jobs through the gateway: `call_job` (sync) and `call_job_async`."""

from __future__ import annotations

import os
import threading
from typing import Any

from .logs import tracing_id_var


class JobCallError(Exception):
    """A chained call answered with a non-2xx status (or could not be made)."""

    def __init__(self, message: str, status: int | None = None, body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


_client_lock = threading.Lock()
_sync_client: Any = None


def _request_parts(job_name: str, path: str, version: str) -> tuple[str, dict[str, str]]:
    pub_url = os.environ.get("PUB_URL")
    if not pub_url:
        raise JobCallError("PUB_URL is not set: chain calls go through the Trackside gateway")
    url = f"{pub_url.rstrip('/')}/job/{job_name}/{version}/{path.lstrip('/')}"
    headers = {"Content-Type": "application/json"}
    token = os.environ.get("AUTH_TOKEN")
    if token:
        headers["X-Racetrack-Auth"] = token
    tracing_id = tracing_id_var.get()
    if tracing_id:
        headers["X-Request-Tracing-Id"] = tracing_id
    return url, headers


def _result(job_name: str, url: str, response: Any) -> Any:
    try:
        body = response.json()
    except ValueError:
        body = response.text
    if not 200 <= response.status_code < 300:
        detail = body.get("error") if isinstance(body, dict) and "error" in body else body
        raise JobCallError(
            f"calling job {job_name} ({url}) failed with {response.status_code}: {detail}",
            response.status_code,
            body,
        )
    return body


def call_job(
    job_name: str,
    path: str = "/api/v1/perform",
    payload: Any = None,
    version: str = "latest",
    method: str = "POST",
    timeout: float | None = 60.0,
) -> Any:
    """Call another job through the gateway with this job's token; returns the decoded JSON answer."""
    import httpx

    global _sync_client
    url, headers = _request_parts(job_name, path, version)
    with _client_lock:
        if _sync_client is None:
            _sync_client = httpx.Client()
    try:
        response = _sync_client.request(method, url, json=payload, headers=headers, timeout=timeout)
    except httpx.HTTPError as e:
        raise JobCallError(f"calling job {job_name} ({url}) failed: {e}") from e
    return _result(job_name, url, response)


async def call_job_async(
    job_name: str,
    path: str = "/api/v1/perform",
    payload: Any = None,
    version: str = "latest",
    method: str = "POST",
    timeout: float | None = 60.0,
) -> Any:
    import httpx

    url, headers = _request_parts(job_name, path, version)
    try:
        async with httpx.AsyncClient() as client:
            response = await client.request(method, url, json=payload, headers=headers, timeout=timeout)
    except httpx.HTTPError as e:
        raise JobCallError(f"calling job {job_name} ({url}) failed: {e}") from e
    return _result(job_name, url, response)
