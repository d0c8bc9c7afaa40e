"""platforms/kubernetes/waker.py: the gateway's wake-up is one POST to the autoscaler, with the
release's token when it has one and the gateway's requests for the Function in its body; a
refused token is a warning naming the cause."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
from typing import Any

import pytest

from kubelambda.api.identity import FunctionKey
from kubelambda.platforms.kubernetes.waker import AutoscalerWaker, WarmPod


async def asked(token: str | None, status: bytes, *, concurrency: int = 0) -> bytes:
    """What the waker sent to a loopback autoscaler answering `status`: head and body."""
    received: asyncio.Queue[bytes] = asyncio.Queue()

    async def autoscaler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = re.search(rb"\r\nContent-Length: (\d+)\r\n", head)
        assert length is not None, head
        received.put_nowait(head + await reader.readexactly(int(length.group(1))))
        writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(autoscaler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        waker = AutoscalerWaker(f"http://127.0.0.1:{port}", token=token, gateway="gw-1")
        await waker(FunctionKey("team-a", "hello"), concurrency)
        return await received.get()


def test_the_wake_up_carries_the_token_when_there_is_one() -> None:
    request = asyncio.run(asked("s3cr3t", b"202 Accepted"))
    assert request.startswith(b"POST /wake/team-a/hello HTTP/1.1\r\n")
    assert b"\r\nAuthorization: Bearer s3cr3t\r\n" in request
    assert b"Authorization" not in asyncio.run(asked(None, b"202 Accepted"))


def test_the_wake_up_says_what_the_gateway_holds_and_has_in_flight() -> None:
    request = asyncio.run(asked(None, b"202 Accepted", concurrency=7))
    head, _, body = request.partition(b"\r\n\r\n")
    assert b"\r\nContent-Type: application/json\r\n" in head
    assert json.loads(body) == {"concurrency": 7, "gateway": "gw-1"}


def test_a_refused_token_is_named_in_the_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        asyncio.run(asked("old", b"401 Unauthorized"))
    assert "refused the wake-up token" in caplog.text


async def answered(body: bytes, *, wakes: int = 1) -> list[WarmPod | None]:
    """What the waker returns from a loopback autoscaler answering 202 with ``body``."""

    async def autoscaler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 202 Accepted\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(autoscaler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        waker = AutoscalerWaker(f"http://localhost:{port}")
        return [await waker(FunctionKey("team-a", "hello"), 0) for _ in range(wakes)]


@pytest.mark.parametrize(
    ("body", "named"),
    [
        (
            b'{"replicas": 1, "instance": {"pod": "p-1", "ip": "10.1.2.3", "port": 8080}}',
            WarmPod("p-1", "10.1.2.3", 8080),
        ),
        (b'{"replicas": 1}', None),
        (b'{"replicas": 1, "instance": {"pod": "p-1", "ip": "not an ip", "port": 8080}}', None),
        (b'{"replicas": 1, "instance": {"pod": "p-1", "ip": "10.1.2.3", "port": 0}}', None),
        (b'{"replicas": 1, "instance": {"pod": "p-1", "ip": "10.1.2.3"}}', None),
        (b"[1, 2]", None),
        (b"not json", None),
    ],
)
def test_the_pod_a_warm_start_made_is_taken_from_the_answer(
    body: bytes, named: WarmPod | None
) -> None:
    assert asyncio.run(answered(body)) == [named]


def test_the_autoscalers_name_is_looked_up_once_not_on_every_wake_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each lookup is a trip to the cluster's DNS inside a cold start."""
    looked_up: list[str] = []
    real = socket.getaddrinfo

    def counting(host: str, *args: Any, **kwargs: Any) -> Any:
        looked_up.append(host)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", counting)
    assert asyncio.run(answered(b"{}", wakes=3)) == [None, None, None]
    assert looked_up == ["localhost"]
