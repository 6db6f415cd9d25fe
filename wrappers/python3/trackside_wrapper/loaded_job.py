"""A job after loading: its instance and every endpoint it exposes, resolved once at start."""

from __future__ import annotations

import inspect
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import static_files
from .arguments import ArgumentBinder
from .asgi import ASGIApp
from .entrypoint import (
    EntrypointError,
    check_callable_signature,
    find_entrypoint_class,
    import_entrypoint_module,
)
from .manifest import JobSettings
from .openapi import CallableEndpoint
from .static_files import StaticTarget
from .webview import as_asgi

logger = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
WEBVIEW_PATH = API_PREFIX + "/webview"
RESERVED_PATHS = {API_PREFIX + "/perform", API_PREFIX + "/parameters"}


@dataclass
class LoadedJob:
    instance: Any
    endpoints: dict[str, CallableEndpoint]
    static_files: dict[str, StaticTarget] = field(default_factory=dict)
    static_dirs: list[StaticTarget] = field(default_factory=list)
    webview: ASGIApp | None = None
    webview_static_dir: str | None = None
    metrics_source: Callable[[], Any] | None = None
    init_seconds: float = 0.0

    @property
    def perform(self) -> CallableEndpoint:
        return self.endpoints[API_PREFIX + "/perform"]


def _short(path: str) -> str:
    return "/" + path.strip("/")


def _examples(instance: Any) -> dict[str, Any]:
    examples: dict[str, Any] = {}
    many = getattr(instance, "docs_input_examples", None)
    if callable(many):
        for path, example in (many() or {}).items():
            short = _short(str(path))
            if short.startswith(API_PREFIX + "/"):
                short = short[len(API_PREFIX) :]
            examples[short] = example
    one = getattr(instance, "docs_input_example", None)
    if callable(one) and "/perform" not in examples:
        example = one()
        if example is not None:
            examples["/perform"] = example
    return examples


def _callable_endpoint(path: str, short: str, method: Any, example: Any) -> CallableEndpoint:
    label = f"{short} ({getattr(method, '__qualname__', method)})"
    check_callable_signature(method, label)
    return CallableEndpoint(
        path=path,
        short_path=short,
        method=method,
        binder=ArgumentBinder(method, label),
        is_async=inspect.iscoroutinefunction(method),
        summary="Call the job" if short == "/perform" else f"Call auxiliary endpoint {short}",
        example=example,
    )


def load(job_dir: Path, settings: JobSettings) -> LoadedJob:
    started = time.perf_counter()
    module = import_entrypoint_module(job_dir, settings.entrypoint_path)
    cls = find_entrypoint_class(module, settings.entrypoint_class)
    # refuse unusable signatures before paying for __init__
    check_callable_signature(getattr(cls, "perform"), f"{cls.__name__}.perform")  # noqa: B009
    instance = cls()

    examples = _examples(instance)
    endpoints = {
        API_PREFIX + "/perform": _callable_endpoint(
            API_PREFIX + "/perform", "/perform", instance.perform, examples.get("/perform")
        ),
    }
    aux = getattr(instance, "auxiliary_endpoints", None)
    if callable(aux):
        for raw_path, method in (aux() or {}).items():
            short = _short(str(raw_path))
            path = API_PREFIX + short
            if path in RESERVED_PATHS or path == WEBVIEW_PATH or path.startswith(WEBVIEW_PATH + "/"):
                raise EntrypointError(
                    f"auxiliary_endpoints(): {short!r} collides with a built-in endpoint", culprit=aux
                )
            if not callable(method):
                raise EntrypointError(f"auxiliary_endpoints()[{short!r}] is not callable", culprit=aux)
            endpoints[path] = _callable_endpoint(path, short, method, examples.get(short))
            logger.info("auxiliary endpoint %s -> %s", path, getattr(method, "__qualname__", method))

    job = LoadedJob(instance=instance, endpoints=endpoints)

    static = getattr(instance, "static_endpoints", None)
    if callable(static):
        try:
            targets = static_files.declare(job_dir, dict(static() or {}))
        except ValueError as e:
            raise EntrypointError(str(e), culprit=static) from e
        for target in targets:
            path = API_PREFIX + target.path
            if path in endpoints or path in RESERVED_PATHS:
                raise EntrypointError(
                    f"static_endpoints(): {target.path!r} collides with another endpoint", culprit=static
                )
            if target.is_dir:
                job.static_dirs.append(StaticTarget(path, target.target, True, target.mimetype))
            else:
                job.static_files[path] = StaticTarget(path, target.target, False, target.mimetype)
            logger.info("static endpoint %s -> %s", path, os.path.relpath(target.target, job_dir.resolve()))
        job.static_dirs.sort(key=lambda t: len(t.path), reverse=True)

    webview = getattr(instance, "webview_app", None)
    if callable(webview):
        base_url = f"/pub/job/{settings.name}/{settings.version}{WEBVIEW_PATH}"
        app = webview(base_url)
        if app is not None:
            job.webview = as_asgi(app)
            static_dir = os.path.realpath(job_dir / "static")
            if os.path.isdir(static_dir):
                job.webview_static_dir = static_dir
            logger.info("webview mounted at %s", WEBVIEW_PATH)

    metrics = getattr(instance, "metrics", None)
    if callable(metrics):
        job.metrics_source = metrics
    job.init_seconds = time.perf_counter() - started
    return job
