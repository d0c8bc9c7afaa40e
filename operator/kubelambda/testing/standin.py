"""A stand-in function instance that speaks the runtime contract (docs/contracts.md), for the
gateway's tests and benchmarks: no user code, behaviour chosen by the event itself.

An event (or, for HTTP trigger events, its JSON body) may hold `sleep` (seconds of
"work"), `raise` (fail with that message), `status` (answer that HTTP status) and
`return` (the value to return); otherwise the answer echoes the event and the runtime
headers received. Run one with `python -m kubelambda.testing.standin --port 8080`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import uvicorn

from kubelambda.gateway.http import Receive, Scope, Send
from kubelambda.gateway.platform import Instance

__all__ = ["Received", "StandIn"]

_INVOKE = "/2015-03-31/functions/function/invocations"
_JSON = (b"content-type", b"application/json")


@dataclass(frozen=True, slots=True)
class Received:
    """One invocation as the stand-in saw it; header names lower-case."""

    headers: dict[str, str]
    event: Any


class StandIn:
    """An ASGI app serving the invoke endpoint and /healthz, with counters for assertions."""

    def __init__(
        self,
        *,
        name: str = "standin",
        concurrency: int = 1,
        record: bool = True,
        reply: Any = None,
    ) -> None:
        self.name = name
        self.concurrency = concurrency
        self.record = record
        # What to return when the event asks for nothing; None: echo the event.
        self._reply = None if reply is None else json.dumps(reply).encode()
        self.received: list[Received] = []
        self.in_flight = 0
        self.peak_in_flight = 0
        self.refused = 0  # answered 429 because every slot was busy
        self.port = 0
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    def instance(self, *, host: str = "127.0.0.1", concurrency: int | None = None) -> Instance:
        """This stand-in as the platform would report it."""
        return Instance(
            id=self.name,
            host=host,
            port=self.port,
            concurrency=self.concurrency if concurrency is None else concurrency,
        )

    async def wait_received(self, count: int) -> None:
        """Return once at least `count` invocations arrived (bound it with asyncio.timeout)."""
        while len(self.received) < count:
            self._changed.clear()
            await self._changed.wait()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        request_id = headers.get("lambda-runtime-aws-request-id", "standin-request")
        if scope["path"] == "/healthz":
            await _answer(send, 200, {"status": "ready"}, request_id)
        elif scope["path"] != _INVOKE or scope["method"] != "POST":
            await _answer(
                send, 404, _error("ResourceNotFoundException", "no such path"), request_id
            )
        elif self.in_flight >= self.concurrency:
            self.refused += 1
            await _answer(send, 429, _error("TooManyRequestsException", "busy"), request_id)
        else:
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            try:
                await self._invoke(send, body, headers, request_id)
            finally:
                self.in_flight -= 1

    async def _invoke(self, send: Send, body: bytes, headers: dict[str, str], rid: str) -> None:
        try:
            event = json.loads(body) if body.strip() else {}
        except (ValueError, RecursionError) as exc:  # the runtime's answer, word for word
            message = f"Could not parse request body into json: {exc}"
            await _answer(send, 400, _error("InvalidRequestContentException", message), rid)
            return
        if self.record:
            runtime = {k: v for k, v in headers.items() if k.startswith(("lambda-", "x-amz"))}
            self.received.append(Received(headers=runtime, event=event))
            self._changed.set()
        control = _control(event)
        if isinstance(control.get("sleep"), int | float):
            await asyncio.sleep(control["sleep"])
        extra: list[tuple[bytes, bytes]] = []
        if headers.get("x-amz-log-type") == "Tail":
            tail = f"START RequestId: {rid} Version: $LATEST\nEND RequestId: {rid}\n"
            extra.append((b"x-amz-log-result", base64.b64encode(tail.encode())))
        if isinstance(control.get("status"), int):
            status = control["status"]
            await _answer(send, status, _error("StandInStatus", f"asked for {status}"), rid)
        elif "raise" in control:
            error = {
                "errorMessage": str(control["raise"]),
                "errorType": "Exception",
                "requestId": rid,
                "stackTrace": ['  File "/var/task/app.py", line 1, in handler\n'],
            }
            extra.append((b"x-amz-function-error", b"Unhandled"))
            await _answer(send, 200, error, rid, extra)
        elif "return" in control:
            await _answer(send, 200, control["return"], rid, extra)
        elif self._reply is not None:
            await _send(send, 200, self._reply, rid, extra)
        else:
            await _answer(
                send, 200, {"instance": self.name, "event": event, "headers": headers}, rid, extra
            )

    # serving on loopback

    async def start(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        """Serve on host:port (0: any free port, then in `self.port`) in this event loop."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self,
            loop="none",
            http="httptools",
            ws="none",
            lifespan="off",
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=2,
        )
        server = self._server = _QuietServer(config)
        self._task = asyncio.create_task(server.serve(sockets=[sock]))
        async with asyncio.timeout(10):
            while not server.started:
                if self._task.done():
                    await self._task
                await asyncio.sleep(0.005)

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await self._task
            self._server = self._task = None


class _QuietServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _control(event: Any) -> dict[str, Any]:
    if isinstance(event, dict) and event.get("version") == "2.0" and "requestContext" in event:
        body = event.get("body")
        if not isinstance(body, str):
            return {}
        if event.get("isBase64Encoded"):
            body = base64.b64decode(body).decode("utf-8", "replace")
        try:
            inner = json.loads(body)
        except ValueError:
            return {}
        return inner if isinstance(inner, dict) else {}
    return event if isinstance(event, dict) else {}


def _error(error_type: str, message: str) -> dict[str, str]:
    return {"errorType": error_type, "errorMessage": message}


async def _answer(
    send: Send,
    status: int,
    document: Any,
    request_id: str,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    body = json.dumps(document, separators=(",", ":")).encode()
    await _send(send, status, body, request_id, extra)


async def _send(
    send: Send,
    status: int,
    body: bytes,
    request_id: str,
    extra: list[tuple[bytes, bytes]] | None,
) -> None:
    headers = [_JSON, (b"lambda-runtime-aws-request-id", request_id.encode("latin-1"))]
    await send(
        {"type": "http.response.start", "status": status, "headers": headers + (extra or [])}
    )
    await send({"type": "http.response.body", "body": body})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--reply", help="JSON to return for every invocation (default: echo)")
    args = parser.parse_args()
    reply = json.loads(args.reply) if args.reply else None
    app = StandIn(concurrency=args.concurrency, record=False, reply=reply)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        ws="none",
        lifespan="off",
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
