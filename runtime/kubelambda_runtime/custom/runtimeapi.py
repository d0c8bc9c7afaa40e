"""The Lambda Runtime API (version 2018-06-01), served to one bootstrap on a loopback port.

``GET /2018-06-01/runtime/invocation/next`` answers the next invocation with Lambda's headers;
``POST …/invocation/{id}/response``, ``…/invocation/{id}/error`` and ``…/init/error`` answer
202 ``{"status": "OK"}``; a request the environment's state refuses, an unknown request id or
an oversized response is answered as Lambda's emulator answers it (rapi/rendering). The
exchange (exchange.py) carries everything between these requests and the worker. A thread
per connection: ``next`` blocks until there is an invocation, as on Lambda.
"""

from __future__ import annotations

import json
import socket
import socketserver
import threading
from collections.abc import Callable, Iterable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from kubelambda_runtime.custom.exchange import ApiError, Exchange
from kubelambda_runtime.wire import config

PREFIX = "/2018-06-01/runtime"
NEXT = PREFIX + "/invocation/next"
INIT_ERROR = PREFIX + "/init/error"
INVOCATION = PREFIX + "/invocation/"
ERROR_TYPE = "Lambda-Runtime-Function-Error-Type"
# The emulator's interop.MaxPayloadSize: a larger response is refused with 413.
MAX_BODY = config.MAX_RESPONSE_BYTES
# An oversized body is read and dropped up to this size before the 413, so the client gets the
# answer (a connection closed on unread bytes is reset, and the answer may be lost with it).
DISCARD_LIMIT = 64 * 1024 * 1024


class _TooLarge(Exception):
    pass


class RuntimeApi(ThreadingHTTPServer):
    """The Runtime API on 127.0.0.1 at ``port`` (chosen by the kernel)."""

    daemon_threads = True  # a bootstrap's long-poll must not keep the worker from exiting

    def __init__(self, exchange: Exchange, *, before_post: Callable[[], None]) -> None:
        self.exchange = exchange
        # Called before a post reaches the exchange: what the bootstrap printed before it
        # answered is logged within the invocation (bootstrap.Output.drain).
        self.before_post = before_post
        super().__init__(("127.0.0.1", 0), _Handler)
        self._thread: threading.Thread | None = None

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks the host's name up (getfqdn), which only costs time here.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "127.0.0.1", self.server_address[1]

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def address(self) -> str:
        """``host:port``, as AWS_LAMBDA_RUNTIME_API gives it."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self._thread = threading.Thread(target=self.serve_forever, name="runtime-api", daemon=True)
        self._thread.start()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the runtime clients expect
    server: RuntimeApi

    def setup(self) -> None:
        super().setup()
        self._discarded = 0  # bytes of oversized bodies dropped on this connection
        # Each answer goes out in one write; without this, a client waiting for it could
        # wait for a delayed acknowledgement first.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the function's log is the bootstrap's output, not the API's requests

    def do_GET(self) -> None:
        if self.path != NEXT:
            self._not_found()
            return
        try:
            delivery = self.server.exchange.next()
        except ApiError as error:
            self._refuse(error)
            return
        headers = [("Lambda-Runtime-Aws-Request-Id", delivery.request_id), *delivery.headers]
        self._answer(200, delivery.body, headers)

    def do_POST(self) -> None:
        path = self.path
        if path == INIT_ERROR:
            kind, request_id = "init_error", ""
        elif path.startswith(INVOCATION) and path.count("/") == 5:
            request_id, _, kind = path[len(INVOCATION) :].partition("/")
        else:
            kind, request_id = "", ""
        known = kind == "init_error" or (kind in ("response", "error") and request_id)
        if not known:
            self._not_found()
            return
        try:
            body = self._body()
        except _TooLarge:
            if kind == "response":
                # Lambda fails the invocation with Function.ResponseSizeTooLarge (the worker
                # words it) and answers the runtime 413.
                self.server.before_post()
                try:
                    self.server.exchange.too_large(request_id)
                except ApiError as error:
                    self._refuse(error)
                    return
            self._refuse(
                ApiError(
                    413,
                    "RequestEntityTooLarge",
                    f"Exceeded maximum allowed payload size ({MAX_BODY} bytes).",
                )
            )
            return
        except ValueError as error:
            self.close_connection = True
            self._refuse(ApiError(400, "InvalidRequest", f"Malformed request body: {error}"))
            return
        error_type = self.headers.get(ERROR_TYPE, "")
        self.server.before_post()
        exchange = self.server.exchange
        try:
            if kind == "response":
                exchange.respond(request_id, body)
            elif kind == "error":
                exchange.fail(request_id, body, error_type=error_type)
            else:
                exchange.init_failed(body, error_type=error_type)
        except ApiError as error:
            self._refuse(error)
            return
        self._answer(202, json.dumps({"status": "OK"}).encode())

    def _body(self) -> bytes:
        """The request's body (Content-Length or chunked); _TooLarge past MAX_BODY, before
        reading more of it; ValueError when malformed."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return self._chunked()
        length = self.headers.get("Content-Length")
        if not length:
            return b""
        size = int(length)
        if size < 0:
            raise ValueError("negative Content-Length")
        if size > MAX_BODY:
            self._discard(size)
            raise _TooLarge
        return self.rfile.read(size)

    def _chunked(self) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024)
            size = int(line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                break
            total += size
            if total > MAX_BODY:
                self._discard(size)
            else:
                parts.append(self.rfile.read(size))
            self.rfile.readline(8)  # the chunk's CRLF
        while self.rfile.readline(1024).strip():  # trailers, up to the blank line
            pass
        if total > MAX_BODY:
            raise _TooLarge
        return b"".join(parts)

    def _discard(self, size: int) -> None:
        """Read ``size`` bytes and drop them; past DISCARD_LIMIT in all, close instead."""
        self._discarded += size
        if self._discarded > DISCARD_LIMIT:
            self.close_connection = True
            raise _TooLarge
        while size > 0:
            data = self.rfile.read(min(size, 1 << 16))
            if not data:
                self.close_connection = True
                raise _TooLarge
            size -= len(data)

    def _not_found(self) -> None:
        self.close_connection = True
        self._refuse(ApiError(404, "NotFound", f"{self.command} {self.path}: no such resource"))

    def _refuse(self, error: ApiError) -> None:
        document = {"errorMessage": error.message, "errorType": error.error_type}
        self._answer(error.status, json.dumps(document).encode())

    def _answer(self, status: int, body: bytes, headers: Iterable[tuple[str, str]] = ()) -> None:
        lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}", f"Content-Length: {len(body)}"]
        names = set()
        for name, value in headers:
            lines.append(f"{name}: {value}")
            names.add(name.lower())
        if "content-type" not in names:
            lines.append("Content-Type: application/json")
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        try:
            self.wfile.write(head + body)
        except OSError:
            self.close_connection = True  # the bootstrap is gone: nothing to tell it
