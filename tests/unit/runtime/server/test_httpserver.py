"""The runtime's HTTP/1.1 server, spoken to over a real loopback socket with raw bytes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from kubelambda_runtime.server.httpserver import (
    Connection,
    HttpServer,
    Request,
    Response,
    encode_response,
)
from support.waiting import wait_for_async


async def echo(request: Request) -> Response:
    body = b"%s %s %d %s" % (
        request.method.encode(),
        request.path.encode(),
        len(request.body),
        b"large" if request.too_large else b"ok",
    )
    return Response(200, body, [(b"x-seen", request.headers.get(b"x-seen", b"-"))])


@contextlib.asynccontextmanager
async def served(
    handler: Callable[[Request], Awaitable[Response | None]], *, max_body: int = 100
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """A server on a loopback port and a client connection to it."""
    server = HttpServer(handler, max_body=max_body)
    await server.start("127.0.0.1", 0)
    assert server._server is not None
    port = server._server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        yield reader, writer
    finally:
        writer.close()
        await server.stop(grace=1)


async def exchange(raw: bytes, *, read_until_close: bool = True, max_body: int = 100) -> bytes:
    async with served(echo, max_body=max_body) as (reader, writer):
        writer.write(raw)
        await writer.drain()
        if read_until_close:
            return await asyncio.wait_for(reader.read(), 5)
        return await asyncio.wait_for(reader.read(65536), 5)


def test_encode_response():
    raw = encode_response(
        Response(404, b"{}", [(b"content-type", b"application/json")]), keep_alive=False
    )
    assert raw == (
        b"HTTP/1.1 404 Not Found\r\ncontent-length: 2\r\ncontent-type: application/json\r\n"
        b"connection: close\r\n\r\n{}"
    )


def test_pipelined_requests_are_answered_in_order_and_close_is_honoured():
    raw = (
        b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nX-Seen: 1\r\n\r\nabc"
        b"GET /b?q=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    data = asyncio.run(exchange(raw))
    first, second = data.split(b"HTTP/1.1 200 OK")[1:]
    assert first.endswith(b"POST /a 3 ok")
    assert b"x-seen: 1" in first
    assert second.endswith(b"GET /b 0 ok")
    assert b"connection: close" in second


def test_chunked_bodies_are_decoded():
    raw = (
        b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    )
    assert asyncio.run(exchange(raw)).endswith(b"POST /c 5 ok")


@pytest.mark.parametrize(
    "raw",
    [
        b"POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: 101\r\nConnection: close\r\n\r\n"
        + b"x" * 101,
        b"POST /big HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        b"65\r\n" + b"x" * 101 + b"\r\n0\r\n\r\n",
    ],
    ids=["content-length", "chunked"],
)
def test_bodies_over_the_limit_are_flagged_not_kept(raw):
    assert asyncio.run(exchange(raw)).endswith(b"POST /big 0 large")


def test_expect_continue_gets_100_before_the_body_is_sent():
    raw = b"POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n"
    data = asyncio.run(exchange(raw, read_until_close=False))
    assert data == b"HTTP/1.1 100 Continue\r\n\r\n"


def test_malformed_requests_get_400_and_the_connection_closes():
    data = asyncio.run(exchange(b"NOT HTTP AT ALL\r\n\r\n"))
    assert data.startswith(b"HTTP/1.1 400 Bad Request")
    assert b"connection: close" in data


def test_a_lent_connection_is_not_read_until_reclaimed_with_its_unread_bytes():
    async def scenario() -> tuple[bytes, bytes]:
        lent: list[tuple[Connection, int]] = []

        async def lender(request: Request) -> Response | None:
            if request.path == "/lend" and request.connection is not None:
                assert request.keep_alive and request.connection.lendable()
                lent.append((request.connection, request.connection.lend()))
                return None
            return await echo(request)

        async with served(lender) as (reader, writer):
            writer.write(b"POST /lend HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            await wait_for_async(lambda: lent, seconds=5, what="the connection to be lent")
            connection, fd = lent[0]
            # The borrower answers on its copy of the descriptor and reads the next
            # request; the server reads nothing meanwhile.
            borrowed = socket.socket(fileno=os.dup(fd))
            borrowed.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\nborrowed")
            writer.write(b"GET /next HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            await writer.drain()
            first = await asyncio.wait_for(reader.readexactly(46), 5)
            await asyncio.sleep(0.05)
            unread = await asyncio.get_running_loop().sock_recv(borrowed, 1000)
            borrowed.close()
            connection.reclaim(unread)  # the server answers what the borrower read
            second = await asyncio.wait_for(reader.read(), 5)
        return first, second

    first, second = asyncio.run(scenario())
    assert first.endswith(b"borrowed")
    assert second.startswith(b"HTTP/1.1 200 OK") and second.endswith(b"GET /next 0 ok")


def test_reclaiming_can_answer_first_or_close():
    async def scenario(*, answer: bytes = b"", close: bool) -> bytes:
        async def lender(request: Request) -> Response | None:
            connection = request.connection
            assert connection is not None
            connection.lend()
            loop = asyncio.get_running_loop()
            loop.call_soon(lambda: connection.reclaim(answer=answer, close=close))
            return None

        async with served(lender) as (reader, writer):
            writer.write(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
            return await asyncio.wait_for(reader.read(), 5)

    answer = b"HTTP/1.1 504 Gateway Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    assert asyncio.run(scenario(answer=answer, close=True)) == answer
    assert asyncio.run(scenario(close=True)) == b""


def test_a_connection_with_an_answer_still_being_written_is_not_lent():
    seen: list[bool] = []

    async def handler(request: Request) -> Response | None:
        if request.path == "/big":
            return Response(200, b"x" * 20_000_000)  # more than the socket takes at once
        assert request.connection is not None
        seen.append(request.connection.lendable())
        return Response(200, b"small")

    async def scenario() -> bytes:
        async with served(handler) as (reader, writer):
            writer.write(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
            await writer.drain()
            await asyncio.sleep(0.2)  # the server wrote what the socket took; it keeps the rest
            writer.write(b"GET /small HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            await writer.drain()
            await wait_for_async(lambda: seen, seconds=5, what="the second request")
            return await asyncio.wait_for(reader.read(), 10)

    data = asyncio.run(scenario())
    assert seen == [False]
    assert data.endswith(b"small") and len(data) > 20_000_000
