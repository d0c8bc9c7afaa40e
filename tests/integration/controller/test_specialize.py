"""controller/specialize.py's HttpSpecializer against a server on loopback that answers as a pool
pod does: the request it sends (path, bearer token, JSON body), the answers it reads back, and
no answer in time or no server at all as status 0, never an exception."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from kubelambda.controller.specialize import HttpSpecializer, Specialized
from support.waiting import free_port

BODY = {"function": "ns/fn", "env": {"A": "1"}, "files": {"app.py": "x = 1\n"}}


@asynccontextmanager
async def pod(
    status: int, answer: dict[str, Any], *, hang: bool = False
) -> AsyncIterator[tuple[int, list[tuple[bytes, dict[bytes, bytes], Any]]]]:
    """A pool pod's specialise endpoint on loopback; yields its port and what it received."""
    received: list[tuple[bytes, dict[bytes, bytes], Any]] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readline()
        headers = {}
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        body = json.loads(await reader.readexactly(int(headers[b"content-length"])))
        received.append((request, headers, body))
        if hang:
            await asyncio.sleep(30)  # stands for a runtime that never answers
        data = json.dumps(answer).encode()
        writer.write(
            f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n\r\n".encode()
            + data
        )
        await writer.drain()
        writer.close()

    port = free_port()
    server = await asyncio.start_server(serve, "127.0.0.1", port)
    try:
        yield port, received
    finally:
        server.close()


@pytest.mark.parametrize(
    ("status", "answer"),
    [
        (200, {"function": "ns/fn", "initMs": 12}),
        (422, {"errorType": "Runtime.ImportModuleError", "errorMessage": "No module named 'app'"}),
        (401, {"errorMessage": "a specialisation needs the pool's token"}),
    ],
)
def test_it_sends_the_request_and_reads_the_answer(status: int, answer: dict[str, Any]) -> None:
    async def body() -> None:
        async with pod(status, answer) as (port, received):
            got = await HttpSpecializer()(
                pod_ip="127.0.0.1", port=port, token="t0k", body=BODY, deadline=5
            )
            assert got == Specialized(status, answer)
            [(request, headers, sent)] = received
            assert request == b"POST /_kubelambda/specialize HTTP/1.1\r\n"
            assert headers[b"authorization"] == b"Bearer t0k"
            assert headers[b"content-type"] == b"application/json"
            assert sent == BODY

    asyncio.run(body())


def test_no_answer_in_time_or_no_pod_is_status_zero() -> None:
    async def body() -> None:
        async with pod(200, {}, hang=True) as (port, _):
            late = await HttpSpecializer()(
                pod_ip="127.0.0.1", port=port, token="t", body=BODY, deadline=0.3
            )
            assert late.status == 0 and "no answer within 0.3 s" in late.message
            assert late.reached  # the pod got the request: its state is unknown
        gone = await HttpSpecializer()(
            pod_ip="127.0.0.1", port=free_port(), token="t", body=BODY, deadline=5
        )
        assert gone.status == 0 and "could not be reached" in gone.message
        assert not gone.reached

    asyncio.run(body())


def test_a_connection_attempt_that_gets_no_answer_is_made_again_at_once() -> None:
    """A lost SYN would otherwise cost the kernel's one-second retransmission (seen on the e2e
    cluster when the policy engine's verdict was lost)."""
    attempts: list[float] = []

    async def lose_the_first(
        host: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        attempts.append(time.monotonic())
        if len(attempts) == 1:
            await asyncio.Event().wait()  # stands for a SYN nobody answers
        return await asyncio.open_connection(host, port)

    async def body() -> None:
        async with pod(200, {"function": "ns/fn", "initMs": 1}) as (port, received):
            began = time.monotonic()
            got = await HttpSpecializer(open_connection=lose_the_first)(
                pod_ip="127.0.0.1", port=port, token="t", body=BODY, deadline=5
            )
            assert got.status == 200, got
            assert len(attempts) == 2 and len(received) == 1
            assert time.monotonic() - began < 0.9, "waited as long as a SYN retransmission"

    asyncio.run(body())
