"""The frames the server and its workers exchange over a socket pair.

A frame is a JSON header and a raw body, each length-prefixed, so event and result
bytes pass through untouched (the server never parses them: the worker does).
"""

from __future__ import annotations

import asyncio
import json
import select
import socket
import struct
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, cast

_PREFIX = struct.Struct("!II")

Frame = tuple[dict[str, Any], bytes, int | None]
"""A header, a body, and the descriptor passed with it, if any."""


def encode(header: dict[str, Any], body: bytes = b"") -> bytes:
    head = json.dumps(header, separators=(",", ":")).encode()
    return _PREFIX.pack(len(head), len(body)) + head + body


class Channel:
    """The worker's side of its socket: frames, with the connections the server passes along.

    A frame whose header says ``"fd": true`` was sent with one descriptor (SCM_RIGHTS); the
    kernel delivers it with the frame's first bytes, so descriptors are matched to frames in
    order.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = bytearray()
        self._fds: deque[int] = deque()
        self._poll = select.poll()
        self._poll.register(sock, select.POLLIN)
        self._also: int | None = None

    def next(self, also: socket.socket | None = None) -> Frame | None:
        """The next frame, waiting for it; or None as soon as ``also`` (a connection the
        worker holds) is readable and no frame is. The server's frames come first.
        Raises EOFError when the server is gone."""
        while True:
            frame = self._parse()
            if frame is not None:
                return frame
            if also is not None and not self._wait(also):
                return None
            data, fds, _, _ = socket.recv_fds(self._sock, 1 << 16, 4)
            self._fds.extend(fds)
            if not data:
                raise EOFError("the server closed the socket")
            self._buffer += data

    def _wait(self, also: socket.socket) -> bool:
        """Block until the socket or ``also`` is readable; True when the socket is."""
        fd = also.fileno()
        if self._also != fd:
            if self._also is not None:
                self._poll.unregister(self._also)
            self._poll.register(fd, select.POLLIN)
            self._also = fd
        ready = {fd for fd, _ in self._poll.poll()}
        return self._sock.fileno() in ready

    def forget(self, also: socket.socket) -> None:
        """Stop watching a connection (before it is closed)."""
        if self._also == also.fileno():
            self._poll.unregister(self._also)
            self._also = None

    def _parse(self) -> Frame | None:
        buffer = self._buffer
        if len(buffer) < _PREFIX.size:
            return None
        head_size, body_size = _PREFIX.unpack_from(buffer)
        end = _PREFIX.size + head_size + body_size
        if len(buffer) < end:
            return None
        header: dict[str, Any] = json.loads(buffer[_PREFIX.size : _PREFIX.size + head_size])
        body = bytes(buffer[_PREFIX.size + head_size : end])
        del buffer[:end]
        fd = self._fds.popleft() if header.get("fd") and self._fds else None
        return header, body, fd


class FrameProtocol(asyncio.Protocol):
    """The server's side: frames arrive as futures, one exchange at a time.

    A bare protocol rather than asyncio streams, because this sits on every
    invocation's path and streams cost several coroutine hops per frame.
    """

    def __init__(
        self,
        *,
        side: Mapping[str, Callable[[dict[str, Any], bytes], None]] | None = None,
        lost: Callable[[], None] | None = None,
    ) -> None:
        self._buffer = bytearray()
        self._frames: deque[tuple[dict[str, Any], bytes]] = deque()
        self._waiter: asyncio.Future[tuple[dict[str, Any], bytes]] | None = None
        self._transport: asyncio.Transport | None = None
        self._lost = False
        # Frames of these types go to their callback, never to a waiter; ``lost`` is called
        # when the socket closes.
        self._side = dict(side or {})
        self._on_lost = lost

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
            side = self._side.get(header.get("type"))
            if side is not None:
                side(header, body)
                continue
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
        if self._on_lost is not None:
            self._on_lost()

    def idle_writer(self) -> bool:
        """Nothing waits to be written: bytes sent beside the transport keep their order."""
        transport = self._transport
        return transport is not None and not self._lost and not transport.get_write_buffer_size()

    def reason_given(self) -> str | None:
        """The reason in an "exit" frame nobody waited for (a worker's last words)."""
        for header, _ in self._frames:
            if header.get("type") == "exit":
                return str(header.get("reason"))
        return None

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
