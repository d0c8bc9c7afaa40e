"""gateway/connection.py under overload (overload.py): while the server's loop runs late, or it
holds as many unanswered requests as its limit, each new request is answered 503 with
Retry-After and `connection: close` as soon as its head is parsed, never reaching the responder;
on new connections and on kept-alive ones alike, and pipelined ones when their turn comes; and
while too many connections wait in the listener's accept queue, which a loop on time hides. A
connection accepted while the server is overloaded is answered so before its request is read."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from kubelambda.gateway.boundedserver import bounded_protocol
from kubelambda.gateway.framing import OVERLOADED_MESSAGE
from kubelambda.gateway.http import Request, Response
from kubelambda.gateway.overload import AcceptQueue, Overload
from kubelambda.gateway.settings import GatewaySettings
from unit.gateway.connection_fakes import Config, ServerState, Transport

pytestmark = pytest.mark.anyio

GET = b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"
OK = Response(status=200, headers=[(b"content-type", b"text/plain")], body=b"ok")


class _Responder:
    """Answers 200 once `release` is set (at once by default); counts what reached it."""

    def __init__(self) -> None:
        self.reached: list[str] = []
        self.release = asyncio.Event()
        self.release.set()

    async def __call__(self, request: Request) -> Response:
        self.reached.append(request.path)
        await self.release.wait()
        return OK


class _Lag:
    """An injected LoopLag: the loop runs as late as `seconds` says."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def __call__(self) -> float:
        return self.seconds


def _server(
    responder: _Responder, lag: _Lag, *, limit: int = 10, retry_after: int = 1
) -> tuple[type[Any], Config, ServerState]:
    protocol = bounded_protocol(
        GatewaySettings(retry_after_seconds=retry_after),
        responder,
        overloaded=Overload(max_loop_lag_seconds=1.0, loop_lag=lag),
    )
    config = Config()
    config.limit_concurrency = limit
    return protocol, config, ServerState()


def _connect(server: tuple[type[Any], Config, ServerState]) -> tuple[Any, Transport]:
    protocol_class, config, state = server
    protocol = protocol_class(config, state, {})
    transport = Transport()
    protocol.connection_made(transport)
    return protocol, transport


async def _answered(transport: Transport, count: int) -> None:
    async with asyncio.timeout(5):
        while len(transport.writes) < count:  # noqa: ASYNC110 - the fake transport signals nothing
            await asyncio.sleep(0)


def _refused(answer: bytes, *, retry_after: int = 1) -> bool:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.lower().split(b"\r\n")
    return (
        lines[0] == b"http/1.1 503 service unavailable"
        and b"retry-after: %d" % retry_after in lines
        and b"connection: close" in lines
        and OVERLOADED_MESSAGE in body
    )


@pytest.mark.parametrize(
    ("lag", "refused"),
    [(0.0, False), (0.9, False), (1.5, True)],
    ids=["on-time", "late-within-the-bound", "late-beyond-the-bound"],
)
async def test_a_new_connection_is_refused_at_its_head_only_while_the_loop_runs_late(
    lag: float, refused: bool
) -> None:
    responder, late = _Responder(), _Lag()
    late.seconds = lag
    protocol, transport = _connect(_server(responder, late, retry_after=3))
    protocol.data_received(GET)
    if refused:
        # At once, within data_received: nothing was scheduled, nothing routed.
        assert len(transport.writes) == 1
        assert _refused(transport.writes[0], retry_after=3)
        assert transport.closed
        assert responder.reached == []
    else:
        await _answered(transport, 1)
        assert transport.writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
        assert not transport.closed
        assert responder.reached == ["/hello"]
    protocol.connection_lost(None)


async def test_a_kept_alive_connection_is_refused_and_closed_once_the_loop_runs_late() -> None:
    responder, late = _Responder(), _Lag()
    protocol, transport = _connect(_server(responder, late))
    protocol.data_received(GET)
    await _answered(transport, 1)
    late.seconds = 2.0
    # The second request's body, in the same read as its head, is not read either.
    protocol.data_received(b"POST /hello HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
    assert len(transport.writes) == 2
    assert _refused(transport.writes[1])
    assert transport.closed
    assert responder.reached == ["/hello"]
    protocol.connection_lost(None)


async def test_a_pipelined_request_is_refused_when_its_turn_comes_after_the_one_before() -> None:
    responder, late = _Responder(), _Lag()
    responder.release.clear()
    protocol, transport = _connect(_server(responder, late))
    protocol.data_received(GET + GET)
    await _answered_reached(responder, 1)
    late.seconds = 2.0
    responder.release.set()
    await _answered(transport, 2)
    # The first is answered in full; only the one after it is refused.
    assert transport.writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert _refused(transport.writes[1])
    assert transport.closed
    assert responder.reached == ["/hello"]
    protocol.connection_lost(None)


async def test_requests_beyond_the_unanswered_bound_are_refused_at_their_head() -> None:
    responder, late = _Responder(), _Lag()
    responder.release.clear()
    server = _server(responder, late, limit=2)
    held = [_connect(server) for _ in range(2)]
    for protocol, _ in held:
        protocol.data_received(GET)
    await _answered_reached(responder, 2)
    # Both clients leave while their requests are held: the connections go, the work stays.
    for protocol, _ in held:
        protocol.connection_lost(None)
    protocol, transport = _connect(server)
    protocol.data_received(GET)
    assert len(transport.writes) == 1
    assert _refused(transport.writes[0])
    assert responder.reached == ["/hello", "/hello"]
    responder.release.set()
    # Once they are answered, the next request is taken.
    state = server[2]
    async with asyncio.timeout(5):
        while state.tasks:  # noqa: ASYNC110 - the fake server state signals nothing
            await asyncio.sleep(0)
    protocol, transport = _connect(server)
    protocol.data_received(GET)
    await _answered(transport, 1)
    assert transport.writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
    protocol.connection_lost(None)


@pytest.mark.parametrize(
    ("when_accepted", "refused"), [(False, False), (True, True)], ids=["in-time", "overloaded"]
)
async def test_a_connection_accepted_while_overloaded_is_refused_before_its_request_is_read(
    when_accepted: bool, refused: bool
) -> None:
    responder = _Responder()
    overloaded = [when_accepted]
    protocol_class = bounded_protocol(
        GatewaySettings(retry_after_seconds=2), responder, overloaded=lambda: overloaded[0]
    )
    # uvloop makes the protocol as it accepts the connection, while the connections behind it
    # still wait; by connection_made it has taken them all, and the queue reads short again.
    protocol = protocol_class(Config(), ServerState(), {})
    overloaded[0] = False
    transport = Transport()
    protocol.connection_made(transport)
    if refused:
        # At once, before any byte of its request came: a write and a close.
        assert len(transport.writes) == 1
        assert _refused(transport.writes[0], retry_after=2)
        assert transport.closed
        protocol.data_received(GET)  # what the client sent meanwhile is not read
        assert len(transport.writes) == 1
        assert responder.reached == []
    else:
        assert transport.writes == []
        protocol.data_received(GET)
        await _answered(transport, 1)
        assert transport.writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
        assert responder.reached == ["/hello"]
    protocol.connection_lost(None)


linux_only = pytest.mark.skipif(
    sys.platform != "linux", reason="the accept queue is read from Linux's TCP_INFO"
)


@contextlib.contextmanager
def _waiting(
    count: int, *, backlog: int = 64
) -> Iterator[tuple[socket.socket, list[socket.socket]]]:
    """A loopback listener that accepts nothing, with `count` connections in its queue, and
    their clients, in the order they connected."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(backlog)
        clients = [
            socket.create_connection(listener.getsockname(), timeout=5) for _ in range(count)
        ]
        try:
            # The kernel queues each once its handshake ends: at once on loopback, but waited for.
            deadline = time.monotonic() + 5
            while AcceptQueue(listener, interval=0)() < count:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{count} connections never reached the accept queue")
                time.sleep(0.001)
            yield listener, clients
        finally:
            for client in clients:
                client.close()


@linux_only
def test_the_accept_queue_counts_the_connections_the_kernel_holds_for_the_gateway() -> None:
    now = [0.0]
    with _waiting(3) as (listener, _):
        queue = AcceptQueue(listener, interval=0.01, clock=lambda: now[0])
        assert queue() == 3
        listener.accept()[0].close()
        assert queue() == 3  # read again only once `interval` has passed
        now[0] += 0.01
        assert queue() == 2


@linux_only
def test_those_waiting_beyond_the_bound_are_taken_answered_and_closed_at_once() -> None:
    with _waiting(5) as (listener, clients):
        queue = AcceptQueue(listener, interval=60)  # a reading that would last: read afresh
        assert queue.refuse_beyond(2, b"refused") == 3
        assert queue() == 2
        # The first to come are the first taken; the answer, then the end of the connection.
        for client in clients[:3]:
            assert client.recv(100) == b"refused"
            assert client.recv(100) == b""
        clients[3].settimeout(0.05)
        with pytest.raises(TimeoutError):
            clients[3].recv(100)
        assert queue.refuse_beyond(2, b"refused") == 0


@pytest.mark.parametrize(
    ("waiting", "refused"), [(512, False), (513, True)], ids=["at-the-bound", "over-the-bound"]
)
async def test_a_request_is_refused_while_too_many_connections_wait_to_be_accepted(
    waiting: int, refused: bool
) -> None:
    responder = _Responder()
    protocol_class = bounded_protocol(
        GatewaySettings(),
        responder,
        overloaded=Overload(loop_lag=_Lag(), accept_queue=lambda: waiting, max_accept_queue=512),
    )
    protocol, transport = _connect((protocol_class, Config(), ServerState()))
    protocol.data_received(GET)
    if refused:
        assert len(transport.writes) == 1
        assert _refused(transport.writes[0])
        assert responder.reached == []
    else:
        await _answered(transport, 1)
        assert responder.reached == ["/hello"]
    protocol.connection_lost(None)


@linux_only
async def test_a_server_given_its_listener_refuses_while_513_connections_wait_on_it() -> None:
    """...and with the connection it refuses as it accepts it, the one waiting beyond 512."""
    responder = _Responder()
    with _waiting(513, backlog=1024) as (listener, clients):
        protocol_class = bounded_protocol(GatewaySettings(), responder, listener=listener)
        protocol, transport = _connect((protocol_class, Config(), ServerState()))
        protocol.data_received(GET)
        assert AcceptQueue(listener, interval=0)() == 512
        assert _refused(clients[0].recv(1000))
    assert len(transport.writes) == 1
    assert _refused(transport.writes[0])
    assert responder.reached == []
    protocol.connection_lost(None)


async def _answered_reached(responder: _Responder, count: int) -> None:
    async with asyncio.timeout(5):
        while len(responder.reached) < count:  # noqa: ASYNC110 - the fake signals nothing
            await asyncio.sleep(0)
