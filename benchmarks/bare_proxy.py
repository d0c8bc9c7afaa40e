"""The least Python that does nginx's job in the gateway benchmarks: a keep-alive reverse proxy
on uvloop and httptools (the gateway's own parts) that sends each request to the instance's
invoke path with the invoke contract's headers, as gateway_common.nginx is configured to, and
passes the answer back. Callbacks only: no Task, coroutine or object per request beyond the
bytes it must make, no routing, limits, events, metrics or checks of any kind.

It is not a proxy to use (it trusts both sides entirely): it measures the floor a data path in
Python starts from, beside nginx's, so that the gateway's cost reads against both
(gateway_instructions.py).

    python benchmarks/bare_proxy.py --port P --instance-port I
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from typing import Protocol

import httptools
import uvloop

from gateway_common import ARN, INVOKE_PATH, TRACEPARENT, XRAY

# Hop-by-hop headers, not passed on (RFC 9110, 7.6.1), and the two the proxy sets itself.
_NOT_PASSED = frozenset(
    {b"connection", b"keep-alive", b"transfer-encoding", b"host", b"content-length"}
)


class _Parser(Protocol):
    def feed_data(self, data: bytes) -> None: ...


class _Messages(asyncio.Protocol):
    """One side's messages as they are parsed: the headers passed on, the body."""

    parser: _Parser

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.head: list[bytes] = []
        self.body: list[bytes] = []

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() not in _NOT_PASSED:
            self.head += (name, b": ", value, b"\r\n")

    def on_body(self, body: bytes) -> None:
        self.body.append(body)


class Upstream(_Messages):
    """The keep-alive connection to the instance of one client connection."""

    def __init__(self, client: Client) -> None:
        super().__init__()
        self.client = client
        self.parser: httptools.HttpResponseParser = httptools.HttpResponseParser(self)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.client.upstream_ready()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.client.transport is not None:
            self.client.transport.close()

    def on_message_complete(self) -> None:
        status = self.parser.get_status_code()
        body = b"".join(self.body)
        head = [
            b"HTTP/1.1 %d \r\n" % status,  # no reason phrase: optional (RFC 9112, 4)
            *self.head,
            b"content-length: %d\r\n\r\n" % len(body),
        ]
        self.head, self.body = [], []
        self.client.answer(b"".join(head) + body)


class Client(_Messages):
    """One client connection: a request at a time, each sent on as it is complete."""

    def __init__(self, instance_port: int, contract: bytes) -> None:
        super().__init__()
        self.instance_port = instance_port
        self.contract = contract  # the invoke contract's fixed headers
        self.parser: httptools.HttpRequestParser = httptools.HttpRequestParser(self)
        self.upstream: Upstream | None = None
        self.waiting: bytes | None = None  # a request made before the upstream connected
        self.connecting: asyncio.Task[object] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        upstream = self.upstream = Upstream(self)
        loop = asyncio.get_running_loop()
        self.connecting = loop.create_task(
            loop.create_connection(lambda: upstream, "127.0.0.1", self.instance_port)
        )

    def connection_lost(self, exc: Exception | None) -> None:
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.close()

    def on_message_complete(self) -> None:
        body = b"".join(self.body)
        request = b"".join(
            [
                self.parser.get_method(),
                b" " + INVOKE_PATH.encode() + b" HTTP/1.1\r\nhost: instance\r\n",
                *self.head,
                b"lambda-runtime-aws-request-id: %s\r\n" % os.urandom(16).hex().encode(),
                self.contract,
                b"content-length: %d\r\n\r\n" % len(body),
                body,
            ]
        )
        self.head, self.body = [], []
        upstream = self.upstream
        if upstream is not None and upstream.transport is not None:
            upstream.transport.write(request)
        else:
            self.waiting = request

    def upstream_ready(self) -> None:
        if self.waiting is not None and self.upstream is not None:
            self.upstream.transport.write(self.waiting)  # type: ignore[union-attr]
            self.waiting = None

    def answer(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)


async def serve(port: int, instance_port: int) -> None:
    deadline_ms = int((time.time() + 86400) * 1000)  # a day away, as nginx's configuration
    contract = (
        f"lambda-runtime-deadline-ms: {deadline_ms}\r\n"
        f"lambda-runtime-invoked-function-arn: {ARN}\r\n"
        f"x-amzn-trace-id: {XRAY}\r\n"
        f"traceparent: {TRACEPARENT}\r\n"
    ).encode()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: Client(instance_port, contract), "127.0.0.1", port, backlog=1024
    )
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--instance-port", type=int, required=True)
    args = parser.parse_args()
    uvloop.run(serve(args.port, args.instance_port))


if __name__ == "__main__":
    main()
