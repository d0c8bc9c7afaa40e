"""The gateway's HTTP connections, bounded: uvicorn's httptools protocol with limits on a
request's head (size, header count, time to arrive), on idle connections, and on clients
that stop reading an answer. Past a limit the answer is 431 or 408 at once, then the
connection closes; a client that does not read is cut off, and its buffered answer freed.

`Gateway.serve` (server.py) runs uvicorn with `bounded_protocol(settings)` as its protocol.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from kubelambda.gateway.settings import GatewaySettings

__all__ = ["bounded_protocol"]


def _answer(status: bytes, message: bytes) -> bytes:
    body = b'{"message":"' + message + b'"}'
    return (
        b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body
    )


_TOO_LARGE = _answer(b"431 Request Header Fields Too Large", b"request headers over the limit")
_TOO_SLOW = _answer(b"408 Request Timeout", b"request headers did not arrive in time")


class _Bounded(HttpToolsProtocol):
    max_head_bytes = 32 * 1024
    max_headers = 100
    head_seconds = 10.0
    write_seconds = 30.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True  # the head of a request is arriving (or awaited)
        self._head_bytes = 0  # bytes received while in the head
        self._head_count = 0
        self._head_timer: asyncio.TimerHandle | None = None
        self._write_timer: asyncio.TimerHandle | None = None
        self._refused = False

    # --- the head of each request: size, count, time --------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # A connection that sends nothing is held no longer than a slow head would be.
        self._arm_head_timer()

    def _arm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
        self._head_timer = self.loop.call_later(self.head_seconds, self._head_too_slow)

    def _head_too_slow(self) -> None:
        self._head_timer = None
        self._refuse(_TOO_SLOW)

    def _refuse(self, answer: bytes) -> None:
        if self._refused or self.transport.is_closing():
            return
        self._refused = True
        self.transport.write(answer)
        self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # what follows a refused head is not read
        # Counted here, not per header: the parser holds a header's bytes until it ends.
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        if self._in_head and self._head_bytes > self.max_head_bytes:
            self._refuse(_TOO_LARGE)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_count = 0
        if self._head_timer is None:
            self._arm_head_timer()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_count += 1
        if self._head_count > self.max_headers:
            self._refuse(_TOO_LARGE)
            return
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self._refused:
            return
        self._in_head = False
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not self._refused:
            super().on_message_complete()

    def on_response_complete(self) -> None:
        self._in_head = True
        self._head_bytes = 0
        super().on_response_complete()
        # The next request's head starts the clock again (the keep-alive timeout covers the
        # wait for its first byte).
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    # --- clients that stop reading ---------------------------------------------------------

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._write_timer is None:
            self._write_timer = self.loop.call_later(self.write_seconds, self._cut_off)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None

    def _cut_off(self) -> None:
        # abort, not close: close would keep the unread answer until the client reads it.
        self._write_timer = None
        self.transport.abort()

    def timeout_keep_alive_handler(self) -> None:
        if self.transport.get_write_buffer_size():
            self.transport.abort()  # idle, but an answer is still unread
        else:
            super().timeout_keep_alive_handler()

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self._head_timer, self._write_timer):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._write_timer = None
        super().connection_lost(exc)


def bounded_protocol(settings: GatewaySettings) -> type[HttpToolsProtocol]:
    """The protocol class for uvicorn, with the limits of `settings`."""
    return type(
        "BoundedHttpProtocol",
        (_Bounded,),
        {
            "max_head_bytes": settings.max_header_bytes,
            "max_headers": settings.max_headers,
            "head_seconds": settings.header_timeout_seconds,
            "write_seconds": settings.write_timeout_seconds,
        },
    )
