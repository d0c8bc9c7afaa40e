"""The worker's side of its socket to the server: frames (wire/framing.py), with the client
connections the server passes along. Used by the worker's loop (environment.py); no asyncio
here, which a worker would otherwise import for nothing.
"""

from __future__ import annotations

import json
import os
import select
import socket
from collections import deque
from typing import Any

from kubelambda_runtime.wire.framing import PREFIX

Frame = tuple[dict[str, Any], bytes, int | None]
"""A header, a body, and the descriptor passed with it, if any."""


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
            for fd in fds:
                os.set_inheritable(fd, False)  # a handler's subprocesses never get a client's
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
        if len(buffer) < PREFIX.size:
            return None
        head_size, body_size = PREFIX.unpack_from(buffer)
        end = PREFIX.size + head_size + body_size
        if len(buffer) < end:
            return None
        header: dict[str, Any] = json.loads(buffer[PREFIX.size : PREFIX.size + head_size])
        body = bytes(buffer[PREFIX.size + head_size : end])
        del buffer[:end]
        fd = self._fds.popleft() if header.get("fd") and self._fds else None
        return header, body, fd
