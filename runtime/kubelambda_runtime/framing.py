"""The frames the server and its workers exchange over a socket pair.

A frame is a JSON header and a raw body, each length-prefixed, so event and result
bytes pass through untouched (the server never parses them: the worker does).
"""

from __future__ import annotations

import asyncio
import json
import struct
from collections import deque
from typing import Any, BinaryIO, cast

_PREFIX = struct.Struct("!II")


def encode(header: dict[str, Any], body: bytes = b"") -> bytes:
    head = json.dumps(header, separators=(",", ":")).encode()
    return _PREFIX.pack(len(head), len(body)) + head + body


def _read_exactly(stream: BinaryIO, size: int) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise EOFError("the other side closed the socket")
    return data


def read_blocking(stream: BinaryIO) -> tuple[dict[str, Any], bytes]:
    """Read one frame from a buffered socket file (the worker's side).

    Raises EOFError when the server is gone.
    """
    head_size, body_size = _PREFIX.unpack(_read_exactly(stream, _PREFIX.size))
    header: dict[str, Any] = json.loads(_read_exactly(stream, head_size))
    body = _read_exactly(stream, body_size) if body_size else b""
    return header, body


class FrameProtocol(asyncio.Protocol):
    """The server's side: frames arrive as futures, one exchange at a time.

    A bare protocol rather than asyncio streams, because this sits on every
    invocation's path and streams cost several coroutine hops per frame.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._frames: deque[tuple[dict[str, Any], bytes]] = deque()
        self._waiter: asyncio.Future[tuple[dict[str, Any], bytes]] | None = None
        self._transport: asyncio.Transport | None = None
        self._lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        while len(buffer) >= _PREFIX.size:
            head_size, body_size = _PREFIX.unpack_from(buffer)
            end = _PREFIX.size + head_size + body_size
            if len(buffer) < end:
                return
            header = json.loads(buffer[_PREFIX.size : _PREFIX.size + head_size])
            body = bytes(buffer[_PREFIX.size + head_size : end])
            del buffer[:end]
            waiter = self._waiter
            if waiter is not None and not waiter.done():
                self._waiter = None
                waiter.set_result((header, body))
            else:
                self._frames.append((header, body))

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionResetError("the worker closed its socket"))

    def send(self, frame: bytes) -> None:
        if self._transport is None or self._lost:
            raise ConnectionResetError("the worker closed its socket")
        self._transport.write(frame)

    def receive(self) -> asyncio.Future[tuple[dict[str, Any], bytes]]:
        """A future for the next frame; fails with ConnectionResetError when the worker is gone."""
        future: asyncio.Future[tuple[dict[str, Any], bytes]]
        future = asyncio.get_running_loop().create_future()
        if self._frames:
            future.set_result(self._frames.popleft())
        elif self._lost:
            future.set_exception(ConnectionResetError("the worker closed its socket"))
        else:
            self._waiter = future
        return future

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
