"""One upstream connection (gateway/upstreamconnection.py): its deadline, also when reused,
answers parsed whole, and every way an instance's answer can break."""

from __future__ import annotations

import asyncio

import pytest

from kubelambda.gateway.exceptions import UpstreamFailed, UpstreamTimeout
from kubelambda.gateway.upstream import UpstreamPool
from unit.gateway.serving import OK, raw_server
from unit.gateway.upstream_calls import call

pytestmark = pytest.mark.anyio


async def test_no_answer_by_the_deadline_is_upstream_timeout() -> None:
    async def never(_: int) -> tuple[bytes, bool]:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    pool = UpstreamPool()
    async with raw_server(never) as server:
        with pytest.raises(UpstreamTimeout):
            await call(pool, server.port, seconds=0.1)
        # the timed-out connection is not reused
        assert pool._idle == {}


async def test_a_reused_connection_times_out_at_its_own_shorter_deadline() -> None:
    # The connection's timer was armed for the first exchange's far deadline; the second,
    # on the same connection, must not wait that long.
    async def first_only(n: int) -> tuple[bytes, bool]:
        if n > 1:
            await asyncio.Event().wait()
        return OK, True

    pool = UpstreamPool()
    async with raw_server(first_only) as server:
        await call(pool, server.port, seconds=600)
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(UpstreamTimeout):
            await call(pool, server.port, seconds=0.1)
        assert loop.time() - started < 5
    assert server.connections == 1


async def test_a_reused_connection_waits_for_a_later_deadline_than_the_first() -> None:
    # The timer armed for the first exchange's short deadline fires while the second is in
    # flight: it watches the second's own deadline instead of cutting it off.
    async def second_is_slow(n: int) -> tuple[bytes, bool]:
        if n == 2:
            await asyncio.sleep(0.5)
        return OK, True

    pool = UpstreamPool()
    async with raw_server(second_is_slow) as server:
        await call(pool, server.port, seconds=0.2)
        assert await call(pool, server.port, seconds=10) == b"{}"
    assert server.connections == 1


async def test_chunked_answers_are_reassembled() -> None:
    async def chunked(_: int) -> tuple[bytes, bool]:
        return (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
            b'3\r\n{"a\r\n5\r\n": 1}\r\n0\r\n\r\n',
            True,
        )

    pool = UpstreamPool()
    async with raw_server(chunked) as server:
        assert await call(pool, server.port) == b'{"a": 1}'
        assert await call(pool, server.port) == b'{"a": 1}'
    assert server.connections == 1


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (b"NOT HTTP AT ALL\r\n\r\n", "malformed HTTP"),
        (b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n{}", "closed the connection"),
        (b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n" + b"x" * 100, "more than 64 bytes"),
    ],
)
async def test_broken_answers_are_upstream_failed(answer: bytes, message: str) -> None:
    async def broken(_: int) -> tuple[bytes, bool]:
        return answer, False

    pool = UpstreamPool(max_response_bytes=64)
    async with raw_server(broken) as server:
        with pytest.raises(UpstreamFailed, match=message):
            await call(pool, server.port)
