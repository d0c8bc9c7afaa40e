"""What the gateway's tests share: a served gateway and the types of the fixtures that make them.

The fixtures themselves live in conftest.py; test modules import these names from here.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from kubelambda.api.identity import FunctionKey
from kubelambda.gateway.platform import FakePlatform
from kubelambda.gateway.server import Gateway, ServingAddresses
from kubelambda.testing.standin import StandIn

HELLO = FunctionKey("default", "hello")


@dataclass
class Served:
    """A running gateway, its fake platform and clients for both ports."""

    gateway: Gateway
    platform: FakePlatform
    addresses: ServingAddresses
    client: httpx.AsyncClient
    admin: httpx.AsyncClient
    task: asyncio.Task[None]
    extra: dict[str, Any] = field(default_factory=dict)


StartGateway = Callable[..., Awaitable[Served]]
MakeStandIn = Callable[..., Awaitable[StandIn]]


async def wait_for(condition: Callable[[], object], *, within: float = 5.0) -> None:
    """Return once `condition()` is true, looking again every few milliseconds; fail the
    test (TimeoutError) if it is still false after `within` seconds."""
    async with asyncio.timeout(within):
        # Polling: the state watched belongs to the code under test, which signals nothing.
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.002)


# A minimal keep-alive answer of an instance.
OK = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"
# What a reply does with the connection: answer these bytes, then keep it or close it.
Reply = Callable[[int], Awaitable[tuple[bytes, bool]]]


class RawServer:
    """A loopback HTTP server scripted per request; counts connections and requests."""

    def __init__(self, reply: Reply) -> None:
        self._reply = reply
        self.connections = 0
        self.requests: list[bytes] = []
        self.port = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                body = await reader.readexactly(length)
                self.requests.append(head + body)
                answer, keep = await self._reply(len(self.requests))
                writer.write(answer)
                await writer.drain()
                if not keep:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def raw_server(reply: Reply) -> AsyncIterator[RawServer]:
    raw = RawServer(reply)
    server = await asyncio.start_server(raw._serve, "127.0.0.1", 0)
    raw.port = server.sockets[0].getsockname()[1]
    try:
        yield raw
    finally:
        server.close()
