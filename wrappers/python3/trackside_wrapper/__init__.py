"""Trackside's python3 job runtime.

`python -m trackside_wrapper run JOB_DIR` serves the job class found in JOB_DIR over HTTP.
Job code may import `call_job` / `call_job_async` from here to call other jobs through the gateway;
those are loaded lazily so that importing this package costs nothing at request time.
"""

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .chain import JobCallError, call_job, call_job_async

__all__ = ["JobCallError", "__version__", "call_job", "call_job_async"]


def __getattr__(name: str) -> Any:
    if name in ("call_job", "call_job_async", "JobCallError"):
        from . import chain

        return getattr(chain, name)
    raise AttributeError(f"module 'trackside_wrapper' has no attribute {name!r}")
