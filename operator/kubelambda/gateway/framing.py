"""How a gateway connection (connection.py) frames its answers: the head of an app's answer,
status lines, the refusals it writes without asking its app, and what a header may not hold.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Final

from kubelambda.gateway.http import Response

__all__ = [
    "INTERNAL",
    "INVALID",
    "NOT_IN_NAMES",
    "NOT_IN_VALUES",
    "OVERLOADED_MESSAGE",
    "STATUS_LINES",
    "TOO_LARGE",
    "TOO_MANY",
    "TOO_SLOW",
    "answer_head",
    "bad_request",
    "malformed",
    "overload_answer",
    "refusal",
    "status_line",
]


def refusal(status: bytes, message: bytes, *extra: bytes) -> bytes:
    """A whole answer: `status`, a JSON body `{"message": message}`, the `extra` header lines,
    and `connection: close`."""
    body = b'{"message":"' + message + b'"}'
    return (
        b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\n"
        b"content-length: "
        + str(len(body)).encode()
        + b"\r\nconnection: close\r\n"
        + b"".join(header + b"\r\n" for header in extra)
        + b"\r\n"
        + body
    )


TOO_LARGE: Final = refusal(
    b"431 Request Header Fields Too Large", b"request headers over the limit"
)
TOO_SLOW: Final = refusal(b"408 Request Timeout", b"request headers did not arrive in time")
TOO_MANY: Final = refusal(
    b"503 Service Unavailable",
    b"the gateway holds as many connections as it may",
    b"retry-after: 1",
)
OVERLOADED_MESSAGE: Final = b"the gateway is overloaded: it takes no new requests now"
INVALID: Final = b"Invalid HTTP request received."
INTERNAL = Response(
    status=500,
    headers=[(b"content-type", b"text/plain; charset=utf-8"), (b"connection", b"close")],
    body=b"Internal Server Error",
)
# What may not appear in a header name (a token) or value: a function's header cannot split
# the answer or smuggle another (as uvicorn checks them).
NOT_IN_NAMES: Final = bytes(range(0x20)) + b'\x7f()<>@,;:[]={} "\\'
NOT_IN_VALUES: Final = bytes(range(0x09)) + bytes(range(0x0A, 0x20)) + b"\x7f"


def overload_answer(retry_after_seconds: int) -> bytes:
    """The 503 of a server that takes no new requests now: built once per server, so that a
    refusal under overload costs a write and a close, nothing more."""
    return refusal(
        b"503 Service Unavailable", OVERLOADED_MESSAGE, b"retry-after: %d" % retry_after_seconds
    )


def _marks(forbidden: bytes) -> bytes:
    """A translation table: each byte in `forbidden` to NUL, every other to "a"."""
    return bytes(0 if byte in forbidden else 0x61 for byte in range(256))


_NAME_MARKS: Final = _marks(NOT_IN_NAMES)
_VALUE_MARKS: Final = _marks(NOT_IN_VALUES)


def malformed(names: list[bytes], values: list[bytes]) -> bool:
    """Whether a header name holds a byte of NOT_IN_NAMES or a value one of NOT_IN_VALUES.
    Translated and asked `isalpha`: half what a regular expression's search costs."""
    joined = b"-".join(names)
    if joined and not joined.translate(_NAME_MARKS).isalpha():
        return True
    joined = b"\t".join(values)
    return bool(joined) and not joined.translate(_VALUE_MARKS).isalpha()


def answer_head(
    response: Response, default_headers: list[tuple[bytes, bytes]], *, keep_alive: bool
) -> tuple[list[bytes], bool] | None:
    """The head of `response`, as parts to join: its status line, the server's
    `default_headers`, its own headers, its content-length, and `connection: close` unless
    `keep_alive` and the response does not ask to close; with whether the connection stays
    open. None when one of its headers is malformed (it could split the answer)."""
    names: list[bytes] = []
    values: list[bytes] = []
    closes = False
    head = [STATUS_LINES.get(response.status) or status_line(response.status)]
    for name, value in default_headers:
        head += (name, b": ", value, b"\r\n")
    for name, value in response.headers:
        names.append(name)
        values.append(value)
        if name == b"connection" and b"close" in value.lower():
            keep_alive = False
            closes = True
        head += (name, b": ", value, b"\r\n")
    if malformed(names, values):
        return None
    head.append(b"content-length: %d\r\n" % len(response.body))
    if not keep_alive and not closes:
        head.append(b"connection: close\r\n")
    head.append(b"\r\n")
    return head, keep_alive


def bad_request(default_headers: list[tuple[bytes, bytes]]) -> bytes:
    """The 400 answer to a request that is not HTTP, with the server's `default_headers`."""
    head = [STATUS_LINES[400]]
    for name, value in default_headers:
        head += (name, b": ", value, b"\r\n")
    head += (
        b"content-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\n" % len(INVALID),
        b"connection: close\r\n\r\n",
        INVALID,
    )
    return b"".join(head)


def status_line(code: int) -> bytes:
    """`HTTP/1.1 <code> <phrase>` and its line end; no phrase for a code HTTP does not name."""
    try:
        phrase = HTTPStatus(code).phrase.encode()
    except ValueError:
        phrase = b""
    return b"HTTP/1.1 %d %s\r\n" % (code, phrase)


STATUS_LINES: Final = {code: status_line(code) for code in range(100, 600)}
