"""The runtime's endpoints: the Lambda invoke endpoint, /healthz and /metrics.

`HttpServer` hands each request to `RuntimeApp.handle`, which passes the body untouched
to the pool and maps the pool's result to the status codes of docs/contracts.md.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from kubelambda_runtime import config, faults, metrics
from kubelambda_runtime.httpserver import Request, Response
from kubelambda_runtime.pool import Invocation, Pool, Result

INVOKE_PATH = "/2015-03-31/functions/function/invocations"

_JSON = (b"content-type", b"application/json")
_REQUEST_ID = b"lambda-runtime-aws-request-id"


class RuntimeApp:
    def __init__(self, *, settings: config.Settings, pool: Pool) -> None:
        self._pool = pool
        self.stats = metrics.RuntimeStats(
            namespace=settings.namespace, function=settings.function_name
        )
        pool.on_init = self.stats.init.observe

    async def handle(self, request: Request) -> Response:
        path = request.path
        if path == INVOKE_PATH:
            if request.method != "POST":
                return _json(405, faults.api_error("MethodNotAllowed", "use POST"))
            return await self._invoke(request)
        if path == "/healthz":
            return self._health()
        if path == "/metrics":
            body, content_type = metrics.render(self.stats)
            return Response(200, body, [(b"content-type", content_type.encode())])
        message = f"no such path {path!r}: invoke with POST {INVOKE_PATH}"
        return _json(404, faults.api_error("ResourceNotFoundException", message))

    def _health(self) -> Response:
        state, error = self._pool.health()
        document: dict[str, Any] = {"status": state}
        if error is not None:
            document["error"] = json.loads(error)
        return _json(200 if state == "ready" else 503, document)

    async def _invoke(self, request: Request) -> Response:
        headers = request.headers
        request_id = headers.get(_REQUEST_ID, b"").decode("latin-1") or str(uuid.uuid4())
        if request.too_large:
            limit = config.MAX_PAYLOAD_BYTES
            message = f"Request must be smaller than {limit} bytes for the InvokeFunction operation"
            self.stats.count("bad_request", 0.0)
            return _json(
                413, faults.api_error("RequestTooLargeException", message), request_id=request_id
            )
        deadline = headers.get(b"lambda-runtime-deadline-ms", b"")
        result = await self._pool.invoke(
            Invocation(
                request_id=request_id,
                body=request.body,
                deadline_ms=int(deadline) if deadline.isdigit() else None,
                arn=_text(headers.get(b"lambda-runtime-invoked-function-arn")),
                client_context=_text(headers.get(b"lambda-runtime-client-context")),
                identity=_text(headers.get(b"lambda-runtime-cognito-identity")),
                tail=headers.get(b"x-amz-log-type", b"").lower() == b"tail",
            )
        )
        self.stats.count(result.outcome, result.duration_s)
        return _result(result, request_id)


def _text(value: bytes | None) -> str | None:
    return value.decode("latin-1") if value else None


def _result(result: Result, request_id: str) -> Response:
    headers = [_JSON, (_REQUEST_ID, request_id.encode())]
    if result.function_error:
        headers.append((b"x-amz-function-error", b"Unhandled"))
    if result.log_tail is not None:
        headers.append((b"x-amz-log-result", result.log_tail.encode()))
    return Response(result.status, result.body, headers)


def _json(status: int, document: dict[str, Any], *, request_id: str | None = None) -> Response:
    headers = [_JSON]
    if request_id is not None:
        headers.append((_REQUEST_ID, request_id.encode()))
    return Response(status, json.dumps(document).encode(), headers)
