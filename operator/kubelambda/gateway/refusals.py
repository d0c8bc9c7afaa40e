"""The refusals of a gateway connection (connection.py), each a prebuilt answer written, then the
close: a connection accepted beyond the connection limit (503), or while the server is overloaded
(503: those with over 512 still behind them in the accept queue), refused as it is accepted, before
its request is even read, and with it every connection still waiting beyond that bound, taken from
the listener in the same turn (uvloop takes one at every turn of its loop); a head that does not
arrive in time (408); a request that is not HTTP (400). And a connection idle for longer than the
keep-alive timeout is closed.

Before any of this, connections wait in the kernel's accept queue, as deep as the connection
limit (server.py; capped by net.core.somaxconn); beyond it the kernel drops a client's SYN, and
the client sends it again after 1 s, 2 s, 4 s...: a wait the gateway cannot answer, hence the
cheap refusals.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from kubelambda.gateway.framing import TOO_MANY, TOO_SLOW, bad_request
from kubelambda.gateway.stalls import StalledWrites

__all__ = ["Refusals"]


class Refusals(StalledWrites):
    """The part of a connection that refuses it as it is accepted, times its heads and its
    idling, and writes its refusals (connection.py's BoundedProtocol is its subclass)."""

    server_state: Any
    connections: set[Any]
    client: tuple[str, int] | None
    limit_concurrency: int | None
    head_seconds: float
    keep_alive_seconds: float
    overloaded_answer: bytes  # the server's 503, built once
    refuse_waiting: Callable[[], int]  # the server's: those waiting beyond its bound
    _arrived_overloaded: bool  # asked as the connection was made
    _head_timer: asyncio.TimerHandle | None
    _refused: bool
    _keep_alive_timer: asyncio.TimerHandle | None
    _idle_since: float | None  # waiting for the next request since

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.connections.add(self)
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.client = (str(peer[0]), int(peer[1]))
        if self._arrived_overloaded:
            # Refused as it is accepted, before its request is read or parsed: a flood that
            # outruns the loop is answered at the cost of a write and a close each, so the
            # accept queue drains instead of overflowing (the kernel then drops clients'
            # handshakes: waits of 1 s, 3 s, 7 s the gateway cannot answer). The request left
            # unread makes the close a reset, which Linux delivers after the answer. Those
            # waiting behind it beyond the bound are refused with it, in this turn.
            self._refuse(self.overloaded_answer)
            self.refuse_waiting()
            return
        if self.limit_concurrency is not None and len(self.connections) > self.limit_concurrency:
            # Refused now, not once it sends a request: an idle one would hold a slot (and
            # a descriptor) for the whole head timeout.
            self._refuse(TOO_MANY)
            return
        # A connection that sends nothing is held no longer than a slow head would be.
        self._arm_head_timer()

    def _arm_head_timer(self, since: float | None = None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
        self._head_timer = self.loop.call_at(
            (self.loop.time() if since is None else since) + self.head_seconds,
            self._head_too_slow,
        )

    def _head_too_slow(self) -> None:
        self._head_timer = None
        self._refuse(TOO_SLOW)

    def _refuse(self, answer: bytes) -> None:
        if self._refused or self.transport.is_closing():
            return
        self._refused = True
        self.transport.write(answer)
        self.transport.close()

    def _bad_request(self) -> None:
        if self._refused or self.transport.is_closing():
            return
        self._refused = True
        self.transport.write(bad_request(self.server_state.default_headers))
        self.transport.close()

    def timeout_keep_alive_handler(self) -> None:
        self._keep_alive_timer = None
        if self._idle_since is None:
            return  # a request came; the next wait arms the timer again
        left = self._idle_since + self.keep_alive_seconds - self.loop.time()
        if left > 0:  # idle again, but not for long enough yet
            self._keep_alive_timer = self.loop.call_later(left, self.timeout_keep_alive_handler)
            return
        if self.transport.get_write_buffer_size():
            # Still handing over the last answer: closed once it is taken, dropped if the
            # client stops taking it.
            self._watch_writes()
        if not self.transport.is_closing():
            self.transport.close()
