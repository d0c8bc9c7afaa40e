"""One keep-alive HTTP/1.1 connection from the gateway to a function instance, on a raw asyncio
transport, its answers parsed with httptools: the pool (upstream.py) sends each exchange on one
and gets back an UpstreamResponse, through a future (`send`) or a callback (`send_then`, the warm
request's path without a task: invocation.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final, cast

import httptools

from kubelambda.gateway.exceptions import UpstreamFailed, UpstreamTimeout

__all__ = [
    "Answered",
    "InstanceKey",
    "StaleConnection",
    "UpstreamConnection",
    "UpstreamResponse",
]

# An instance as the pool keeps connections to it: host, port, over TLS or not.
InstanceKey = tuple[str, int, bool]
# Takes a lost connection's place as its parser (whose own holds its methods: a cycle).
_NO_PARSER: Final = httptools.HttpResponseParser(object())


class UpstreamResponse:
    """An instance's complete answer; header names are lower-case bytes."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name: bytes) -> bytes | None:
        """The first value of header `name` (lower-case), or None."""
        for key, value in self.headers:
            if key == name:
                return value
        return None


class StaleConnection(Exception):
    """A reused connection closed before any byte of the answer: the server had closed it."""


Answered = Callable[["UpstreamConnection", "UpstreamResponse | Exception"], None]
"""Told how an exchange sent with `send_then` ended: the connection, and the answer or why none
came (StaleConnection, UpstreamTimeout, UpstreamFailed)."""


class UpstreamConnection(asyncio.Protocol):
    """One keep-alive connection; carries one exchange at a time. `lost` is called with it once
    it is lost (the pool lets go of it); an answer over `max_response_bytes` fails the exchange."""

    def __init__(
        self,
        key: InstanceKey,
        loop: asyncio.AbstractEventLoop,
        *,
        max_response_bytes: int,
        lost: Callable[[UpstreamConnection], None],
    ) -> None:
        self.key = key
        self._loop = loop
        self._max_response_bytes = max_response_bytes
        self._lost = lost
        self.transport: asyncio.Transport | None = None
        # Made once connected: uvloop makes a protocol for a connection that then fails, and
        # calls neither connection_made nor connection_lost on it.
        self._parser = _NO_PARSER
        # The exchange in flight: a future (`send`) or a callback (`send_then`), never both.
        self._waiter: asyncio.Future[UpstreamResponse] | None = None
        self._then: Answered | None = None
        self._status = 0
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._size = 0
        self._received = False
        self.keep_alive = False
        self.closed = False
        self.idle_since = 0.0
        self.reused = False
        # The deadline of the exchange in flight, and the timer that watches it: armed when
        # an exchange needs it and looked at when it fires, rather than armed and cancelled
        # around every exchange (a timer cost as much as a tenth of a proxied request).
        self._deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self._parser = httptools.HttpResponseParser(self)

    def data_received(self, data: bytes) -> None:
        if not self._in_flight():
            # Bytes nobody asked for (a server's 408 on an idle connection): drop it.
            self.close()
            return
        self._received = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(UpstreamFailed(f"instance answered malformed HTTP: {exc}"))
            self.close()

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._stop_timer()
        self._lost(self)
        if self._in_flight():
            if not self._received and self.reused:
                self._settle(StaleConnection())
            else:
                self._settle(
                    UpstreamFailed("instance closed the connection before answering completely")
                )
        # The parser holds this connection's methods: a cycle a full collection would free.
        self._parser = _NO_PARSER

    # httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self._status = self._parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > self._max_response_bytes:
            self._fail(
                UpstreamFailed(f"instance answered more than {self._max_response_bytes} bytes")
            )
            self.close()
            return
        self._body.append(body)

    def on_message_complete(self) -> None:
        self.keep_alive = self._parser.should_keep_alive()
        if self._in_flight():
            body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
            self._settle(UpstreamResponse(self._status, self._headers, body))

    # the exchange

    def _in_flight(self) -> bool:
        """An exchange is waiting for its answer."""
        waiter = self._waiter
        return self._then is not None or (waiter is not None and not waiter.done())

    def _settle(self, outcome: UpstreamResponse | Exception) -> None:
        """End the exchange in flight with its answer or why none came."""
        then = self._then
        if then is not None:
            self._then = None
            then(self, outcome)
            return
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            if isinstance(outcome, Exception):
                waiter.set_exception(outcome)
            else:
                waiter.set_result(outcome)

    def _fail(self, exc: Exception) -> None:
        if self._in_flight():
            self._settle(exc)

    def _arm(self, deadline: float) -> None:
        """Watch `deadline`: a timer already due by then will look at it when it fires."""
        self._deadline = deadline
        timer = self._timer
        if timer is None or self._timer_at > deadline:
            if timer is not None:
                timer.cancel()
            self._timer = self._loop.call_at(deadline, self._deadline_passed)
            self._timer_at = deadline

    def _deadline_passed(self) -> None:
        self._timer = None
        if not self._in_flight():
            return  # no exchange in flight: the next one arms the timer again
        if self._deadline <= self._timer_at:
            self._fail(UpstreamTimeout("the instance did not answer in time"))
            self.close()
        else:  # armed for an earlier exchange: watch this one's own deadline
            self._timer = self._loop.call_at(self._deadline, self._deadline_passed)
            self._timer_at = self._deadline

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def close(self) -> None:
        self._stop_timer()
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.close()

    def send(self, data: bytes, deadline: float) -> asyncio.Future[UpstreamResponse]:
        """Send a request: the future is its answer, due by `deadline`; the caller
        (UpstreamPool.request) awaits it, then sets `_waiter` to None. Not a coroutine: one
        fewer per invocation."""
        transport = self._begin()
        waiter: asyncio.Future[UpstreamResponse] = self._loop.create_future()
        self._waiter = waiter
        self._arm(deadline)
        transport.write(data)
        return waiter

    def send_then(self, data: bytes, deadline: float, then: Answered) -> None:
        """Send a request; `then` is called once, with its answer or why none came by
        `deadline`, never before this returns. Raises StaleConnection at once when the
        connection is closing (nothing was sent)."""
        transport = self._begin()
        self._then = then
        self._arm(deadline)
        transport.write(data)

    def _begin(self) -> asyncio.Transport:
        """The transport for a new exchange, its answer's state reset."""
        transport = self.transport
        if transport is None or self.closed or transport.is_closing():
            raise StaleConnection()
        self._status = 0
        self._headers = []
        self._body = []
        self._size = 0
        self._received = False
        self.keep_alive = False
        return transport
