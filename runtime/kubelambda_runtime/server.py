"""The runtime's HTTP face: the Lambda invoke endpoint, /healthz and /metrics, as a bare ASGI app.

Run by uvicorn from ``__main__``. It reads and bounds the body, passes it untouched to
the pool, and maps the pool's result to the status codes of docs/contracts.md.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from kubelambda_runtime import config, faults, metrics
from kubelambda_runtime.pool import Invocation, Pool, Result, WorkerProcess

INVOKE_PATH = "/2015-03-31/functions/function/invocations"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_JSON = (b"content-type", b"application/json")


class BodyTooLarge(Exception):
    pass


class RuntimeApp:
    def __init__(
        self,
        *,
        settings: config.Settings,
        pool: Pool,
        spawned: list[WorkerProcess] | None = None,
    ) -> None:
        self._settings = settings
        self._pool = pool
        self._spawned = spawned
        self.stats = metrics.RuntimeStats(
            namespace=settings.namespace, function=settings.function_name
        )
        pool.on_init = self.stats.init.observe

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            path = scope["path"]
            if path == INVOKE_PATH:
                if scope["method"] != "POST":
                    await _json(send, 405, faults.api_error("MethodNotAllowed", "use POST"))
                else:
                    await self._invoke(scope, receive, send)
            elif path == "/healthz":
                await self._health(send)
            elif path == "/metrics":
                body, content_type = metrics.render(self.stats)
                await _respond(send, 200, [(b"content-type", content_type.encode())], body)
            else:
                message = f"no such path {path!r}: invoke with POST {INVOKE_PATH}"
                await _json(send, 404, faults.api_error("ResourceNotFoundException", message))
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._pool.start(self._spawned)
                self._spawned = None
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self._pool.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _health(self, send: Send) -> None:
        state, error = self._pool.health()
        document: dict[str, Any] = {"status": state}
        if error is not None:
            document["error"] = json.loads(error)
        await _json(send, 200 if state == "ready" else 503, document)

    async def _invoke(self, scope: Scope, receive: Receive, send: Send) -> None:
        wanted: dict[bytes, str] = {}
        for name, value in scope["headers"]:
            if name in _INVOKE_HEADERS:
                wanted[name] = value.decode("latin-1")
        request_id = wanted.get(b"lambda-runtime-aws-request-id") or str(uuid.uuid4())
        try:
            body = await _read_body(receive, wanted.get(b"content-length"))
        except BodyTooLarge:
            limit = config.MAX_PAYLOAD_BYTES
            message = f"Request must be smaller than {limit} bytes for the InvokeFunction operation"
            error = faults.api_error("RequestTooLargeException", message)
            self.stats.count("bad_request", 0.0)
            await _json(send, 413, error, request_id=request_id)
            return
        deadline = wanted.get(b"lambda-runtime-deadline-ms")
        result = await self._pool.invoke(
            Invocation(
                request_id=request_id,
                body=body,
                deadline_ms=int(deadline) if deadline and deadline.isdigit() else None,
                arn=wanted.get(b"lambda-runtime-invoked-function-arn"),
                client_context=wanted.get(b"lambda-runtime-client-context"),
                identity=wanted.get(b"lambda-runtime-cognito-identity"),
                tail=wanted.get(b"x-amz-log-type", "").lower() == "tail",
            )
        )
        self.stats.count(result.outcome, result.duration_s)
        await _send_result(send, result, request_id)


_INVOKE_HEADERS = frozenset(
    {
        b"content-length",
        b"lambda-runtime-aws-request-id",
        b"lambda-runtime-deadline-ms",
        b"lambda-runtime-invoked-function-arn",
        b"lambda-runtime-client-context",
        b"lambda-runtime-cognito-identity",
        b"x-amz-log-type",
    }
)


async def _read_body(receive: Receive, content_length: str | None) -> bytes:
    limit = config.MAX_PAYLOAD_BYTES
    if content_length is not None and content_length.isdigit() and int(content_length) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _send_result(send: Send, result: Result, request_id: str) -> None:
    headers = [_JSON, (b"lambda-runtime-aws-request-id", request_id.encode())]
    if result.function_error:
        headers.append((b"x-amz-function-error", b"Unhandled"))
    if result.log_tail is not None:
        headers.append((b"x-amz-log-result", result.log_tail.encode()))
    await _respond(send, result.status, headers, result.body)


async def _json(
    send: Send, status: int, document: dict[str, Any], *, request_id: str | None = None
) -> None:
    headers = [_JSON]
    if request_id is not None:
        headers.append((b"lambda-runtime-aws-request-id", request_id.encode()))
    await _respond(send, status, headers, json.dumps(document).encode())


async def _respond(
    send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes
) -> None:
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
