"""A small HTTP/1.1 server for the runtime's three endpoints, on asyncio with httptools.

The runtime answers one caller (the gateway, or anything speaking the Runtime Interface
Emulator's endpoint) with small JSON bodies; a general ASGI server costs several times
more per request than parsing with httptools and writing each answer in one call, and
the invoke path already pays a hop to the worker process. Keep-alive, pipelining (in
order), chunked request bodies, ``Expect: 100-continue`` and a body limit are handled.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus

import httptools


@dataclass
class Request:
    method: str
    path: str
    headers: dict[bytes, bytes]  # lower-cased names; a repeated header keeps its last value
    body: bytes = b""
    too_large: bool = False


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)


Handler = Callable[[Request], Awaitable[Response]]

_REASONS = {status.value: status.phrase.encode() for status in HTTPStatus}


def encode_response(response: Response, *, keep_alive: bool) -> bytes:
    head = [
        b"HTTP/1.1 %d %s\r\n" % (response.status, _REASONS.get(response.status, b"")),
        b"content-length: %d\r\n" % len(response.body),
    ]
    head.extend(b"%s: %s\r\n" % pair for pair in response.headers)
    if not keep_alive:
        head.append(b"connection: close\r\n")
    head.append(b"\r\n")
    return b"".join(head) + response.body


class _Connection(asyncio.Protocol):
    def __init__(self, server: HttpServer) -> None:
        self._server = server
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._url = b""
        self._headers: dict[bytes, bytes] = {}
        self._body: list[bytes] = []
        self._size = 0
        self._too_large = False
        self._pending: deque[tuple[Request, bool]] = deque()
        self._busy = False
        self._closing = False

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self._server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._server.connections.discard(self)
        self._closing = True

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(400, b"upgrades are not supported")
        except httptools.HttpParserError as exc:
            self._fail(400, f"malformed HTTP request: {exc}".encode())

    # httptools callbacks

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = {}
        self._body = []
        self._size = 0
        self._too_large = False

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.lower()] = value

    def on_headers_complete(self) -> None:
        length = self._headers.get(b"content-length", b"")
        if length.isdigit() and int(length) > self._server.max_body:
            self._too_large = True
        elif self._headers.get(b"expect", b"").lower() == b"100-continue" and self._transport:
            self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        if self._too_large:
            return
        self._size += len(body)
        if self._size > self._server.max_body:
            self._too_large = True
            self._body = []
        else:
            self._body.append(body)

    def on_message_complete(self) -> None:
        path = self._url.split(b"?", 1)[0].decode("latin-1")
        body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        request = Request(
            method=self._parser.get_method().decode("latin-1"),
            path=path,
            headers=self._headers,
            body=body,
            too_large=self._too_large,
        )
        self._pending.append((request, self._parser.should_keep_alive()))
        if not self._busy:
            self._busy = True
            self._server.track(asyncio.ensure_future(self._serve_pending()))

    # answering, one request at a time per connection, in order

    async def _serve_pending(self) -> None:
        try:
            while self._pending and not self._closing:
                request, keep_alive = self._pending.popleft()
                response = await self._server.handler(request)
                keep_alive = keep_alive and not self._server.stopping
                if self._transport is not None and not self._transport.is_closing():
                    self._transport.write(encode_response(response, keep_alive=keep_alive))
                    if not keep_alive:
                        self._transport.close()
                        return
        finally:
            self._busy = False

    def _fail(self, status: int, message: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            body = b'{"errorType": "BadRequest", "errorMessage": "%s"}' % message.replace(
                b'"', b"'"
            )
            response = Response(status, body, [(b"content-type", b"application/json")])
            self._transport.write(encode_response(response, keep_alive=False))
            self._transport.close()

    def close_if_idle(self) -> None:
        if not self._busy and self._transport is not None:
            self._transport.close()


class HttpServer:
    """Serves `handler` on host:port until `stop()`; stopping lets answers in progress finish."""

    def __init__(self, handler: Handler, *, max_body: int) -> None:
        self.handler = handler
        self.max_body = max_body
        self.connections: set[_Connection] = set()
        self.stopping = False
        self._tasks: set[asyncio.Future[None]] = set()
        self._server: asyncio.base_events.Server | None = None

    def track(self, task: asyncio.Future[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def start(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Connection(self), host, port, reuse_address=True, backlog=1024
        )

    async def stop(self, *, grace: float) -> None:
        """Stop accepting, finish answers in progress (at most `grace` seconds), close the rest."""
        self.stopping = True
        if self._server is not None:
            self._server.close()
        for connection in list(self.connections):
            connection.close_if_idle()
        if self._tasks:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*self._tasks, return_exceptions=True), grace)
        for connection in list(self.connections):
            if connection._transport is not None:
                connection._transport.close()
