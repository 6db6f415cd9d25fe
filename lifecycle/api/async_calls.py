"""The gateway's async-call records over HTTP, for a gateway in a process of its own
(pub.lifecycle_async_store; `trackside up` uses lifecycle.async_call_records in-process).

Under `/gateway/async-calls`, for the gateway's credential only (lifecycle/api/gateway.py):

- `POST /gateway/async-calls` {job_name, job_version, method, path, request_headers,
  request_body (base64), subject_key, idempotency_key} → 201 {task, created}; `created` is false
  when a live task of the same subject and idempotency key was returned instead (200).
- `GET /gateway/async-calls/{id}?bodies=true|false` → the task, 404 when there is none.
- `GET /gateway/async-calls?state=unfinished` → pending and running tasks, oldest first, no bodies.
- `POST /gateway/async-calls/{id}/running`, `.../retried` {note}, `.../finish` {status_code,
  headers, body (base64), expires_at}, `.../fail` {error, expires_at} → 204 (also for a task
  deleted meanwhile: there is nothing left to update).
- `POST /gateway/async-calls/expired` {now} → {deleted}: deletes tasks whose results expired.

A task is pub.async_store.AsyncTask as JSON: bodies base64, times ISO 8601 in UTC.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from lifecycle.async_call_records import AsyncCallRecords, failure, retried, subject_key
from lifecycle.store.models import NAME_LENGTH, VERSION_LENGTH, AsyncCall

from .dependencies import control_plane
from .errors import NotFound
from .gateway import Gateway

router = APIRouter(tags=["gateway"])
PREFIX = "/gateway/async-calls"


def task_json(call: AsyncCall, bodies: bool) -> dict[str, Any]:
    finished = call.finished_at is not None
    return {
        "id": call.id,
        "job_name": call.job_name,
        "job_version": call.job_version,
        "method": call.method,
        "path": call.path,
        "status": call.status.value,
        "subject_key": subject_key(call.subject_type, call.subject_id),
        "idempotency_key": call.idempotency_key,
        "created_at": _time(call.created_at),
        "started_at": _time(call.started_at),
        "finished_at": _time(call.finished_at),
        "expires_at": _time(call.expires_at),
        "retried": retried(call),
        "error": failure(call),
        "request_headers": dict(call.request_headers) if bodies else {},
        "request_body": _b64(bytes(call.request_body)) if bodies else "",
        "result_status": call.result_status,
        "result_headers": dict(call.result_headers or {}) if bodies and finished else {},
        "result_body": _b64(bytes(call.result_body)) if bodies and call.result_body is not None else None,
    }


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _bytes(value: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("must be base64") from None


def records(request: Request) -> AsyncCallRecords[dict[str, Any]]:
    found: AsyncCallRecords[dict[str, Any]] | None = getattr(request.app.state, "async_call_records", None)
    if found is None:
        found = AsyncCallRecords(control_plane(request).db, task_json)
        request.app.state.async_call_records = found
    return found


class NewTaskBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    job_name: str = Field(min_length=1, max_length=NAME_LENGTH)
    job_version: str = Field(min_length=1, max_length=VERSION_LENGTH)
    method: str = Field(min_length=1, max_length=16)
    path: str = Field(min_length=1)
    request_headers: dict[str, str]
    request_body: bytes  # base64 in JSON
    subject_key: str | None = Field(default=None, pattern=r"^(user|esc|family):\d+$")
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200)

    @field_validator("request_body", mode="before")
    @classmethod
    def _decode(cls, value: object) -> bytes:
        if not isinstance(value, str):
            raise ValueError("must be a base64 string")
        return _bytes(value)


class NewTaskOut(BaseModel):
    task: dict[str, Any]
    created: bool


@router.post(PREFIX, status_code=201)
def create_task(body: NewTaskBody, request: Request, response: Response, _: Gateway) -> NewTaskOut:
    task, created = records(request).create(
        job_name=body.job_name,
        job_version=body.job_version,
        method=body.method,
        path=body.path,
        request_headers=body.request_headers,
        request_body=body.request_body,
        subject_key=body.subject_key,
        idempotency_key=body.idempotency_key,
    )
    if not created:
        response.status_code = 200
    return NewTaskOut(task=task, created=created)


@router.get(PREFIX)
def list_tasks(
    request: Request, _: Gateway, state: Annotated[Literal["unfinished"], Query()]
) -> list[dict[str, Any]]:
    return records(request).unfinished()


class ExpiredBody(BaseModel):
    now: AwareDatetime


@router.post(f"{PREFIX}/expired")
def delete_expired(body: ExpiredBody, request: Request, _: Gateway) -> dict[str, int]:
    return {"deleted": records(request).delete_expired(body.now)}


@router.get(PREFIX + "/{task_id}")
def get_task(task_id: str, request: Request, _: Gateway, bodies: bool = True) -> dict[str, Any]:
    task = records(request).get(task_id, bodies)
    if task is None:
        raise NotFound(f"async task {task_id} not found", task=task_id)
    return task


@router.post(PREFIX + "/{task_id}/running", status_code=204)
def mark_running(task_id: str, request: Request, _: Gateway) -> None:
    records(request).mark_running(task_id)


class RetriedBody(BaseModel):
    note: str = Field(min_length=1)


@router.post(PREFIX + "/{task_id}/retried", status_code=204)
def mark_retried(task_id: str, body: RetriedBody, request: Request, _: Gateway) -> None:
    records(request).mark_retried(task_id, body.note)


class FinishBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status_code: int = Field(ge=100, le=599)
    headers: dict[str, str]
    body: bytes  # base64 in JSON
    expires_at: AwareDatetime

    @field_validator("body", mode="before")
    @classmethod
    def _decode(cls, value: object) -> bytes:
        if not isinstance(value, str):
            raise ValueError("must be a base64 string")
        return _bytes(value)


@router.post(PREFIX + "/{task_id}/finish", status_code=204)
def finish(task_id: str, body: FinishBody, request: Request, _: Gateway) -> None:
    records(request).finish(
        task_id,
        status_code=body.status_code,
        headers=body.headers,
        body=body.body,
        expires_at=body.expires_at,
    )


class FailBody(BaseModel):
    error: str = Field(min_length=1)
    expires_at: AwareDatetime


@router.post(PREFIX + "/{task_id}/fail", status_code=204)
def fail(task_id: str, body: FailBody, request: Request, _: Gateway) -> None:
    records(request).fail(task_id, body.error, expires_at=body.expires_at)
