"""The autoscaler's two small HTTP endpoints share this: the ASGI types, a JSON answer, and a
uvicorn server that leaves the process's signals alone (service.py runs them).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import Any

import uvicorn

__all__ = ["QuietServer", "Receive", "Scope", "Send", "answer", "read_body", "serve"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


class QuietServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The operator owns SIGTERM and sets the stop event; uvicorn must not take it.
        yield


def serve(app: App, *, host: str, port: int) -> QuietServer:
    """A server of ``app`` on ``host:port``, without access logs or a lifespan."""
    return QuietServer(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            lifespan="off",
            interface="asgi3",
            proxy_headers=False,
            log_config=None,
            access_log=False,
        )
    )


async def answer(send: Send, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


async def read_body(receive: Receive, limit: int) -> bytes | None:
    """The request's body; None once it is over `limit` bytes (the rest is not read)."""
    body = b""
    while True:
        message = await receive()
        body += bytes(message.get("body", b""))
        if len(body) > limit:
            return None
        if not message.get("more_body"):
            return body
