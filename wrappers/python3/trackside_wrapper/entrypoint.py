"""Loading the job: importing the entrypoint file by path and finding and building its class."""

from __future__ import annotations

import importlib.util
import inspect
import os
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any


class EntrypointError(Exception):
    """The job cannot be loaded; the message says what the author must change."""

    def __init__(self, message: str, culprit: Any = None) -> None:
        super().__init__(message)
        self.location = source_location(culprit) if culprit is not None else ""


def source_location(obj: Any) -> str:
    """ "file:line" where a function or class of the job is defined ("" when unknown)."""
    try:
        target = inspect.unwrap(getattr(obj, "__func__", obj))
        return f"{inspect.getsourcefile(target)}:{inspect.getsourcelines(target)[1]}"
    except (TypeError, OSError):
        return ""


@dataclass(frozen=True)
class LoadFailure:
    """Why the job failed to import or initialise, as /live reports it."""

    error: str
    type: str
    location: str  # "file:line" of the failing line, preferring the job's own code
    traceback: str


def import_entrypoint_module(job_dir: Path, entrypoint_path: str) -> ModuleType:
    path = (job_dir / entrypoint_path).resolve()
    if not path.is_file():
        raise EntrypointError(
            f"jobtype_extra.entrypoint_path: file {entrypoint_path!r} not found in {job_dir}"
        )
    root = str(job_dir.resolve())
    if root not in sys.path:
        sys.path.insert(0, root)
    module_name = path.stem if path.stem.isidentifier() else "job_entrypoint"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise EntrypointError(f"cannot import {path}: not a Python source file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def find_entrypoint_class(module: ModuleType, class_name: str | None) -> type:
    if class_name:
        cls = getattr(module, class_name, None)
        if not inspect.isclass(cls):
            raise EntrypointError(
                f"jobtype_extra.entrypoint_class: no class {class_name!r} in {module.__file__}"
            )
        return cls
    candidates = [
        obj
        for obj in vars(module).values()
        if inspect.isclass(obj)
        and obj.__module__ == module.__name__
        and callable(getattr(obj, "perform", None))
    ]
    if not candidates:
        raise EntrypointError(f"no class with a perform() method in {module.__file__}")
    if len(candidates) > 1:
        names = ", ".join(sorted(c.__name__ for c in candidates))
        raise EntrypointError(
            f"several classes with a perform() method in {module.__file__} ({names}); "
            "set jobtype_extra.entrypoint_class"
        )
    return candidates[0]


def check_callable_signature(method: Any, label: str) -> None:
    """Job methods are called with keyword arguments from a JSON object: *args cannot be filled."""
    try:
        signature = inspect.signature(method)
    except (TypeError, ValueError) as e:
        raise EntrypointError(f"{label}: cannot read its signature ({e})") from e
    for param in signature.parameters.values():
        if param.kind is inspect.Parameter.VAR_POSITIONAL:
            raise EntrypointError(
                f"{label}: *{param.name} is not supported, arguments come from a JSON object by name; "
                "use named parameters or **kwargs",
                culprit=method,
            )
        if param.kind is inspect.Parameter.POSITIONAL_ONLY:
            raise EntrypointError(
                f"{label}: positional-only parameter {param.name!r} cannot be passed by name from JSON",
                culprit=method,
            )


def describe_failure(exc: BaseException, job_dir: Path) -> LoadFailure:
    tb: TracebackType | None = exc.__traceback__
    frames = traceback.extract_tb(tb)
    location = ""
    if isinstance(exc, EntrypointError) and exc.location:
        location = exc.location
    elif isinstance(exc, SyntaxError) and exc.filename:
        location = f"{exc.filename}:{exc.lineno}"
    else:
        root = str(job_dir.resolve()) + os.sep
        own = [f for f in frames if f.filename.startswith(root)]
        chosen = own[-1] if own else (frames[-1] if frames else None)
        if chosen is not None:
            location = f"{chosen.filename}:{chosen.lineno}"
    message = str(exc) or exc.__class__.__name__
    return LoadFailure(
        error=message,
        type=exc.__class__.__name__,
        location=location,
        traceback="".join(traceback.format_exception(exc)),
    )
