"""A gateway server's bounds and what its connections share: `bounded_protocol()` makes the
`BoundedServer` uvicorn's server takes as its protocol class (server.py's `Gateway.serve`), which
makes each connection (connection.py) with its settings' limits, its stalled answers' budget,
its overload rule and whether the gateway drains.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

from kubelambda.gateway.connection import Beginner, BoundedProtocol, Responder
from kubelambda.gateway.framing import overload_answer
from kubelambda.gateway.overload import AcceptQueue, Overload
from kubelambda.gateway.settings import GatewaySettings
from kubelambda.gateway.stalls import Stalls

__all__ = ["MAX_UNREAD_ANSWER_BYTES", "BoundedServer", "bounded_protocol"]

# Bytes of answers not yet taken by clients that stopped reading them, over all connections
# of one server: beyond it, the answers stalled longest are dropped. Without it, 200 clients
# that ask for 5 MB and never read held 1 GB (benchmarks/gateway_abuse.py).
MAX_UNREAD_ANSWER_BYTES = 128 * 1024 * 1024


class BoundedServer:
    """One server's bounds and the state its connections share; uvicorn calls it as it would
    a protocol class, and it makes each connection (a `BoundedProtocol`) with them."""

    def __init__(
        self,
        settings: GatewaySettings,
        responder: Responder,
        overloaded: Callable[[], bool],
        *,
        accept_queue: AcceptQueue | None = None,
        overload: Overload | None = None,
        begin: Beginner | None = None,
    ) -> None:
        self.responder = responder
        self.begin = begin
        self.overloaded = overloaded
        self._accept_queue = accept_queue  # with the `overload` whose bound it keeps
        self._overload = overload
        self.max_head_bytes = settings.max_header_bytes
        self.max_headers = settings.max_headers
        self.head_seconds = settings.header_timeout_seconds
        self.write_seconds = settings.write_timeout_seconds
        self.max_unread_bytes = MAX_UNREAD_ANSWER_BYTES
        self.stalls = Stalls()
        # Built once: a refusal under overload costs a write and a close, nothing more.
        self.overloaded_answer = overload_answer(settings.retry_after_seconds)
        # Set while the gateway drains (Gateway.stop): every answer then closes its
        # connection, so a client's next request opens a new one, which the Service sends to
        # a replica that is staying.
        self.draining = False

    def refuse_waiting(self) -> int:
        """Refuse at once the connections waiting beyond the overload's bound in the accept
        queue (when given both), rather than one at every turn of the loop; how many. Called by
        a connection refused as it was accepted."""
        queue, overload = self._accept_queue, self._overload
        if queue is None or overload is None:
            return 0
        return queue.refuse_beyond(overload.accept_bound, self.overloaded_answer)

    # uvicorn.Server makes each connection's protocol with these arguments.
    def __call__(
        self,
        config: Any,
        server_state: Any,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> BoundedProtocol:
        return BoundedProtocol(self, config, server_state, _loop)


def bounded_protocol(
    settings: GatewaySettings,
    responder: Responder,
    *,
    overloaded: Callable[[], bool] | None = None,
    listener: socket.socket | None = None,
    begin: Beginner | None = None,
) -> BoundedServer:
    """What uvicorn's server takes as its protocol class: `responder` answers, within
    `settings`' limits; `begin`, when given, is offered each request whose body is all in
    first (connection.py).

    `overloaded` says when each new request is refused 503 at its head; by default an `Overload()`
    of this server's own: its loop over 1 s late lastingly, or, given the server's `listener`, over
    512 connections in its accept queue (over 16 while it sheds a lasting overflow). The admin
    server should pass `lambda: False`, so that /healthz and /metrics answer however late, never
    503.
    """
    if overloaded is not None:
        return BoundedServer(settings, responder, overloaded, begin=begin)
    queue = AcceptQueue(listener) if listener else None
    overload = Overload(accept_queue=queue)
    return BoundedServer(
        settings, responder, overload, accept_queue=queue, overload=overload, begin=begin
    )
