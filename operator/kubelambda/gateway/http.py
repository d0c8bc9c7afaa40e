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
    """Method, paths, headers and body of one request, plus what handling learnt about it."""

    __slots__ = (
        "_receive",
        "body",
        "client",
        "content_length",
        "function",
        "headers",
        "host",
        "method",
        "path",
        "query",
        "raw_path",
        "received",
        "request_id",
    )

    def __init__(self, scope: Scope, receive: Receive, *, received: float) -> None:
        self._receive = receive
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        raw: bytes | None = scope.get("raw_path")
        self.raw_path: str = raw.decode("latin-1") if raw else self.path
        self.query: bytes = scope.get("query_string", b"")
        self.headers: list[tuple[bytes, bytes]] = scope["headers"]
        client = scope.get("client")
        self.client: str = client[0] if client else "127.0.0.1"
        self.received = received
        self.body = b""
        self.host: str | None = None
        self.content_length: int | None = None
        # One pass over the headers for the two the edge needs before anything else.
        for name, value in self.headers:
            if name == b"host":
                self.host = value.decode("latin-1")
            elif name == b"content-length":
                try:
                    self.content_length = int(value)
                except ValueError:
                    self.content_length = None
        self.function: FunctionKey | None = None
        self.request_id: str | None = None

    async def disconnected(self) -> None:
        """Return when the client disconnects (call only after the body was read)."""
        while (await self._receive())["type"] != "http.disconnect":
            pass

    def header(self, name: bytes) -> str | None:
        """The first value of header `name` (lower-case bytes), or None."""
        for key, value in self.headers:
            if key == name:
                return value.decode("latin-1")
        return None


Handler = Callable[[Request], Awaitable[Response]]
"""What serves one kind of request: HTTP triggers, the Invoke API, a reserved endpoint."""


def is_loopback(address: str) -> bool:
    """Whether `address` (an IP literal, or "localhost") is this machine's loopback; a Unix
    socket or a name is not provably this machine."""
    if address == "localhost":
        return True
    try:
        return ip_address(address).is_loopback
    except ValueError:
        return False
