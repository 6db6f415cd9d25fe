"""`GET /metrics`: Prometheus text, without auth (like the jobs' own /metrics)."""

from __future__ import annotations

import threading

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from lifecycle.lifecycle_metrics import LifecycleMetrics

from .dependencies import control_plane

router = APIRouter(tags=["probes"])

_lock = threading.Lock()


def metrics_of(request: Request) -> LifecycleMetrics:
    """The app's metrics, made on the first scrape (one per app, so one per control plane)."""
    state = request.app.state
    with _lock:
        metrics: LifecycleMetrics | None = getattr(state, "lifecycle_metrics", None)
        if metrics is None:
            metrics = LifecycleMetrics(control_plane(request).db)
            state.lifecycle_metrics = metrics
        return metrics


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    return Response(metrics_of(request).render(), media_type=CONTENT_TYPE_LATEST)
