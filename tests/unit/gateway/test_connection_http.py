"""gateway/connection.py as an HTTP/1.1 server: each answer goes out in one write, and what
uvicorn's protocol did before it is kept (pipelining in order, 100 Continue, HEAD, keep-alive,
a head that arrives in pieces, HTTP/1.0, malformed requests)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from kubelambda.gateway.boundedserver import bounded_protocol
from kubelambda.gateway.http import Request, Response
from kubelambda.gateway.settings import GatewaySettings
from unit.gateway.connection_fakes import Config, ServerState, Transport
from unit.gateway.serving import HELLO, MakeStandIn, StartGateway

pytestmark = pytest.mark.anyio

GET = b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"
DATE = [(b"date", b"Thu, 01 Jan 2026 00:00:00 GMT")]


async def test_an_answer_is_written_in_one_piece() -> None:
    # Head and body in one write: one segment to the client, one system call (uvicorn's
    # protocol wrote the head and the body apart).
    async def respond(request: Request) -> Response:
        return Response(status=200, headers=[(b"content-type", b"text/plain")], body=b"hello")

    transport = Transport()
    protocol: Any = bounded_protocol(GatewaySettings(), respond)(Config(), ServerState(DATE), {})
    protocol.connection_made(transport)
    protocol.data_received(GET)
    async with asyncio.timeout(5):
        while not transport.writes:  # noqa: ASYNC110 - the fake transport signals nothing
            await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert len(transport.writes) == 1
    assert transport.writes[0] == (
        b"HTTP/1.1 200 OK\r\ndate: Thu, 01 Jan 2026 00:00:00 GMT\r\n"
        b"content-type: text/plain\r\ncontent-length: 5\r\n\r\nhello"
    )
    protocol.connection_lost(None)


async def test_a_header_that_could_split_the_answer_is_never_sent() -> None:
    async def respond(request: Request) -> Response:
        return Response(status=200, headers=[(b"x-bad", b"a\x01b")], body=b"")

    transport = Transport()
    protocol: Any = bounded_protocol(GatewaySettings(), respond)(Config(), ServerState(DATE), {})
    protocol.connection_made(transport)
    protocol.data_received(GET)
    async with asyncio.timeout(5):
        while not transport.writes:  # noqa: ASYNC110 - the fake transport signals nothing
            await asyncio.sleep(0)
    assert transport.writes[0].startswith(b"HTTP/1.1 500 ")
    assert b"x-bad" not in transport.writes[0]
    assert transport.closed


async def read_answers(reader: asyncio.StreamReader, count: int) -> list[bytes]:
    """`count` answers (head and body, by content-length) off one connection."""
    answers = []
    async with asyncio.timeout(10):
        for _ in range(count):
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            answers.append(head + await reader.readexactly(length))
    return answers


async def test_pipelined_requests_are_answered_in_order(
    serve: StartGateway, standin: MakeStandIn
) -> None:
    instance = await standin()
    served = await serve()
    served.platform.set_instances(HELLO, [instance.instance()])
    reader, writer = await asyncio.open_connection("127.0.0.1", served.addresses.public_port)
    writer.write(
        b"GET /hello/1 HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /hello/3 HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    answers = await read_answers(reader, 3)
    writer.close()
    assert [a.split(b" ", 2)[1] for a in answers] == [b"200", b"404", b"200"]
    assert b"/hello/1" in answers[0]  # the stand-in echoes the event
    assert b"/hello/3" in answers[2]


async def test_a_client_that_expects_100_continue_gets_it_then_its_answer(
    serve: StartGateway, standin: MakeStandIn
) -> None:
    instance = await standin()
    served = await serve()
    served.platform.set_instances(HELLO, [instance.instance()])
    reader, writer = await asyncio.open_connection("127.0.0.1", served.addresses.public_port)
    writer.write(
        b"POST /2015-03-31/functions/hello/invocations HTTP/1.1\r\nHost: x\r\n"
        b"Expect: 100-continue\r\nContent-Length: 2\r\n\r\n"
    )
    async with asyncio.timeout(10):
        assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
    writer.write(b"{}")
    (answer,) = await read_answers(reader, 1)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 200 ")


async def test_head_answers_carry_no_body(serve: StartGateway) -> None:
    served = await serve()
    reader, writer = await asyncio.open_connection("127.0.0.1", served.addresses.public_port)
    writer.write(
        b"HEAD /nowhere HTTP/1.1\r\nHost: x\r\n\r\nGET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    async with asyncio.timeout(10):
        head = await reader.readuntil(b"\r\n\r\n")
        # The next bytes are the second answer's, not a body of the first.
        second = await reader.readuntil(b"\r\n\r\n")
    writer.close()
    assert head.startswith(b"HTTP/1.1 404 ")
    assert b"content-length: 0" not in head  # the length of the body a GET would get
    assert second.startswith(b"HTTP/1.1 ")


async def test_a_head_in_pieces_within_the_time_is_answered(serve: StartGateway) -> None:
    settings = GatewaySettings(invoke_auth=False, header_timeout_seconds=0.5)
    served = await serve(settings=settings)
    reader, writer = await asyncio.open_connection("127.0.0.1", served.addresses.public_port)
    for piece in (b"GET /nowhere HT", b"TP/1.1\r\nHost:", b" x\r\n\r\n"):
        writer.write(piece)
        await writer.drain()
        await asyncio.sleep(0.1)  # a slow client is the point: 0.3 s in all, under 0.5 s
    (answer,) = await read_answers(reader, 1)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 404 ")


async def test_a_busy_keep_alive_connection_outlives_the_idle_timeout(
    serve: StartGateway,
) -> None:
    settings = GatewaySettings(invoke_auth=False, keep_alive_seconds=1)
    served = await serve(settings=settings)
    reader, writer = await asyncio.open_connection("127.0.0.1", served.addresses.public_port)
    loop = asyncio.get_running_loop()
    until = loop.time() + 2.5
    answered = 0
    while loop.time() < until:  # requests every 0.3 s for longer than the idle timeout
        writer.write(b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n")
        await read_answers(reader, 1)
        answered += 1
        await asyncio.sleep(0.3)
    # ...and, once idle, it is closed after the timeout.
    async with asyncio.timeout(5):
        assert await reader.read() == b""
    writer.close()
    assert answered >= 7


@pytest.mark.parametrize(
    ("request_bytes", "closes"),
    [
        (b"GET /nowhere HTTP/1.0\r\nHost: x\r\n\r\n", True),
        # As uvicorn did: HTTP/1.0 connections are not kept, even when the client offers.
        (b"GET /nowhere HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n", True),
        (b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n", False),
        (b"GET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", True),
        (b"GET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n", False),
        (b"GET /nowhere HTTP/1.0\r\nHost: x\r\nConnection: Keep-Alive, TE\r\n\r\n", True),
    ],
    ids=["http/1.0", "http/1.0 keep-alive", "http/1.1", "close", "http/1.1 keep-alive", "tokens"],
)
async def test_connection_close_as_the_client_asks(
    serve: StartGateway, request_bytes: bytes, closes: bool
) -> None:
    served = await serve()
    reader, writer = await asyncio.open_connection("127.0.0.1", served.addresses.public_port)
    writer.write(request_bytes)
    (answer,) = await read_answers(reader, 1)
    assert (b"connection: close" in answer.lower()) == closes
    if closes:
        async with asyncio.timeout(5):
            assert await reader.read() == b""
    writer.close()


async def test_a_malformed_request_is_400_and_closed(serve: StartGateway) -> None:
    served = await serve()
    reader, writer = await asyncio.open_connection("127.0.0.1", served.addresses.public_port)
    writer.write(b"GET /hello HTTP/1.1\r\nHost x\r\n\r\n")
    async with asyncio.timeout(5):
        answer = await reader.read()
    writer.close()
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert answer.endswith(b"Invalid HTTP request received.")
