"""platforms/kubernetes/client.py: API errors keep the server's reason and message, watch lines
become events, ERROR events raise (410 means list again), kopf gets the current credentials,
and requests reach a loopback HTTP server with their path, query, headers and body."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from kubelambda.platforms.kubernetes.client import MERGE, KubeClient, _from_exception, _watch_event
from kubelambda.platforms.kubernetes.errors import ApiError, Conflict, NotFound
from kubelambda.platforms.kubernetes.kinds import CONFIG_MAP
from kubelambda.platforms.kubernetes.kubeconfig import ConnectionSettings, TokenFile


class FakeException:
    def __init__(self, status: int, body: Any) -> None:
        self.status = status
        self.reason = "Reason"
        self.body = body


def test_a_status_body_gives_reason_and_message() -> None:
    body = json.dumps(
        {"kind": "Status", "reason": "Invalid", "message": 'Deployment "x" is invalid'}
    )
    error = _from_exception("PATCH", "/apis/apps/v1/x", FakeException(422, body))
    assert (error.status, error.reason, error.message) == (
        422,
        "Invalid",
        'Deployment "x" is invalid',
    )
    assert not error.transient


@pytest.mark.parametrize(
    ("status", "cls", "transient"),
    [(404, NotFound, False), (409, Conflict, True), (503, ApiError, True), (403, ApiError, False)],
)
def test_statuses_map_to_classes(status: int, cls: type[ApiError], transient: bool) -> None:
    error = _from_exception("GET", "/p", FakeException(status, None))
    assert type(error) is cls
    assert error.transient is transient


def test_watch_lines() -> None:
    event = _watch_event({"type": "ADDED", "object": {"metadata": {"name": "a"}}})
    assert (event.type, event.object["metadata"]["name"]) == ("ADDED", "a")
    with pytest.raises(ApiError) as caught:
        _watch_event(
            {"type": "ERROR", "object": {"code": 410, "reason": "Expired", "message": "too old"}}
        )
    assert caught.value.status == 410
    with pytest.raises(ApiError, match="not a watch event"):
        _watch_event({"type": "ADDED"})


def test_the_connection_for_kopf_carries_the_current_token_and_the_data(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("sa-token-123")
    # Plain http, so that no TLS context is built from the placeholder data.
    settings = ConnectionSettings(
        server="http://10.0.0.1:80",
        ca_data=b"ca",
        cert_data=b"cert",
        key_path="/k",
        authorization=TokenFile(str(token)),
    )
    client = KubeClient(settings)
    connection = client.connection()
    assert (connection.server, connection.token) == ("http://10.0.0.1:80", "sa-token-123")
    assert (connection.ca_path, connection.ca_data) == (None, b"ca")
    assert (connection.cert_data, connection.key_path) == (b"cert", "/k")
    token.write_text("rotated-token")
    assert client.connection().token == "rotated-token"


class _Handler(BaseHTTPRequestHandler):
    """Answers by path; remembers each request's line, headers and body."""

    seen: ClassVar[list[tuple[str, dict[str, str], bytes]]] = []

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        type(self).seen.append((f"{self.command} {self.path}", dict(self.headers), body))
        status, payload = ANSWERS[
            f"{self.command} {self.path.split('?')[0].removeprefix('/prefix')}"
        ]
        self.send_response(status)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_PATCH = do_POST = do_DELETE = _answer

    def log_message(self, *args: Any) -> None:
        pass


def _status(code: int, reason: str, message: str) -> bytes:
    return json.dumps(
        {"kind": "Status", "code": code, "reason": reason, "message": message}
    ).encode()


ANSWERS: dict[str, tuple[int, bytes]] = {
    "GET /api/v1/namespaces/ns/configmaps/there": (200, b'{"metadata": {"name": "there"}}'),
    "GET /api/v1/namespaces/ns/configmaps/gone": (404, _status(404, "NotFound", "not there")),
    "POST /api/v1/namespaces/ns/configmaps": (409, _status(409, "AlreadyExists", "taken")),
    "PATCH /api/v1/namespaces/ns/configmaps/broken": (502, b"<html>bad gateway</html>"),
    "GET /api/v1/namespaces/ns/configmaps": (
        200,
        b'{"type": "ADDED", "object": {"metadata": {"name": "a"}}}\n'
        b'{"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "7"}}}\n',
    ),
}


@pytest.fixture
def served() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Handler.seen.clear()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def test_requests_over_http_keep_the_answers_and_the_errors(served: str) -> None:
    client = KubeClient(
        ConnectionSettings(server=served + "/prefix/", authorization=lambda: "Bearer t0k"),
        pool_size=2,
    )
    assert client.get(CONFIG_MAP, namespace="ns", name="there") == {"metadata": {"name": "there"}}
    assert client.get(CONFIG_MAP, namespace="ns", name="gone") is None
    with pytest.raises(Conflict) as conflict:
        client.create(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "taken", "namespace": "ns"},
            }
        )
    assert (conflict.value.reason, conflict.value.message) == ("AlreadyExists", "taken")
    with pytest.raises(ApiError) as broken:
        client.merge_patch(CONFIG_MAP, namespace="ns", name="broken", patch={"data": {"a": "b"}})
    assert (broken.value.status, broken.value.transient) == (502, True)
    assert "<html>bad gateway</html>" in broken.value.message
    events = list(client.watch(CONFIG_MAP, namespace="ns", resource_version="5"))
    assert [(e.type, e.object["metadata"]) for e in events] == [
        ("ADDED", {"name": "a"}),
        ("BOOKMARK", {"resourceVersion": "7"}),
    ]
    line, headers, body = _Handler.seen[3]
    assert line == "PATCH /prefix/api/v1/namespaces/ns/configmaps/broken"
    assert (headers["Authorization"], headers["Content-Type"]) == ("Bearer t0k", MERGE)
    assert json.loads(body) == {"data": {"a": "b"}}
    assert _Handler.seen[4][0].startswith(
        "GET /prefix/api/v1/namespaces/ns/configmaps?watch=true&resourceVersion=5&"
    )
    client.close()


def test_an_unreachable_server_is_status_0(served: str) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = KubeClient(ConnectionSettings(server=f"http://127.0.0.1:{port}"), timeout=5.0)
    with pytest.raises(ApiError) as caught:
        client.get(CONFIG_MAP, namespace="ns", name="x")
    assert (caught.value.status, caught.value.reason, caught.value.transient) == (
        0,
        "Unreachable",
        True,
    )


class _Paging(BaseHTTPRequestHandler):
    """A list of three ConfigMaps in pages of two whose continuation has expired (410), as an
    API server answers once the pages' snapshot is compacted away; whole when asked without a
    limit."""

    asked: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.asked.append(self.path)
        names = ["a", "b", "c"]
        if "continue=" in self.path:
            status, answer = (
                410,
                _status(410, "Expired", "The provided continue parameter is too old"),
            )
        else:
            status = 200
            paged = "limit=" in self.path
            answer = json.dumps(
                {
                    "metadata": {"resourceVersion": "9", **({"continue": "c1"} if paged else {})},
                    "items": [{"metadata": {"name": n}} for n in (names[:2] if paged else names)],
                }
            ).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: Any) -> None:
        pass


def test_a_list_whose_pages_expired_is_asked_again_whole() -> None:
    """client-go's pager does the same: a listing slower than the API server's compaction
    interval (5 min) would otherwise fail for good, pages expiring again."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Paging)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Paging.asked.clear()
    client = KubeClient(ConnectionSettings(server=f"http://127.0.0.1:{server.server_address[1]}"))
    try:
        with pytest.raises(ApiError) as expired:
            list(client.list_pages(CONFIG_MAP, namespace="ns", label_selector="x=y"))
        assert expired.value.status == 410
        _Paging.asked.clear()
        listed = client.list_objects(CONFIG_MAP, namespace="ns", label_selector="x=y")
    finally:
        client.close()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
    assert [item["metadata"]["name"] for item in listed.items] == ["a", "b", "c"]
    assert listed.resource_version == "9"
    first, refused, whole = _Paging.asked
    assert "limit=" in first and "continue=c1" in refused
    assert whole == "/api/v1/namespaces/ns/configmaps?labelSelector=x%3Dy"
