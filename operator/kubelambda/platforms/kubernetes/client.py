"""A small synchronous client for the Kubernetes REST API: objects in and out as plain dicts.

The controller (through ``aio.AsyncKube``), the gateway's platform and the tests call it. It
sends requests with urllib3 and reads its configuration with ``kubeconfig``; the official
client's model classes cost 43 MiB of memory in every process that imports them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlencode

import urllib3

from kubelambda import jsonvalue
from kubelambda.platforms.kubernetes.errors import ApiError, NotFound, api_error
from kubelambda.platforms.kubernetes.kinds import Kind, kind_of
from kubelambda.platforms.kubernetes.kubeconfig import ConnectionSettings, KubeconfigError
from kubelambda.platforms.kubernetes.kubeconfig import load as load_settings

__all__ = ["Connection", "KubeClient", "ObjectList", "WatchEvent"]

JSON = dict[str, Any]
APPLY: Final = "application/apply-patch+yaml"  # JSON is YAML, so the body is sent as JSON
MERGE: Final = "application/merge-patch+json"
USER_AGENT: Final = "kubelambda"


@dataclass(frozen=True)
class Connection:
    """Where the API server is and how this process authenticates: what kopf's login needs.
    Each of CA, certificate and key is a file path or PEM data (from a kubeconfig's *-data)."""

    server: str
    ca_path: str | None
    cert_path: str | None
    key_path: str | None
    token: str | None
    insecure: bool
    ca_data: bytes | None = None
    cert_data: bytes | None = None
    key_data: bytes | None = None


# Objects per page of a list (kubectl's and client-go's page size).
LIST_PAGE: Final = 500


@dataclass(frozen=True)
class ObjectList:
    items: list[JSON]
    resource_version: str


@dataclass(frozen=True)
class WatchEvent:
    """One event of a watch: ADDED, MODIFIED, DELETED or BOOKMARK, and the object."""

    type: str
    object: JSON


class KubeClient:
    """Blocking calls to one API server. Safe to share between threads (urllib3 pools)."""

    def __init__(
        self, settings: ConnectionSettings, *, pool_size: int = 16, timeout: float = 30.0
    ) -> None:
        self._settings = settings
        self._timeout = timeout
        url = urllib3.util.parse_url(settings.server)
        if not url.host:
            raise KubeconfigError(f"the server {settings.server!r} names no host")
        # A server URL may carry a path (a proxy in front of several clusters).
        self._prefix = (url.path or "").rstrip("/")
        # One connection per worker thread, or requests queue for a free one.
        self._pool: urllib3.HTTPConnectionPool
        if url.scheme == "https":
            self._pool = urllib3.HTTPSConnectionPool(
                url.host,
                url.port or 443,
                maxsize=pool_size,
                ssl_context=settings.ssl_context(),
                server_hostname=settings.tls_server_name,
            )
        else:
            self._pool = urllib3.HTTPConnectionPool(url.host, url.port or 80, maxsize=pool_size)

    @classmethod
    def from_config(cls, kubeconfig: Path | None = None, *, pool_size: int = 16) -> KubeClient:
        """From ``kubeconfig``; without one, from $KUBECONFIG, the in-cluster service account
        (inside a pod) or ~/.kube/config, in that order, as kubectl does."""
        return cls(load_settings(kubeconfig), pool_size=pool_size)

    def connection(self) -> Connection:
        settings = self._settings
        # The current token: a service-account token file is read again as it is rotated.
        auth = settings.authorization() or ""
        return Connection(
            server=settings.server,
            ca_path=settings.ca_path,
            cert_path=settings.cert_path,
            key_path=settings.key_path,
            token=(auth[7:] if auth[:7].lower() == "bearer " else auth).strip() or None,
            insecure=settings.insecure,
            ca_data=settings.ca_data,
            cert_data=settings.cert_data,
            key_data=settings.key_data,
        )

    def close(self) -> None:
        self._pool.close()

    # --- reading ---------------------------------------------------------------------------

    def get(
        self, kind: Kind, *, namespace: str | None, name: str, subresource: str | None = None
    ) -> JSON | None:
        """The object, or None when it does not exist."""
        try:
            return self._call(
                "GET", kind.path(namespace=namespace, name=name, subresource=subresource)
            )
        except NotFound:
            return None

    def list_objects(
        self,
        kind: Kind,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
    ) -> ObjectList:
        """Every object of ``kind`` (read in pages, as ``list_pages``). Should the pages'
        snapshot be compacted away before the last one (410: a listing slower than the API
        server's compaction interval), the list is asked again in one answer, as client-go's
        pager does, rather than in pages that could expire again."""
        items: list[JSON] = []
        resource_version = ""
        try:
            for page in self.list_pages(kind, namespace=namespace, label_selector=label_selector):
                items += page.items
                resource_version = page.resource_version
        except ApiError as exc:
            if exc.status != 410:
                raise
            query = [("labelSelector", label_selector)] if label_selector else []
            found = self._call("GET", kind.path(namespace=namespace), query=query)
            return ObjectList(
                items=list(found.get("items") or []),
                resource_version=str((found.get("metadata") or {}).get("resourceVersion", "")),
            )
        return ObjectList(items=items, resource_version=resource_version)

    def list_pages(
        self,
        kind: Kind,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        page_size: int = LIST_PAGE,
    ) -> Iterator[ObjectList]:
        """The objects of ``kind``, ``page_size`` at a time, each page with the list's
        resourceVersion (one snapshot across its pages, to watch from): a caller that handles
        a page before asking for the next holds one page, not thousands of objects, and the
        API server answers a page at a time. A page asked too late (the snapshot compacted
        away, 410) raises ApiError: list again (``list_objects`` does it in one answer)."""
        query = [("limit", str(page_size))]
        if label_selector:
            query.append(("labelSelector", label_selector))
        token = ""
        while True:
            asked = [*query, ("continue", token)] if token else query
            found = self._call("GET", kind.path(namespace=namespace), query=asked)
            meta = found.get("metadata") or {}
            yield ObjectList(
                items=list(found.get("items") or []),
                resource_version=str(meta.get("resourceVersion", "")),
            )
            token = str(meta.get("continue") or "")
            if not token:
                return

    def watch(
        self,
        kind: Kind,
        *,
        resource_version: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        timeout_seconds: int = 300,
    ) -> Iterator[WatchEvent]:
        """Events after ``resource_version`` until the server ends the watch (after
        ``timeout_seconds``). An ERROR event raises ApiError: 410 means list again."""
        query: list[tuple[str, str]] = [
            ("watch", "true"),
            ("resourceVersion", resource_version),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", str(timeout_seconds)),
        ]
        if label_selector:
            query.append(("labelSelector", label_selector))
        response = self._open(
            "GET",
            kind.path(namespace=namespace),
            query=query,
            # The server ends the watch itself; the read deadline only catches a dead link.
            timeout=(10.0, timeout_seconds + 30.0),
        )
        try:
            buffered = b""
            for chunk in response.stream(64 * 1024, decode_content=True):
                buffered += chunk
                *lines, buffered = buffered.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield _watch_event(jsonvalue.loads(line))
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ApiError(0, "Unreachable", f"watch of {kind} broke: {exc}") from exc
        finally:
            response.release_conn()

    # --- writing ---------------------------------------------------------------------------

    def apply(
        self,
        obj: Mapping[str, Any],
        *,
        field_manager: str,
        force: bool = True,
        subresource: str | None = None,
    ) -> JSON:
        """Server-side apply: ``obj`` is the whole intent of ``field_manager`` for this object;
        fields it applied before and leaves out now are removed unless another manager owns
        them. Creates the object when it does not exist."""
        kind = kind_of(obj)
        meta = obj["metadata"]
        query = [("fieldManager", field_manager)]
        if force:
            query.append(("force", "true"))
        return self._call(
            "PATCH",
            kind.path(namespace=meta.get("namespace"), name=meta["name"], subresource=subresource),
            query=query,
            body=obj,
            content_type=APPLY,
        )

    def merge_patch(
        self,
        kind: Kind,
        *,
        namespace: str | None,
        name: str,
        patch: Mapping[str, Any],
        subresource: str | None = None,
        field_manager: str | None = None,
    ) -> JSON:
        query = [("fieldManager", field_manager)] if field_manager else []
        return self._call(
            "PATCH",
            kind.path(namespace=namespace, name=name, subresource=subresource),
            query=query,
            body=patch,
            content_type=MERGE,
        )

    def create(
        self,
        obj: Mapping[str, Any],
        *,
        namespace: str | None = None,
        field_manager: str | None = None,
    ) -> JSON:
        """POST ``obj``; an object of that name raises Conflict (409 AlreadyExists)."""
        kind = kind_of(obj)
        where = namespace if namespace is not None else obj["metadata"].get("namespace")
        query = [("fieldManager", field_manager)] if field_manager else None
        return self._call("POST", kind.path(namespace=where), query=query, body=obj)

    def delete(
        self,
        kind: Kind,
        *,
        namespace: str | None,
        name: str,
        grace_seconds: int | None = None,
        uid: str | None = None,
    ) -> bool:
        """Delete the object (a pod within ``grace_seconds`` rather than its own grace period;
        only if its uid is ``uid``, when given: 409 Conflict otherwise); False when it was
        already gone."""
        query = [("gracePeriodSeconds", str(grace_seconds))] if grace_seconds is not None else []
        body = {"preconditions": {"uid": uid}} if uid is not None else None
        try:
            self._call("DELETE", kind.path(namespace=namespace, name=name), query=query, body=body)
        except NotFound:
            return False
        return True

    def read_text(
        self, path: str, *, query: list[tuple[str, str]] | None = None, timeout: float
    ) -> bytes:
        """GET `path` (a subresource answering plain text, such as pods/log) as bytes."""
        response = self._open("GET", path, query=query, timeout=timeout)
        try:
            data: bytes = response.data
        finally:
            response.release_conn()
        return data

    # --- plumbing --------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        body: Mapping[str, Any] | None = None,
        content_type: str = "application/json",
    ) -> JSON:
        response = self._open(method, path, query=query, body=body, content_type=content_type)
        try:
            data = response.data
        finally:
            response.release_conn()
        decoded = jsonvalue.loads(data) if data else {}
        if not isinstance(decoded, dict):
            raise ApiError(0, "BadResponse", f"{method} {path}: expected an object")
        return decoded

    def _open(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        body: Mapping[str, Any] | None = None,
        content_type: str = "application/json",
        timeout: float | tuple[float, float] | None = None,
    ) -> urllib3.BaseHTTPResponse:
        """The response of a 2xx answer, its body unread; any other answer raises."""
        url = self._prefix + path + (f"?{urlencode(query)}" if query else "")
        headers = {"Content-Type": content_type, "Accept": "application/json"}
        headers["User-Agent"] = USER_AGENT
        authorization = self._settings.authorization()
        if authorization:
            headers["Authorization"] = authorization
        try:
            response = self._pool.urlopen(
                method,
                url,
                body=jsonvalue.dumps(body) if body is not None else None,
                headers=headers,
                timeout=_timeout(timeout if timeout is not None else self._timeout),
                preload_content=False,
            )
            if 200 <= response.status <= 299:
                return response
            try:
                failure = _Failure(
                    response.status, response.reason, response.data.decode("utf-8", "replace")
                )
            finally:
                response.release_conn()
        except urllib3.exceptions.SSLError as exc:
            failure = _Failure(0, f"{type(exc).__name__}\n{exc}", None)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ApiError(0, "Unreachable", f"{method} {path}: {exc}") from exc
        raise _from_exception(method, path, failure)


def _timeout(timeout: float | tuple[float, float]) -> urllib3.Timeout:
    """One number bounds the whole request; a pair bounds the connect and each read."""
    if isinstance(timeout, tuple):
        return urllib3.Timeout(connect=timeout[0], read=timeout[1])
    return urllib3.Timeout(total=timeout)


@dataclass(frozen=True)
class _Failure:
    """An error answer (status 0: no answer): what ``_from_exception`` maps to an ApiError."""

    status: int
    reason: str | None
    body: str | None


def _from_exception(method: str, path: str, exc: Any) -> ApiError:
    status = int(exc.status or 0)
    reason = str(exc.reason or "")
    message = f"{method} {path}: {reason}"
    body = exc.body
    if body:
        try:
            decoded = jsonvalue.loads(str(body).encode())
        except ValueError:
            message = f"{method} {path}: {str(body)[:500]}"
        else:
            if isinstance(decoded, dict):
                reason = str(decoded.get("reason") or reason)
                message = str(decoded.get("message") or message)
    return api_error(status, reason, message)


def _watch_event(raw: object) -> WatchEvent:
    if not isinstance(raw, dict) or not isinstance(raw.get("object"), dict):
        raise ApiError(0, "BadResponse", f"not a watch event: {str(raw)[:200]}")
    event_type, obj = str(raw.get("type")), raw["object"]
    if event_type == "ERROR":
        raise api_error(
            int(obj.get("code") or 0), str(obj.get("reason") or ""), str(obj.get("message") or "")
        )
    return WatchEvent(type=event_type, object=obj)
