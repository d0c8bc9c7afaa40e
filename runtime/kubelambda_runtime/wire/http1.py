"""HTTP/1.1 answers as bytes, written in one call: by the server, and by a worker that serves a
connection handed to it. No asyncio here, so a worker imports it for nothing."""

from __future__ import annotations

from dataclasses import dataclass, field
from http import HTTPStatus

_REASONS = {status.value: status.phrase.encode() for status in HTTPStatus}


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)


def encode_response(response: Response, *, keep_alive: bool) -> bytes:
    head = [
        b"HTTP/1.1 %d %s\r\n" % (response.status, _REASONS.get(response.status, b"")),
        b"content-length: %d\r\n" % len(response.body),
    ]
    head.extend(b"%s: %s\r\n" % pair for pair in response.headers)
    if not keep_alive:
        head.append(b"connection: close\r\n")
    head.append(b"\r\n")
    return b"".join(head) + response.body
