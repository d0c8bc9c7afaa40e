"""List-then-watch of one kind on a background thread, handing every change to an asyncio loop.

The gateway's KubernetesPlatform runs one per kind it follows (EndpointSlices, Functions,
Triggers). A watch that expires (410) or breaks is followed by a fresh list, and objects that
vanished meanwhile are reported deleted, so the receiver's view converges without polling.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable

from kubelambda.platforms.kubernetes.client import JSON, LIST_PAGE, KubeClient
from kubelambda.platforms.kubernetes.errors import ApiError
from kubelambda.platforms.kubernetes.kinds import Kind

__all__ = ["EventHandler", "Informer"]

logger = logging.getLogger(__name__)

EventHandler = Callable[[str, JSON], None]
"""Called on the loop with "ADDED", "MODIFIED" or "DELETED" and the object."""


def _key(obj: JSON) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


class Informer:
    def __init__(
        self,
        client: KubeClient,
        kind: Kind,
        *,
        on_event: EventHandler,
        loop: asyncio.AbstractEventLoop,
        label_selector: str | None = None,
        namespace: str | None = None,
        watch_seconds: int = 300,
        retry_seconds: float = 1.0,
        page_size: int = LIST_PAGE,
    ) -> None:
        self.client = client
        self.kind = kind
        self.on_event = on_event
        self.loop = loop
        self.label_selector = label_selector
        self.namespace = namespace
        self.watch_seconds = watch_seconds
        self.retry_seconds = retry_seconds
        self.page_size = page_size
        self.synced = asyncio.Event()  # set on the loop after the first list was delivered
        self._versions: dict[tuple[str, str], str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"watch-{kind}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop after the current watch request ends (at most ``watch_seconds``); the thread
        is a daemon, so it never holds the process up."""
        self._stop.set()

    def _emit(self, event_type: str, obj: JSON) -> None:
        self.loop.call_soon_threadsafe(self.on_event, event_type, obj)

    def _relist(self) -> str:
        """List in pages, handing each page's objects on before the next is asked: with
        15,000 Functions one answer held them all at once (JSON and decoded)."""
        seen: dict[tuple[str, str], str] = {}
        resource_version = ""
        for page in self.client.list_pages(
            self.kind,
            namespace=self.namespace,
            label_selector=self.label_selector,
            page_size=self.page_size,
        ):
            resource_version = page.resource_version
            for obj in page.items:
                # List items carry no kind; receivers may want it, as watch events have it.
                obj.setdefault("apiVersion", self.kind.api_version)
                obj.setdefault("kind", self.kind.kind)
                key = _key(obj)
                version = str((obj.get("metadata") or {}).get("resourceVersion"))
                seen[key] = version
                if self._versions.get(key) != version:
                    self._emit("MODIFIED" if key in self._versions else "ADDED", obj)
            self._handed_on()
        for namespace, name in set(self._versions) - set(seen):
            self._emit("DELETED", {"metadata": {"namespace": namespace, "name": name}})
        self._versions = seen
        self.loop.call_soon_threadsafe(self.synced.set)
        return resource_version

    def _handed_on(self) -> None:
        """Wait until the loop has taken every event emitted so far, so that no more than a
        page waits for it (stopping ends the wait)."""
        taken = threading.Event()
        self.loop.call_soon_threadsafe(taken.set)
        while not taken.wait(1.0) and not self._stop.is_set():
            pass

    def _run(self) -> None:
        resource_version: str | None = None
        while not self._stop.is_set():
            try:
                if resource_version is None:
                    resource_version = self._relist()
                for event in self.client.watch(
                    self.kind,
                    resource_version=resource_version,
                    namespace=self.namespace,
                    label_selector=self.label_selector,
                    timeout_seconds=self.watch_seconds,
                ):
                    meta = event.object.get("metadata") or {}
                    resource_version = str(meta.get("resourceVersion") or resource_version)
                    if event.type == "BOOKMARK":
                        continue
                    key = _key(event.object)
                    if event.type == "DELETED":
                        self._versions.pop(key, None)
                    else:
                        self._versions[key] = resource_version
                    self._emit(event.type, event.object)
                    if self._stop.is_set():
                        return
            except ApiError as exc:
                if exc.status != 410:  # 410: our resourceVersion is too old; just list again
                    logger.warning("watch of %s failed: %s; listing again", self.kind, exc)
                    self._stop.wait(self.retry_seconds)
                resource_version = None
            except Exception:
                logger.exception("watch of %s failed; listing again", self.kind)
                self._stop.wait(self.retry_seconds)
                resource_version = None
