"""The server's side of a worker's socket: frames (wire/framing.py) as futures, on asyncio.

Each ``WorkerProcess`` (workerprocess.py) speaks to its worker through one.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, cast

from kubelambda_runtime.wire.config import MAX_PAYLOAD_BYTES
from kubelambda_runtime.wire.framing import PREFIX

logger = logging.getLogger(__name__)

# The largest frames a worker sends: a header of a few fields (an error's stack trace at
# most), and a body of at most a payload plus its encoding's overhead.
MAX_HEAD_BYTES = 1024 * 1024
MAX_BODY_BYTES = 2 * MAX_PAYLOAD_BYTES


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
        while len(buffer) >= PREFIX.size:
            head_size, body_size = PREFIX.unpack_from(buffer)
            if head_size > MAX_HEAD_BYTES or body_size > MAX_BODY_BYTES:
                self._breach(f"a frame of {head_size} + {body_size} bytes")
                return
            end = PREFIX.size + head_size + body_size
            if len(buffer) < end:
                return
            try:
                header = json.loads(buffer[PREFIX.size : PREFIX.size + head_size])
            except ValueError:
                self._breach("a frame whose header is not JSON")
                return
            if not isinstance(header, dict):
                self._breach("a frame whose header is not an object")
                return
            body = bytes(buffer[PREFIX.size + head_size : end])
            del buffer[:end]
            side = self._side.get(str(header.get("type")))
            if side is not None:
                side(header, body)
                continue
            waiter = self._waiter
            if waiter is not None and not waiter.done():
                self._waiter = None
                waiter.set_result((header, body))
            else:
                self._frames.append((header, body))

    def _breach(self, what: str) -> None:
        """The worker sent what no worker sends: its handler wrote to the runtime's socket.
        Drop the connection (the worker is then replaced, as after a crash) rather than
        buffer or trust it."""
        self._buffer.clear()
        logger.warning("a worker sent %s; its handler wrote to the runtime's socket", what)
        if self._transport is not None:
            self._transport.close()

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
