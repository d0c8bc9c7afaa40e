"""A stand-in for a Kafka listener that wants SASL, on a loopback port: it answers the client's
ApiVersions request (which brokers take before authentication) and closes the connection at the
next request. Used by the unit tests of the Kafka probe (delivery/reachability.py) and of the
dispatcher's use of it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from aiokafka.protocol.admin import (  # type: ignore[import-untyped]
    ApiVersionRequest,
    ApiVersionResponse_v0,
)
from aiokafka.protocol.metadata import MetadataRequest  # type: ignore[import-untyped]

# The APIs the stand-in says it speaks: Metadata v0-v1, so the client sends one.
_VERSIONS = ApiVersionResponse_v0(error_code=0, api_versions=[(MetadataRequest.API_KEY, 0, 1)])


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            size = int.from_bytes(await reader.readexactly(4), "big")
            request = await reader.readexactly(size)
            # A request header: api_key (int16), api_version (int16), correlation_id (int32).
            if int.from_bytes(request[:2], "big") != ApiVersionRequest.API_KEY:
                return  # what a SASL listener does to a request before authentication
            answer = request[4:8] + _VERSIONS.encode()
            writer.write(len(answer).to_bytes(4, "big") + answer)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        return
    finally:
        writer.close()


@contextlib.asynccontextmanager
async def listener_wanting_sasl() -> AsyncIterator[str]:
    """The stand-in's address, host:port, while the block runs; its connections end with it."""
    handlers: set[asyncio.Task[Any]] = set()
    writers: set[asyncio.StreamWriter] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if (task := asyncio.current_task()) is not None:
            handlers.add(task)
        writers.add(writer)
        await _serve(reader, writer)

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.close()
        for writer in writers:
            writer.close()  # a handler still reading sees the end of its stream and returns
        await asyncio.wait_for(asyncio.gather(*handlers), timeout=5)
        await server.wait_closed()
