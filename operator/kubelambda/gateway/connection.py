"""The gateway's HTTP/1.1 connections, bounded: requests parsed with httptools and handed to a
`Responder` (the edge's apps), each answer written in one piece; limits on the number of
connections, on a request's head (size, header count, time to arrive), on idle connections,
and on answers clients stop reading. Past a limit the answer is 503, 431 or 408 at once
(refusals.py), then the connection closes; a client that does not read is cut off (reset), and its
answer freed (stalls.py). While the server is overloaded (overload.py: its loop runs over 1 s late
lastingly, or over 512 connections wait in its accept queue (16 in a lasting overflow); or it has as
many requests parsed and not yet answered as its connection limit), each request is answered 503
from prebuilt bytes as soon as its head is parsed, before routing, authorization or its body, and
the connection closes; so is a connection accepted while it is, once accepted (refusals.py).

`Gateway.serve` (server.py) runs uvicorn's server (listening, graceful shutdown, the date
header) with `bounded_protocol(settings, responder)` (boundedserver.py) as its protocol. Not
uvicorn's own protocol and ASGI: its scope, events, two writes per answer and per-header checks
were about a quarter of the gateway's CPU per request (benchmarks/gateway_throughput.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Final, Protocol
from urllib.parse import unquote

import httptools

from kubelambda.gateway.exchange import Exchange
from kubelambda.gateway.framing import INTERNAL, TOO_LARGE, answer_head
from kubelambda.gateway.http import Request, Response, parse_length
from kubelambda.gateway.refusals import Refusals
from kubelambda.gateway.stalls import Stalls

__all__ = ["Beginner", "BoundedProtocol", "Responder"]

log = logging.getLogger(__name__)

Responder = Callable[[Request], Awaitable[Response | None]]
"""Answers one request; None when the client left before it could be answered."""
Beginner = Callable[[Request, Callable[[Response | None], None]], bool]
"""Answers one request whose body is all in without a task, when it can (edge.py's
`PublicApp.begin`): True when it took it, its answer to come through the callback (None when
the client left); False when the `Responder` must answer it."""


# Answers up to this size go out in one write, head and body together.
_JOIN_BELOW: Final = 64 * 1024
# Body bytes buffered for a handler that has not taken them: beyond, stop reading.
_HIGH_WATER: Final = 64 * 1024


# Takes a lost connection's place as its parser: a connection's own holds its methods, and so
# it, a cycle that only a full collection would free (a flood leaves thousands).
_NO_PARSER: Final = httptools.HttpRequestParser(object())
# When a head began in the read being parsed: its time is read at the end of that read, and
# only if the head did not end in it (nearly always, it did).
_THIS_READ: Final = -1.0


class _Server(Protocol):
    """What a connection takes from its server (boundedserver.py's BoundedServer, which makes
    it): its bounds, the state its connections share, whether the gateway drains, and the
    refusal of the connections waiting beyond its bound."""

    responder: Responder
    begin: Beginner | None
    overloaded: Callable[[], bool]
    overloaded_answer: bytes
    max_head_bytes: int
    max_headers: int
    head_seconds: float
    write_seconds: float
    max_unread_bytes: int
    stalls: Stalls
    draining: bool

    def refuse_waiting(self) -> int: ...


class BoundedProtocol(Refusals):
    """One HTTP/1.1 connection of a server, within its bounds (its `BoundedServer`'s)."""

    def __init__(
        self,
        server: _Server,
        config: Any,
        server_state: Any,
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.server = server
        self.responder = server.responder
        self.begin = server.begin
        self.overloaded = server.overloaded
        self.overloaded_answer = server.overloaded_answer
        self.refuse_waiting = server.refuse_waiting
        self.max_head_bytes = server.max_head_bytes
        self.max_headers = server.max_headers
        self.head_seconds = server.head_seconds
        self.write_seconds = server.write_seconds
        self.max_unread_bytes = server.max_unread_bytes
        self.stalls = server.stalls
        self.loop = _loop or asyncio.get_event_loop()
        self.server_state = server_state
        self.connections: set[Any] = server_state.connections
        # The requests being answered: their tasks, and the exchanges begun without one (each
        # can be cancelled as a task, should uvicorn's graceful shutdown run out of time).
        self.tasks: set[Any] = server_state.tasks
        self.limit_concurrency: int | None = config.limit_concurrency
        self.keep_alive_seconds: float = config.timeout_keep_alive
        self.parser = httptools.HttpRequestParser(self)
        with contextlib.suppress(AttributeError):  # httptools < 0.6.3
            # Answer the first of pipelined requests even when the client closes after them.
            self.parser.set_dangerous_leniencies(lenient_data_after_close=True)
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.client: tuple[str, int] | None = None
        self.reading_paused = False
        self._writable: asyncio.Future[None] | None = None  # while the client stopped reading
        self._current: Exchange | None = None  # the request being answered
        self._parsing: Exchange | None = None  # the request whose body is arriving
        # The current request, not started yet: once its body is in, or at the end of the read
        # that brought its head if the body is still arriving.
        self._unstarted: Request | None = None
        # Pipelined requests, each with its exchange: the exchange does not refer to its request,
        # whose `receive` refers to the exchange (a cycle a full collection would have to free).
        self._pipeline: deque[tuple[Exchange, Request]] = deque()
        # Armed when the connection first waits for a next request and looked at when it
        # fires, rather than armed and cancelled around every request.
        self._keep_alive_timer: asyncio.TimerHandle | None = None
        self._idle_since: float | None = None  # waiting for the next request since
        # the request being parsed
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._expect_continue = False
        self._connection_named = False  # the request has a Connection header
        self._host: str | None = None
        self._content_length: int | None = None
        # bounds
        self._in_head = True  # the head of a request is arriving (or awaited)
        self._head_bytes = 0  # bytes received while in the head
        self._head_count = 0
        self._head_started: float | None = None  # when the head being parsed began
        self._head_timer: asyncio.TimerHandle | None = None
        self._write_timer: asyncio.TimerHandle | None = None
        self._unsent = 0  # bytes not handed over at the last progress
        self._progressed_at = 0.0
        self._refused = False
        # Asked now, not in connection_made: uvloop makes a connection's protocol as it takes it
        # from the accept queue, one at every turn of its loop (600 waiting took 600 turns), and
        # calls connection_made a turn later: the queue read here counts the ones behind this.
        self._arrived_overloaded = self.overloaded()

    # --- connections (made, refused, closed when idle: refusals.py) -----------------------

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.discard(self)
        self.stalls.remove(self)
        for timer in (self._head_timer, self._write_timer, self._keep_alive_timer):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._write_timer = self._keep_alive_timer = None
        for exchange in (self._current, self._parsing, *(e for e, _ in self._pipeline)):
            if exchange is not None:
                exchange.lost()
        self._pipeline.clear()
        # The exchanges and the parser (its callbacks) refer back to this connection: let go
        # of them, so that it is freed by reference counting once its last task ends.
        self._current = self._parsing = None
        self._unstarted = None
        self.parser = _NO_PARSER
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    def eof_received(self) -> None:
        pass  # half-closed: the answer still goes out, then the connection closes

    def shutdown(self) -> None:
        """uvicorn's graceful shutdown: close when idle, else after the current answer."""
        if self._current is None:
            self.transport.close()
        else:
            self._current.keep_alive = False
            self._pipeline.clear()

    def pause_reading(self) -> None:
        if not self.reading_paused:
            self.reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.reading_paused:
            self.reading_paused = False
            self.transport.resume_reading()

    # --- the head of each request: size, count, time --------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # what follows a refused head is not read
        self._idle_since = None
        # Counted here, not per header: the parser holds a header's bytes until it ends.
        if self._in_head:
            self._head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            pass  # no upgrades: the request was answered as plain HTTP
        except httptools.HttpParserError:
            self._bad_request()
            return
        request = self._unstarted
        if request is not None and self._current is not None:
            # Its body is still arriving: started now, the responder reads the rest.
            self._unstarted = None
            self._start(self._current, request)
        if self._head_started == _THIS_READ:
            self._head_started = self.loop.time()
        if self._in_head:
            if self._head_bytes > self.max_head_bytes:
                self._refuse(TOO_LARGE)
            elif self._head_started is not None and self._head_timer is None:
                # Part of a head came and the rest did not: from now on it is timed.
                self._arm_head_timer(self._head_started)

    # httptools callbacks

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._expect_continue = False
        self._connection_named = False
        self._host = None
        self._content_length = None
        self._head_count = 0
        # Timed from this read, but the timer is armed only if the head does not end in it.
        if self._head_started is None:
            self._head_started = _THIS_READ

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_count += 1
        if self._head_count > self.max_headers:
            self._refuse(TOO_LARGE)
            return
        name = name.lower()
        # llhttp keeps trailing whitespace, which is not part of a value (RFC 9110, 5.5).
        value = value.rstrip(b" \t")
        # The two the edge needs first, read here rather than in another pass over the headers.
        if name == b"host":
            self._host = value.decode("latin-1")
        elif name == b"content-length":
            self._content_length = parse_length(value)
        elif name == b"expect" and value.lower() == b"100-continue":
            self._expect_continue = True
        elif name == b"connection":
            self._connection_named = True
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        if self._refused:
            return
        self._in_head = False
        self._head_started = None
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        # Before the URL is parsed: under overload a request costs as little as it can. A
        # pipelined one is asked when its turn comes (_answered), not to cut the one before.
        if self._current is None and self._shed():
            return
        parser = self.parser
        # Any: httptools' stubs type its fields bytes, yet a URL without a query has None,
        # which mypyc's compiled code would refuse.
        url: Any = httptools.parse_url(self._url)
        raw_path: bytes = url.path
        query: bytes | None = url.query
        raw = raw_path.decode("ascii")
        path = unquote(raw) if "%" in raw else raw
        # HTTP/1.0 keeps a connection only when its Connection header asks (llhttp's flag):
        # without one, the parser's answer says it all, and get_http_version (which formats a
        # string) is not asked.
        keep_alive = parser.should_keep_alive() and not (
            self._connection_named and parser.get_http_version() == "1.0"
        )
        method = parser.get_method().decode("ascii")
        exchange = Exchange(
            self, keep_alive=keep_alive, expect=self._expect_continue, head=method == "HEAD"
        )
        client = self.client
        request = Request(
            method=method,
            path=path,
            raw_path=raw,
            query=query or b"",
            headers=self._headers,
            client=client[0] if client else "127.0.0.1",
            host=self._host,
            content_length=self._content_length,
            receive=exchange.receive,
        )
        self._parsing = exchange
        if self._current is None:
            self._current = exchange
            self._unstarted = request  # started once its body is in (on_message_complete)
        else:
            # Pipelined: answered in order, once the one before is; read no further meanwhile.
            self.pause_reading()
            self._pipeline.append((exchange, request))

    def on_body(self, body: bytes) -> None:
        exchange = self._parsing
        if self._refused or exchange is None or exchange.done:
            return
        exchange.add(body)
        if exchange.size > _HIGH_WATER:
            self.pause_reading()

    def on_message_complete(self) -> None:
        exchange = self._parsing
        if self._refused or exchange is None or exchange.done:
            return
        exchange.end()
        request = self._unstarted
        if request is not None and exchange is self._current:
            self._unstarted = None
            self._start(exchange, request)

    # --- answering ---------------------------------------------------------------------------

    def _shed(self) -> bool:
        """Refuse the next request at once if the server takes no new ones now: its loop runs
        late (`overloaded`), or it holds as many requests parsed and not yet answered as it may
        hold connections (uvicorn's `limit_concurrency` counts both: the tasks of clients that
        left while held outlive their connections)."""
        limit = self.limit_concurrency
        if self.overloaded() or (limit is not None and len(self.tasks) >= limit):
            self._refuse(self.overloaded_answer)
            return True
        return False

    def _start(self, exchange: Exchange, request: Request) -> None:
        self._current = exchange
        exchange.offer_body(request)
        begin = self.begin
        if begin is not None and request.complete and self._writable is None:
            self.tasks.add(exchange)  # in flight, as a task would be (_shed counts them)
            if begin(request, exchange.answer):
                return
            self.tasks.discard(exchange)
        # The Task loop.create_task makes (no factory is set), named: unnamed, it formats "Task-N".
        exchange.task = asyncio.Task(self._run(exchange, request), loop=self.loop, name="request")
        self.tasks.add(exchange.task)

    def answer_begun(self, exchange: Exchange, response: Response | None) -> None:
        """The answer to a request `begin` took (Exchange.answer): written as `_run` writes."""
        self.tasks.discard(exchange)
        if response is None:  # the client left
            exchange.done = True
            return
        writable = self._writable
        if writable is not None:
            # The client is not taking the answer before this one: written once it does.
            writable.add_done_callback(functools.partial(self._write_later, exchange, response))
            return
        self._write(exchange, response)

    def _write_later(self, exchange: Exchange, response: Response, _: object) -> None:
        self._write(exchange, response)

    def cancel_begun(self, exchange: Exchange) -> None:
        """uvicorn's graceful shutdown ran out of time with a request `begin` took (as it
        cancels a task, Exchange.cancel): closed, as `_run` closes when cancelled; its answer,
        when it comes, is dropped. Out of the server's tasks soon, not now: uvicorn is going
        through them (a task, too, leaves them only once its cancellation has run)."""
        self.loop.call_soon(self.tasks.discard, exchange)
        exchange.done = True
        self.transport.close()

    async def _run(self, exchange: Exchange, request: Request) -> None:
        try:
            try:
                response = await self.responder(request)
            except asyncio.CancelledError:
                self.transport.close()  # uvicorn gave up waiting at shutdown
                raise
            except Exception:
                log.exception("unexpected error answering a request")
                response = INTERNAL
            if response is None:  # the client left
                exchange.done = True
                return
            if self._writable is not None:
                # The client is not taking the answer before this one: do not pile up more.
                await self._writable
            self._write(exchange, response)
        finally:
            # Out of the count as it ends, not by a done callback, which cost a call_soon per
            # request (one cancelled before it ran, at shutdown, stays: nobody counts then).
            self.tasks.discard(exchange.task)

    def _write(self, exchange: Exchange, response: Response) -> None:
        exchange.done = True
        transport = self.transport
        if exchange.disconnected or transport.is_closing():
            return
        framed = answer_head(
            response,
            self.server_state.default_headers,
            keep_alive=exchange.keep_alive and not self.server.draining,
        )
        if framed is None:
            log.error("refused to send an answer with a malformed header: %r", response.headers)
            self._write(exchange, INTERNAL)
            return
        head, keep_alive = framed
        body = response.body
        if exchange.head:
            transport.write(b"".join(head))
        elif len(body) < _JOIN_BELOW:
            head.append(body)
            transport.write(b"".join(head))
        else:
            transport.writelines((b"".join(head), body))
        self.server_state.total_requests += 1
        if not keep_alive:
            transport.close()
            return
        self._answered()

    def _answered(self) -> None:
        """The current answer is out: start the next pipelined request, or wait for one."""
        self._current = None
        self._in_head = True
        self._head_bytes = 0
        # The next request's head starts the clock again (the keep-alive timeout covers the
        # wait for its first byte).
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        self.resume_reading()
        if self._pipeline:
            exchange, request = self._pipeline.popleft()
            if not self._shed():
                self._start(exchange, request)
        else:
            self._idle_since = self.loop.time()
            if self._keep_alive_timer is None:
                self._keep_alive_timer = self.loop.call_later(
                    self.keep_alive_seconds, self.timeout_keep_alive_handler
                )
