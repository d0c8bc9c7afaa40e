"""The runtime's HTTP/1.1 server, spoken to over a real loopback socket with raw bytes."""

from __future__ import annotations

import asyncio

import pytest

from kubelambda_runtime.httpserver import HttpServer, Request, Response, encode_response


async def echo(request: Request) -> Response:
    body = b"%s %s %d %s" % (
        request.method.encode(),
        request.path.encode(),
        len(request.body),
        b"large" if request.too_large else b"ok",
    )
    return Response(200, body, [(b"x-seen", request.headers.get(b"x-seen", b"-"))])


async def exchange(raw: bytes, *, read_until_close: bool = True, max_body: int = 100) -> bytes:
    server = HttpServer(echo, max_body=max_body)
    await server.start("127.0.0.1", 0)
    assert server._server is not None
    port = server._server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    if read_until_close:
        data = await asyncio.wait_for(reader.read(), 5)
    else:
        data = await asyncio.wait_for(reader.read(65536), 5)
    writer.close()
    await server.stop(grace=1)
    return data


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
