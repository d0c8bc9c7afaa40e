"""A small HTTP/1.1 server for the runtime's three endpoints, on asyncio with httptools.

The runtime answers one caller (the gateway, or anything speaking the Runtime Interface
Emulator's endpoint) with small JSON bodies; a general ASGI server costs several times
more per request than parsing with httptools and writing each answer in one call.
Keep-alive, pipelining (in order), chunked request bodies, ``Expect: 100-continue`` and a
body limit are handled.

A handler may lend the request's connection to someone else (a worker process, which
answers on it directly) and return None; the connection is not read until it is given
back with ``reclaim``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import cast

import httptools

from kubelambda_runtime.wire.http1 import Response, encode_response

__all__ = ["Connection", "HttpServer", "Request", "Response", "encode_response"]


@dataclass
class Request:
    method: str
    path: str
    headers: dict[bytes, bytes]  # lower-cased names; a repeated header keeps its last value
    body: bytes = b""
    too_large: bool = False
    keep_alive: bool = False
    connection: Connection | None = None  # to lend it (see the module's docstring)


Handler = Callable[[Request], Awaitable[Response | None]]


class Connection(asyncio.Protocol):
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
        self._in_message = False
        self.lent = False

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
        self._in_message = True
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
        self._in_message = False
        path = self._url.split(b"?", 1)[0].decode("latin-1")
        body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        request = Request(
            method=self._parser.get_method().decode("latin-1"),
            path=path,
            headers=self._headers,
            body=body,
            too_large=self._too_large,
            connection=self,
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
                request.keep_alive = keep_alive = keep_alive and not self._server.stopping
                response = await self._server.handler(request)
                if response is None:
                    return  # lent: ``reclaim`` goes on when it comes back
                if self._transport is not None and not self._transport.is_closing():
                    self._transport.write(encode_response(response, keep_alive=keep_alive))
                    if not keep_alive:
                        self._transport.close()
                        return
        finally:
            self._busy = False

    # lending

    def lendable(self) -> bool:
        """Whether the connection can be lent now: nothing read past the current request, and
        nothing of an earlier answer still waiting to be written (the borrower's answer
        would overtake it)."""
        transport = self._transport
        return (
            not self._pending
            and not self._in_message
            and not self.lent
            and transport is not None
            and not transport.is_closing()
            and not transport.get_write_buffer_size()
        )

    def lend(self) -> int:
        """Stop reading and return the socket's descriptor, for the borrower's copy."""
        assert self._transport is not None
        self._transport.pause_reading()
        self.lent = True
        sock = cast(socket.socket, self._transport.get_extra_info("socket"))
        return sock.fileno()

    def reclaim(self, unread: bytes = b"", *, answer: bytes = b"", close: bool = False) -> None:
        """Take the connection back: write ``answer`` (given for the borrower), then read
        again, starting with ``unread`` (bytes the borrower read but did not answer)."""
        self.lent = False
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if answer:
            transport.write(answer)
        if close or (self._server.stopping and not unread):
            transport.close()
            return
        transport.resume_reading()
        if unread:
            self.data_received(unread)

    def _fail(self, status: int, message: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            body = b'{"errorType": "BadRequest", "errorMessage": "%s"}' % message.replace(
                b'"', b"'"
            )
            response = Response(status, body, [(b"content-type", b"application/json")])
            self._transport.write(encode_response(response, keep_alive=False))
            self._transport.close()

    def close_if_idle(self) -> None:
        if not self._busy and not self.lent and self._transport is not None:
            self._transport.close()


class HttpServer:
    """Serves `handler` on host:port until `stop()`; stopping lets answers in progress finish."""

    def __init__(self, handler: Handler, *, max_body: int) -> None:
        self.handler = handler
        self.max_body = max_body
        self.connections: set[Connection] = set()
        self.stopping = False
        self._tasks: set[asyncio.Future[None]] = set()
        self._server: asyncio.base_events.Server | None = None

    def track(self, task: asyncio.Future[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def start(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: Connection(self), host, port, reuse_address=True, backlog=1024
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
