"""Logging to stdout with the request's tracing id (and caller), plain or JSON lines."""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from contextvars import ContextVar
from random import getrandbits

import msgspec

tracing_id_var: ContextVar[str] = ContextVar("tracing_id", default="")
caller_name_var: ContextVar[str] = ContextVar("caller_name", default="")

access_logger = logging.getLogger("trackside.access")

_UUID4_BITS = 0x00000000000040008000000000000000  # version 4, RFC 4122 variant
_UUID4_MASK = 0xFFFFFFFFFFFF0FFF3FFFFFFFFFFFFFFF


def new_tracing_id() -> str:
    """A random UUID4 string. Not from os.urandom: tracing ids need no secrecy, and urandom
    releases the GIL, which makes the event loop queue behind the job's worker threads."""
    h = f"{getrandbits(128) & _UUID4_MASK | _UUID4_BITS:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class LoopBatchingHandler(logging.StreamHandler):  # type: ignore[type-arg,unused-ignore]
    """Lines logged on the event loop thread are written together at the end of the loop's
    current iteration (one write for many calls under load, still immediate when idle);
    lines from other threads are written at once, after anything pending."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)
        self._pending: list[str] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        atexit.register(self.flush_pending)

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._loop_thread = threading.get_ident()

    def detach(self) -> None:
        self.flush_pending()
        self._loop = None
        self._loop_thread = 0

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + "\n"
            if self._loop is not None and threading.get_ident() == self._loop_thread:
                if not self._pending:
                    self._loop.call_soon(self.flush_pending)
                self._pending.append(line)
                return
            if self._pending:
                line = "".join(self._pending) + line
                self._pending.clear()
            self.stream.write(line)
            self.stream.flush()
        except Exception:
            self.handleError(record)

    def flush_pending(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            if self._pending:
                data = "".join(self._pending)
                self._pending.clear()
                try:
                    self.stream.write(data)
                    self.stream.flush()
                except (OSError, ValueError):
                    pass


def attach_to_loop(loop: asyncio.AbstractEventLoop) -> None:
    for handler in logging.getLogger().handlers:
        if isinstance(handler, LoopBatchingHandler):
            handler.attach(loop)


def detach_from_loop() -> None:
    for handler in logging.getLogger().handlers:
        if isinstance(handler, LoopBatchingHandler):
            handler.detach()


def env_flag(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


class _RequestContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.tracing_id = tracing_id_var.get()
        record.caller_name = caller_name_var.get()
        return True


class _SecondCache:
    """strftime of the current second, computed once per second instead of once per line."""

    def __init__(self, fmt: str, convert: Callable[[float | None], time.struct_time]) -> None:
        self.fmt = fmt
        self.convert = convert
        self.second = -1
        self.text = ""

    def __call__(self, created: float) -> str:
        second = int(created)
        if second != self.second:
            self.second = second
            self.text = time.strftime(self.fmt, self.convert(created))
        return self.text


def log_access(message: str, *args: object) -> None:
    """An access-log line without logging's stack walk for the caller (a large share of a call)."""
    if access_logger.isEnabledFor(logging.INFO):
        access_logger.handle(
            access_logger.makeRecord(access_logger.name, logging.INFO, "", 0, message, args, None)
        )


class PlainFormatter(logging.Formatter):
    def __init__(self, with_caller: bool) -> None:
        super().__init__()
        self.with_caller = with_caller
        self._seconds = _SecondCache("%Y-%m-%dT%H:%M:%S", time.localtime)

    def format(self, record: logging.LogRecord) -> str:
        ts = self._seconds(record.created) + f".{int(record.msecs):03d}"
        parts = [ts, record.levelname]
        tid = getattr(record, "tracing_id", "")
        if tid:
            parts.append(f"[{tid}]")
        caller = getattr(record, "caller_name", "")
        if self.with_caller and caller:
            parts.append(f"[caller: {caller}]")
        line = " ".join(parts) + f" {record.name}: {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    def __init__(self, with_caller: bool) -> None:
        super().__init__()
        self.with_caller = with_caller
        self._seconds = _SecondCache("%Y-%m-%dT%H:%M:%S", time.gmtime)

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": self._seconds(record.created) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        tid = getattr(record, "tracing_id", "")
        if tid:
            entry["tracing_id"] = tid
        caller = getattr(record, "caller_name", "")
        if self.with_caller and caller:
            entry["caller"] = caller
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return msgspec.json.encode(entry).decode()


def configure_logging() -> None:
    """Root logging to stdout, per LOG_LEVEL, LOG_STRUCTURED and LOG_CALLER_NAME."""
    with_caller = env_flag("LOG_CALLER_NAME")
    handler = LoopBatchingHandler()
    handler.addFilter(_RequestContextFilter())
    handler.setFormatter(
        JsonFormatter(with_caller) if env_flag("LOG_STRUCTURED") else PlainFormatter(with_caller)
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    level_name = os.environ.get("LOG_LEVEL", "INFO").strip().upper()
    level = logging.getLevelName(level_name)
    if not isinstance(level, int):
        level = logging.INFO
        root.setLevel(level)
        logging.getLogger(__name__).warning("unknown LOG_LEVEL %r, using INFO", level_name)
    root.setLevel(level)
    # uvicorn's own access log is replaced by ours (which carries the tracing id)
    logging.getLogger("uvicorn.access").disabled = True
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
