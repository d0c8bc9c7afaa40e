"""Answers that clients stop taking, for the gateway's connections (connection.py): a write
that makes no progress for `write_seconds` is dropped with a reset, and the bytes held for
stalled clients over all connections of a server are bounded, the longest stalled dropped first.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import sys
from typing import Final

__all__ = ["StalledWrites", "Stalls"]

# SO_LINGER on, 0 s: close resets the connection and discards what the kernel still holds.
_RESET: Final = struct.pack("ii", 1, 0)

if sys.platform == "linux":
    import fcntl
    import termios

    def _kernel_unsent(fd: int) -> int:
        """Bytes the kernel holds for a socket, unsent or unacknowledged (SIOCOUTQ)."""
        return int(struct.unpack("i", fcntl.ioctl(fd, termios.TIOCOUTQ, b"\0\0\0\0"))[0])

else:

    def _kernel_unsent(fd: int) -> int:
        return 0  # not asked elsewhere: the transport's buffer alone is counted


class Stalls:
    """Connections of one server whose answer stalled, the longest stalled first, with the
    bytes each had not handed over when it stalled."""

    def __init__(self) -> None:
        self.held: dict[StalledWrites, int] = {}
        self.total = 0

    def add(self, connection: StalledWrites, size: int) -> None:
        if connection not in self.held:
            self.held[connection] = size
            self.total += size

    def remove(self, connection: StalledWrites) -> None:
        self.total -= self.held.pop(connection, 0)


class StalledWrites(asyncio.Protocol):
    """The part of a connection that watches its answers being taken (the first of its bases:
    one chain of single bases, which mypyc compiles, rather than mixins)."""

    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    write_seconds: float
    max_unread_bytes: int
    stalls: Stalls
    _writable: asyncio.Future[None] | None  # set while the client takes nothing
    _write_timer: asyncio.TimerHandle | None
    _unsent: int  # bytes not handed over at the last progress
    _progressed_at: float

    def pause_writing(self) -> None:
        if self._writable is None:
            self._writable = self.loop.create_future()
        self._watch_writes()
        if self not in self.stalls.held:
            self.stalls.add(self, self._not_handed_over())
            self._shed_stalled()

    def resume_writing(self) -> None:
        writable, self._writable = self._writable, None
        if writable is not None and not writable.done():
            writable.set_result(None)
        # Most of the answer is taken; the write timer still watches what is left.
        self.stalls.remove(self)

    def _watch_writes(self) -> None:
        if self._write_timer is None:
            self._unsent = self._not_handed_over()
            self._progressed_at = self.loop.time()
            self._write_timer = self.loop.call_later(self._write_tick(), self._check_progress)

    def _write_tick(self) -> float:
        # Looked at ten times per write_seconds: the first look must not count the bytes
        # that filled the client's receive window just after the answer stalled.
        return self.write_seconds / 10

    def _check_progress(self) -> None:
        # Progress is the client taking any of the answer, not the buffer draining below its
        # low-water mark: a slow reader of a large answer takes longer than write_seconds.
        self._write_timer = None
        if not self.transport.get_write_buffer_size():
            return  # handed over to the kernel: its own timers take it from here
        now, unsent = self.loop.time(), self._not_handed_over()
        if unsent < self._unsent:
            self._unsent, self._progressed_at = unsent, now
        elif now - self._progressed_at >= self.write_seconds:
            self._drop()
            return
        self._write_timer = self.loop.call_later(self._write_tick(), self._check_progress)

    def _not_handed_over(self) -> int:
        """Bytes of this connection's answers the client has not taken: the transport's
        buffer and what the kernel holds unsent or unacknowledged."""
        unsent = self.transport.get_write_buffer_size()
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError, ValueError):
                unsent += _kernel_unsent(sock.fileno())
        return unsent

    def _shed_stalled(self) -> None:
        # The answers stalled longest go first: a reader that is merely slow stalls later
        # and for less long than one that never reads.
        for oldest in list(self.stalls.held):
            if self.stalls.total <= self.max_unread_bytes:
                return
            oldest._drop()

    def _drop(self) -> None:
        # abort, and with a reset: a close would keep the unread answer in the transport
        # and in the kernel until the client reads it, and the client would not learn.
        self.stalls.remove(self)
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
        self.transport.abort()
