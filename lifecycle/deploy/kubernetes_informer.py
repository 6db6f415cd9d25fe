"""A live copy of the objects of one kind that match a label selector in one namespace: listed
once, then kept current by a watch from the list's resourceVersion (listed again when the watch
falls too far behind, 410 Expired, or the API server cannot be reached).

Reads (`items`) never call the API: the runner answers the gateway and the deploy pipeline
from here many times a second.
"""

from __future__ import annotations

import copy
import logging
import threading

from .kubernetes_api import KubernetesApi, KubernetesError, Obj

logger = logging.getLogger("trackside.lifecycle.kubernetes")


class Informer:
    def __init__(
        self,
        api: KubernetesApi,
        kind: str,
        namespace: str,
        selector: str,
        watch_timeout: int = 60,
        retry_delays: tuple[float, float] = (0.5, 10.0),
    ) -> None:
        self.api = api
        self.kind = kind
        self.namespace = namespace
        self.selector = selector
        self.watch_timeout = watch_timeout
        self.retry_delays = retry_delays
        self.error: str | None = None  # why the copy may be stale (None: it is current)
        self._items: dict[str, Obj] = {}
        self._lock = threading.Lock()
        self._synced = threading.Event()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"informer-{self.kind}", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stopped.set()  # the thread ends when its watch does (daemon: never waited for)

    def wait_synced(self, timeout: float) -> bool:
        return self._synced.wait(timeout)

    @property
    def synced(self) -> bool:
        return self._synced.is_set()

    def items(self) -> list[Obj]:
        with self._lock:
            return list(self._items.values())

    def upsert(self, obj: Obj) -> None:
        """An object this lifecycle just wrote: seen at once, before its watch event comes."""
        with self._lock:
            self._items[obj["metadata"]["name"]] = copy.deepcopy(obj)

    def forget(self, name: str) -> None:
        with self._lock:
            self._items.pop(name, None)

    def _run(self) -> None:
        delay = self.retry_delays[0]
        while not self._stopped.is_set():
            try:
                items, version = self.api.list_objects(self.kind, self.namespace, self.selector)
                with self._lock:
                    self._items = {item["metadata"]["name"]: item for item in items}
                self._synced.set()
                self.error = None
                delay = self.retry_delays[0]
                while not self._stopped.is_set():
                    version = self._watch(version)
            except KubernetesError as e:
                if e.status == 410:
                    logger.info("watching %s: %s; listing again", self.kind, e)
                    self._stopped.wait(self.retry_delays[0])
                    continue
                self.error = f"cannot watch {self.kind} objects in namespace {self.namespace}: {e}"
                logger.warning("%s (retrying in %.1f s)", self.error, delay)
                self._stopped.wait(delay)
                delay = min(delay * 2, self.retry_delays[1])
            except Exception:
                logger.exception("watching %s objects failed", self.kind)
                self._stopped.wait(delay)
                delay = min(delay * 2, self.retry_delays[1])

    def _watch(self, version: str) -> str:
        for event, obj in self.api.watch(
            self.kind, self.namespace, self.selector, version, self.watch_timeout
        ):
            if self._stopped.is_set():
                break
            name = obj.get("metadata", {}).get("name")
            if not name:
                continue
            with self._lock:
                if event == "DELETED":
                    self._items.pop(name, None)
                else:
                    self._items[name] = obj
            version = str(obj["metadata"].get("resourceVersion") or version)
        return version
