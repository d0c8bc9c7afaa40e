"""The gateway's HTTP connections, bounded: uvicorn's httptools protocol with limits on the
number of connections, on a request's head (size, header count, time to arrive), on idle
connections, and on answers clients stop reading. Past a limit the answer is 503, 431 or
408 at once, then the connection closes; a client that does not read is cut off (reset),
and its answer freed.

`Gateway.serve` (server.py) runs uvicorn with `bounded_protocol(settings)` as its protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import sys
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from kubelambda.gateway.settings import GatewaySettings

__all__ = ["MAX_UNREAD_ANSWER_BYTES", "bounded_protocol"]

# Bytes of answers not yet taken by clients that stopped reading them, over all connections
# of one server: beyond it, the answers stalled longest are dropped. Without it, 200 clients
# that ask for 5 MB and never read held 1 GB (benchmarks/gateway_abuse.py).
MAX_UNREAD_ANSWER_BYTES = 128 * 1024 * 1024


def _answer(status: bytes, message: bytes, *extra: bytes) -> bytes:
    body = b'{"message":"' + message + b'"}'
    return (
        b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\n"
        b"content-length: "
        + str(len(body)).encode()
        + b"\r\nconnection: close\r\n"
        + b"".join(header + b"\r\n" for header in extra)
        + b"\r\n"
        + body
    )


_TOO_LARGE = _answer(b"431 Request Header Fields Too Large", b"request headers over the limit")
_TOO_SLOW = _answer(b"408 Request Timeout", b"request headers did not arrive in time")
_TOO_MANY = _answer(
    b"503 Service Unavailable",
    b"the gateway holds as many connections as it may",
    b"retry-after: 1",
)
# SO_LINGER on, 0 s: close resets the connection and discards what the kernel still holds.
_RESET = struct.pack("ii", 1, 0)

if sys.platform == "linux":
    import fcntl
    import termios

    def _kernel_unsent(fd: int) -> int:
        """Bytes the kernel holds for a socket, unsent or unacknowledged (SIOCOUTQ)."""
        return int(struct.unpack("i", fcntl.ioctl(fd, termios.TIOCOUTQ, b"\0\0\0\0"))[0])

else:

    def _kernel_unsent(fd: int) -> int:
        return 0  # not asked elsewhere: the transport's buffer alone is counted


class _Stalls:
    """Connections of one server whose answer stalled, the longest stalled first, with the
    bytes each had not handed over when it stalled."""

    def __init__(self) -> None:
        self.held: dict[_Bounded, int] = {}
        self.total = 0

    def add(self, connection: _Bounded, size: int) -> None:
        if connection not in self.held:
            self.held[connection] = size
            self.total += size

    def remove(self, connection: _Bounded) -> None:
        self.total -= self.held.pop(connection, 0)


class _Bounded(HttpToolsProtocol):
    max_head_bytes = 32 * 1024
    max_headers = 100
    head_seconds = 10.0
    write_seconds = 30.0
    max_unread_bytes = MAX_UNREAD_ANSWER_BYTES
    stalls = _Stalls()  # one per server: bounded_protocol makes a class for each

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True  # the head of a request is arriving (or awaited)
        self._head_bytes = 0  # bytes received while in the head
        self._head_count = 0
        self._head_timer: asyncio.TimerHandle | None = None
        self._write_timer: asyncio.TimerHandle | None = None
        self._unsent = 0  # bytes not handed over at the last progress
        self._progressed_at = 0.0
        self._refused = False

    # --- connections beyond the limit -----------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if self.limit_concurrency is not None and len(self.connections) > self.limit_concurrency:
            # Refused now, not once it sends a request: an idle one would hold a slot (and
            # a descriptor) for the whole head timeout.
            self._refuse(_TOO_MANY)
            return
        # A connection that sends nothing is held no longer than a slow head would be.
        self._arm_head_timer()

    # --- the head of each request: size, count, time --------------------------------------

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
        self._watch_writes()
        if self not in self.stalls.held:
            self.stalls.add(self, self._not_handed_over())
            self._shed_stalled()

    def resume_writing(self) -> None:
        super().resume_writing()
        # Most of the answer is taken; the write timer still watches what is left.
        self.stalls.remove(self)

    def _watch_writes(self) -> None:
        if self._write_timer is None:
            self._unsent = self._not_handed_over()
            self._progressed_at = self.loop.time()
            self._write_timer = self.loop.call_later(self._write_tick(), self._check_progress)

    def _write_tick(self) -> float:
        # Looked at ten times per write_seconds: the first look must not count the bytes
        # that filled the client's receive window just after the answer stalled.
        return self.write_seconds / 10

    def _check_progress(self) -> None:
        # Progress is the client taking any of the answer, not the buffer draining below its
        # low-water mark: a slow reader of a large answer takes longer than write_seconds.
        self._write_timer = None
        if not self.transport.get_write_buffer_size():
            return  # handed over to the kernel: its own timers take it from here
        now, unsent = self.loop.time(), self._not_handed_over()
        if unsent < self._unsent:
            self._unsent, self._progressed_at = unsent, now
        elif now - self._progressed_at >= self.write_seconds:
            self._drop()
            return
        self._write_timer = self.loop.call_later(self._write_tick(), self._check_progress)

    def _not_handed_over(self) -> int:
        """Bytes of this connection's answers the client has not taken: the transport's
        buffer and what the kernel holds unsent or unacknowledged."""
        unsent = self.transport.get_write_buffer_size()
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError, ValueError):
                unsent += _kernel_unsent(sock.fileno())
        return unsent

    def _shed_stalled(self) -> None:
        # The answers stalled longest go first: a reader that is merely slow stalls later
        # and for less long than one that never reads.
        for oldest in list(self.stalls.held):
            if self.stalls.total <= self.max_unread_bytes:
                return
            oldest._drop()

    def _drop(self) -> None:
        # abort, and with a reset: a close would keep the unread answer in the transport
        # and in the kernel until the client reads it, and the client would not learn.
        self.stalls.remove(self)
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
        self.transport.abort()

    def timeout_keep_alive_handler(self) -> None:
        if self.transport.get_write_buffer_size():
            # Still handing over the last answer: closed once it is taken, dropped if the
            # client stops taking it.
            self._watch_writes()
        super().timeout_keep_alive_handler()

    def connection_lost(self, exc: Exception | None) -> None:
        self.stalls.remove(self)
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
            "max_unread_bytes": MAX_UNREAD_ANSWER_BYTES,
            "stalls": _Stalls(),
        },
    )
