"""platforms/kubernetes/waker.py: the gateway's wake-up is one POST to the autoscaler, with the
release's token when it has one; a refused token is a warning naming the cause."""

from __future__ import annotations

import asyncio
import logging

import pytest

from kubelambda.api.identity import FunctionKey
from kubelambda.platforms.kubernetes.waker import AutoscalerWaker


async def asked(token: str | None, status: bytes) -> bytes:
    """What the waker sent to a loopback autoscaler answering `status`."""
    received: asyncio.Queue[bytes] = asyncio.Queue()

    async def autoscaler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.put_nowait(await reader.readuntil(b"\r\n\r\n"))
        writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(autoscaler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        waker = AutoscalerWaker(f"http://127.0.0.1:{port}", token=token)
        await waker(FunctionKey("team-a", "hello"))
        return await received.get()


def test_the_wake_up_carries_the_token_when_there_is_one() -> None:
    request = asyncio.run(asked("s3cr3t", b"202 Accepted"))
    assert request.startswith(b"POST /wake/team-a/hello HTTP/1.1\r\n")
    assert b"\r\nAuthorization: Bearer s3cr3t\r\n" in request
    assert b"Authorization" not in asyncio.run(asked(None, b"202 Accepted"))


def test_a_refused_token_is_named_in_the_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        asyncio.run(asked("old", b"401 Unauthorized"))
    assert "refused the wake-up token" in caplog.text
