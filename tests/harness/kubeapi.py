"""A small client of the harness's API server for what tests time precisely: requests and watches
over one TLS connection each, with no kubectl process in between (which costs ~100 ms a call).
The e2e scenarios and the cold-start benchmark use it; the product's own client is
kubelambda.platforms.kubernetes.
"""

from __future__ import annotations

import http.client
import json
import queue
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from harness.apiserver import ApiServer


@dataclass(frozen=True)
class WatchEvent:
    seen: float  # time.monotonic() when the event arrived here
    type: str  # ADDED, MODIFIED, DELETED, BOOKMARK, ERROR
    object: dict[str, Any]


class KubeApi:
    def __init__(self, api: ApiServer) -> None:
        parts = urlsplit(api.url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 443
        self.context = ssl.create_default_context(cafile=str(api.ca_cert))
        self.context.load_cert_chain(str(api.admin.cert), str(api.admin.key))

    def _connection(self, timeout: float) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(
            self.host, self.port, context=self.context, timeout=timeout
        )

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
        timeout: float = 30.0,
    ) -> dict[str, Any]:
        connection = self._connection(timeout)
        try:
            data = None if body is None else json.dumps(body).encode()
            connection.request(method, path, body=data, headers={"Content-Type": content_type})
            response = connection.getresponse()
            raw = response.read()
        finally:
            connection.close()
        if response.status >= 300:
            raise RuntimeError(f"{method} {path}: {response.status} {raw[:2000]!r}")
        parsed: dict[str, Any] = json.loads(raw) if raw else {}
        return parsed

    def scale(self, namespace: str, deployment: str, replicas: int) -> None:
        self.request(
            "PATCH",
            f"/apis/apps/v1/namespaces/{namespace}/deployments/{deployment}/scale",
            {"spec": {"replicas": replicas}},
            content_type="application/merge-patch+json",
        )

    def watch(self, path: str, *, resource_version: str = "") -> Watch:
        """Start watching `path` (a collection, query string allowed) in a thread."""
        return Watch(self, path, resource_version)


class Watch:
    """Events of one watch, stamped with the time they arrived; `stop()` ends it."""

    def __init__(self, api: KubeApi, path: str, resource_version: str) -> None:
        separator = "&" if "?" in path else "?"
        self.path = f"{path}{separator}watch=1&allowWatchBookmarks=false"
        if resource_version:
            self.path += f"&resourceVersion={resource_version}"
        self.events: queue.Queue[WatchEvent | BaseException] = queue.Queue()
        self._connection = api._connection(timeout=3600)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._connection.request("GET", self.path)
            response = self._connection.getresponse()
            if response.status != 200:
                raise RuntimeError(f"watch {self.path}: {response.status} {response.read()!r}")
            while not self._stopped.is_set():
                line = response.readline()
                if not line:
                    return
                event = json.loads(line)
                self.events.put(WatchEvent(time.monotonic(), event["type"], event["object"]))
        except BaseException as exc:  # handed to the reader, who decides
            if not self._stopped.is_set():
                self.events.put(exc)

    def next(self, timeout: float) -> WatchEvent | None:
        """The next event, or None if none came within `timeout` seconds."""
        try:
            item = self.events.get(timeout=max(0.0, timeout))
        except queue.Empty:
            return None
        if isinstance(item, BaseException):
            raise item
        return item

    def until(self, deadline: float) -> Iterator[WatchEvent]:
        while (left := deadline - time.monotonic()) > 0:
            event = self.next(left)
            if event is not None:
                yield event

    def stop(self) -> None:
        self._stopped.set()
        try:
            if self._connection.sock is not None:
                self._connection.sock.shutdown(2)
        except OSError:
            pass
        self._connection.close()
