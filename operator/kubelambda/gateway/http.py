"""The gateway's HTTP messages: a client `Request` as the handlers see it (read from an ASGI
scope by the edge, `edge.py`) and the `Response` they return.

Handlers (the sources: HTTP triggers, the Invoke API, S3 notifications) take a `Request`
and return a `Response`; they note the function they routed to so the edge can label its
metrics even when the answer is an error.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from ipaddress import ip_address
from typing import Any, NamedTuple

from kubelambda.api.identity import FunctionKey

__all__ = [
    "ASGIApp",
    "Handler",
    "Request",
    "Response",
    "is_loopback",
    "parse_length",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class Response(NamedTuple):
    """The HTTP answer to send to the client; header names are lower-case bytes. (A NamedTuple:
    one or two are made per request, and it is the cheapest immutable record to make.)"""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


class Request:
    """Method, paths, headers and body of one request, plus what handling learnt about it.

    The gateway's connections (connection.py) make it as they parse the head, with the two
    headers the edge needs first (Host, Content-Length) read on the way; an ASGI scope becomes
    one through `from_scope`."""

    __slots__ = (
        "body",
        "client",
        "complete",
        "content_length",
        "function",
        "headers",
        "host",
        "method",
        "path",
        "query",
        "raw_path",
        "receive",
        "received",
        "request_id",
    )

    def __init__(
        self,
        *,
        method: str,
        path: str,
        raw_path: str,
        query: bytes,
        headers: list[tuple[bytes, bytes]],
        client: str,
        host: str | None,
        content_length: int | None,
        receive: Receive,
        received: float = 0.0,
    ) -> None:
        self.receive = receive  # ASGI's: the body's events, then the client's leaving
        self.method = method
        self.path = path  # percent-decoded
        self.raw_path = raw_path
        self.query = query
        self.headers = headers  # names lower-case
        self.client = client
        self.host = host
        self.content_length = content_length
        self.received = received  # clock time, set by the edge as it takes the request
        self.body = b""
        # The whole body is in `body` already (connection.py puts it there when it arrived
        # before the request was handed over): nothing to wait for.
        self.complete = False
        self.function: FunctionKey | None = None
        self.request_id: str | None = None

    @classmethod
    def from_scope(cls, scope: Scope, receive: Receive, *, received: float = 0.0) -> Request:
        """The request an ASGI scope describes; its body is read through `receive`."""
        path: str = scope["path"]
        raw: bytes | None = scope.get("raw_path")
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        client = scope.get("client")
        host: str | None = None
        content_length: int | None = None
        for name, value in headers:
            if name == b"host":
                host = value.decode("latin-1")
            elif name == b"content-length":
                content_length = parse_length(value)
        return cls(
            method=scope["method"],
            path=path,
            raw_path=raw.decode("latin-1") if raw else path,
            query=scope.get("query_string", b""),
            headers=headers,
            client=client[0] if client else "127.0.0.1",
            host=host,
            content_length=content_length,
            receive=receive,
            received=received,
        )

    async def disconnected(self) -> None:
        """Return when the client disconnects (call only after the body was read)."""
        while (await self.receive())["type"] != "http.disconnect":
            pass

    def header(self, name: bytes) -> str | None:
        """The first value of header `name` (lower-case bytes), or None."""
        for key, value in self.headers:
            if key == name:
                return value.decode("latin-1")
        return None


Handler = Callable[[Request], Awaitable[Response]]
"""What serves one kind of request: HTTP triggers, the Invoke API, a reserved endpoint."""


def parse_length(value: bytes) -> int | None:
    """A Content-Length header's value, or None when it is not a number."""
    try:
        return int(value)
    except ValueError:
        return None


def is_loopback(address: str) -> bool:
    """Whether `address` (an IP literal, or "localhost") is this machine's loopback; a Unix
    socket or a name is not provably this machine."""
    if address == "localhost":
        return True
    try:
        return ip_address(address).is_loopback
    except ValueError:
        return False
