"""The pool port's HTTP/1.1: one request a connection, read as its bytes arrive
(``Exchange.receive``), and one JSON answer (``answer``) after which the connection closes.

The pool process runs no event loop and no thread (it forks the function's runtime), so it
cannot use the runtime's asyncio server; its callers are a kubelet's probe and the operator,
each sending one small request. The head and the body have bounds; a body needs
Content-Length. The bearer token is hashed where it was received and its bytes overwritten
before anything else reads the head: a runtime forked later has a copy of this process's
memory, and must find no token in it.
"""

from __future__ import annotations

import hashlib
import json
import socket
from collections.abc import Callable
from typing import Any, NamedTuple

from kubelambda_runtime.warmpool.specialization import Refused

MAX_HEAD_BYTES = 16 * 1024
_END = b"\r\n\r\n"
_AUTHORIZATION = b"authorization:"
_BEARER = b"bearer "
REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
    422: "Unprocessable Content",
    500: "Internal Server Error",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


class Request(NamedTuple):
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names, without Authorization
    body: bytearray
    bearer_sha256: bytes | None  # SHA-256 of the bearer token presented, if any


# Called with the head (method, path, bearer token's hash) of a request with a body, before the
# body is read: raises Refused for one that is not let in, so that no caller without the token
# makes the pool hold a body.
Admit = Callable[[str, str, bytes | None], None]


def admit_all(method: str, path: str, bearer_sha256: bytes | None) -> None:
    pass


class Exchange:
    """One connection's request. Bytes are received straight into buffers of their final size
    (no copy is left behind in freed memory)."""

    def __init__(self, *, max_body: int, admit: Admit = admit_all) -> None:
        self._max_body = max_body
        self._admit = admit
        self._head = bytearray(MAX_HEAD_BYTES)
        self._filled = 0
        self._parsed: tuple[str, str, dict[str, str], bytes | None] | None = None
        self._body = bytearray()
        self._received = 0

    def receive(self, sock: socket.socket) -> Request | None:
        """Read what ``sock`` has; the request once it is whole, else None. Refused for a bad
        one (400, 413, or what ``admit`` says); ConnectionError when the caller left first."""
        if self._parsed is None:
            count = sock.recv_into(memoryview(self._head)[self._filled :])
            if count == 0:
                raise ConnectionError("closed before the request was whole")
            self._filled += count
            end = self._head.find(_END, 0, self._filled)
            if end < 0:
                if self._filled == len(self._head):
                    raise Refused(400, f"the request's head is over {MAX_HEAD_BYTES} bytes")
                return None
            bearer = _take_bearer(self._head, end)
            method, path, headers = _parse_head(bytes(self._head[:end]))
            length = _body_length(headers, max_body=self._max_body)
            if length:
                self._admit(method, path, bearer)
            self._parsed = (method, path, headers, bearer)
            self._body = bytearray(length)
            early = self._head[end + len(_END) : self._filled][:length]
            self._body[: len(early)] = early
            self._received = len(early)
        elif self._received < len(self._body):
            count = sock.recv_into(memoryview(self._body)[self._received :])
            if count == 0:
                raise ConnectionError("closed before the request was whole")
            self._received += count
        if self._received < len(self._body):
            return None
        method, path, headers, bearer = self._parsed
        return Request(method, path, headers, self._body, bearer)


def _take_bearer(head: bytearray, end: int) -> bytes | None:
    """The SHA-256 of the head's bearer token (the last Authorization header's), if any; every
    Authorization value is overwritten in ``head``, and none is ever a str or bytes object."""
    digest = None
    start = head.find(b"\r\n", 0, end)
    while 0 <= start < end:
        line = start + 2
        stop = head.find(b"\r\n", line, end)
        stop = end if stop < 0 else stop
        name = line + len(_AUTHORIZATION)
        if name <= stop and head[line:name].lower() == _AUTHORIZATION:
            value = name
            while value < stop and head[value] in b" \t":
                value += 1
            last = stop
            while last > value and head[last - 1] in b" \t":
                last -= 1
            scheme = value + len(_BEARER)
            digest = None
            if scheme < last and head[value:scheme].lower() == _BEARER:
                digest = hashlib.sha256(memoryview(head)[scheme:last]).digest()
            head[name:stop] = b" " * (stop - name)
        start = stop if stop < end else -1
    return digest


def _parse_head(head: bytes) -> tuple[str, str, dict[str, str]]:
    try:
        line, *fields = head.decode("latin-1").split("\r\n")
        method, target, version = line.split(" ")
    except ValueError:
        raise Refused(400, "malformed request line") from None
    if not version.startswith("HTTP/1."):
        raise Refused(400, f"unsupported protocol {version!r}")
    headers: dict[str, str] = {}
    for field in fields:
        name, colon, value = field.partition(":")
        if not colon or not name or name != name.strip():
            raise Refused(400, f"malformed header {field[:64]!r}")
        if name.lower() != "authorization":
            headers[name.lower()] = value.strip()
    return method, target.partition("?")[0], headers


def _body_length(headers: dict[str, str], *, max_body: int) -> int:
    if "transfer-encoding" in headers:
        raise Refused(400, "send the body with Content-Length (chunked bodies are not taken)")
    raw = headers.get("content-length", "0")
    if not raw.isdigit():
        raise Refused(400, f"malformed Content-Length {raw[:32]!r}")
    length = int(raw)
    if length > max_body:
        raise Refused(413, f"the body is {length} bytes, over the limit of {max_body}")
    return length


def answer(status: int, document: dict[str, Any]) -> bytes:
    """The whole answer: status, JSON body, and ``Connection: close``."""
    body = json.dumps(document).encode()
    head = (
        f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode() + body
