"""A client connection the server handed to a worker, which answers invocations on it directly.

The server passes a keep-alive connection to a warm, idle worker together with the first
invocation read from it; the worker then reads the next invocations itself and writes
each answer straight to the socket, so a warm invocation costs the server nothing. The
worker gives the connection back — with every byte it read since the last answer, so
nothing is lost — when the client closes it, sends anything but a plain invocation (the
server answers /healthz, /metrics, oversized bodies and bad requests), pipelines, or when
the server asks for it.

The descriptor shares the server's non-blocking open file: reads come after poll says
the socket is readable, and writes wait for room rather than change the file's mode.
"""

from __future__ import annotations

import select
import socket
from typing import NamedTuple

from kubelambda_runtime.wire.invocation import INVOKE_PATH

_PATH = INVOKE_PATH.encode()
STALL_SECONDS = 30


class InvokeRequest(NamedTuple):
    headers: dict[bytes, bytes]
    body: bytes
    keep_alive: bool


class Held:
    """The worker's end of a handed-over connection."""

    def __init__(self, sock: socket.socket, conn: int, *, max_body: int) -> None:
        self.sock = sock
        self.conn = conn  # the server's name for it
        self.raw = bytearray()  # everything read since the last answer: given back unanswered
        self.give_back = False
        self.hang_up = False  # the server should close it when it is back
        self._max_body = max_body
        # Imported here, not at the top: only a warm worker is handed a connection, so a
        # worker's start-up (before its handler's init) does not pay for the parser.
        import httptools

        self._parser = httptools.HttpRequestParser(self)
        self._malformed = (httptools.HttpParserError, httptools.HttpParserUpgrade)
        self._reset()

    def _reset(self) -> None:
        self._begun = 0
        self._url = b""
        self._headers: dict[bytes, bytes] = {}
        self._body: list[bytes] = []
        self._size = 0
        self._refused = False
        self._complete: InvokeRequest | None = None

    def read(self) -> InvokeRequest | None:
        """Read what arrived. An invocation to answer; or None: read again later, unless
        ``give_back`` is set (the server must take the connection and these bytes)."""
        try:
            data = self.sock.recv(1 << 16)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError:
            self.give_back = True
            return None
        if not data:
            self.give_back = True  # the client closed it; the server sees the end too
            return None
        self.raw += data
        try:
            self._parser.feed_data(data)
        except self._malformed:
            self.give_back = True  # the server answers malformed requests
            return None
        if self._refused or self._begun > 1:
            self.give_back = True  # not a plain invocation, or pipelined: the server's
            return None
        request = self._complete
        if request is not None:
            self.raw.clear()
            self._reset()
        return request

    def readable(self, *, within: float) -> bool:
        """Whether bytes (or the end) arrive within ``within`` seconds."""
        ready = select.poll()
        ready.register(self.sock, select.POLLIN)
        return bool(ready.poll(within * 1000))

    def send(self, data: bytes) -> bool:
        """Write all of ``data``; False when the client is gone or reads nothing for
        ``STALL_SECONDS``."""
        view = memoryview(data)
        while view:
            try:
                sent = self.sock.send(view)
            except (BlockingIOError, InterruptedError):
                writable = select.poll()
                writable.register(self.sock, select.POLLOUT)
                if not writable.poll(STALL_SECONDS * 1000):
                    return False
                continue
            except OSError:
                return False
            view = view[sent:]
        return True

    # httptools callbacks

    def on_message_begin(self) -> None:
        self._begun += 1

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.lower()] = value

    def on_headers_complete(self) -> None:
        headers = self._headers
        length = headers.get(b"content-length", b"")
        self._refused = (
            self._parser.get_method() != b"POST"
            or self._url.split(b"?", 1)[0] != _PATH
            or b"expect" in headers
            or (length.isdigit() and int(length) > self._max_body)
        )

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > self._max_body:
            self._refused = True
        elif not self._refused:
            self._body.append(body)

    def on_message_complete(self) -> None:
        if self._refused:
            return
        body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        self._complete = InvokeRequest(
            self._headers, body, keep_alive=self._parser.should_keep_alive()
        )
