"""One request on a gateway connection (connection.py), from its head to its answer: the body
as it arrives, handed to the edge through ASGI's `receive` events, and the client's leaving.

When the whole body is in before the request is handed over (nearly always), it is put in the
`Request` itself (`complete`), so the edge takes it without waiting or arming a timer.
"""

from __future__ import annotations

import asyncio
from typing import Final, Protocol

from kubelambda.gateway.http import Message, Request, Response

__all__ = ["Exchange"]

_CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"
_DISCONNECT: Final[Message] = {"type": "http.disconnect"}


class _Connection(Protocol):
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport

    def resume_reading(self) -> None: ...

    def answer_begun(self, exchange: Exchange, response: Response | None) -> None: ...

    def cancel_begun(self, exchange: Exchange) -> None: ...


class Exchange:
    """A request's body as it arrives and whether its answer went out or its client left."""

    __slots__ = (
        "_connection",
        "_waiter",
        "chunks",
        "delivered",
        "disconnected",
        "done",
        "expect",
        "head",
        "keep_alive",
        "more_body",
        "size",
        "task",
    )
    # The Task answering it, set as it starts (connection.py), which takes it out of the
    # server's tasks when it ends; none when the edge's `begin` took it (then the exchange
    # itself stands in the server's tasks until `answer`).
    task: asyncio.Task[None]

    def __init__(
        self, connection: _Connection, *, keep_alive: bool, expect: bool, head: bool
    ) -> None:
        self._connection = connection
        self.head = head  # a HEAD request: its answer goes out without its body
        self.keep_alive = keep_alive
        self.expect = expect  # the client waits for 100 Continue before sending the body
        self.chunks: list[bytes] = []
        self.size = 0  # bytes in chunks
        self.more_body = True  # the body has not all arrived
        self.delivered = False  # the end of the body was handed over
        self.disconnected = False
        self.done = False  # answered (or given up): the body is no longer wanted
        self._waiter: asyncio.Future[None] | None = None

    # from the connection

    def add(self, body: bytes) -> None:
        self.chunks.append(body)
        self.size += len(body)
        self._wake()

    def end(self) -> None:
        self.more_body = False
        self._wake()

    def lost(self) -> None:
        self.disconnected = True
        self._wake()

    def offer_body(self, request: Request) -> None:
        """Put the body in `request` if all of it is in already."""
        if not self.more_body and not self.disconnected:
            chunks = self.chunks  # _take, written out: this runs for every request
            request.body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            request.complete = True
            chunks.clear()
            self.size = 0
            self.delivered = True

    def answer(self, response: Response | None) -> None:
        """The answer to a request the edge's `begin` took, to write (None: the client left)."""
        self._connection.answer_begun(self, response)

    def cancel(self, msg: str | None = None) -> None:
        """As a task is cancelled: uvicorn's graceful shutdown ran out of time with it."""
        self._connection.cancel_begun(self)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _take(self) -> bytes:
        chunks = self.chunks
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self.size = 0
        return body

    # to the edge

    async def receive(self) -> Message:
        """ASGI's receive: the body so far (`http.request`), then, once it was all taken,
        `http.disconnect` when the client leaves or the answer went out."""
        connection = self._connection
        if self.expect:
            self.expect = False
            if self.more_body and not connection.transport.is_closing():
                connection.transport.write(_CONTINUE)
        while not (self.disconnected or self.done):
            if self.chunks or (not self.more_body and not self.delivered):
                body = self._take()
                self.delivered = not self.more_body
                connection.resume_reading()
                return {"type": "http.request", "body": body, "more_body": self.more_body}
            connection.resume_reading()
            self._waiter = connection.loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return _DISCONNECT
