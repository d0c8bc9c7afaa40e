"""The runtime's endpoints: the Lambda invoke endpoint, /healthz and /metrics.

`HttpServer` (httpserver.py) hands each request to `RuntimeApp.handle`, which passes the
body untouched to the pool (pool.py) and maps the pool's result to the status codes of
docs/contracts.md. An invocation on a keep-alive connection may be handed, connection and
all, to a worker that answers it directly; then there is nothing to answer here.
"""

from __future__ import annotations

import json
from typing import Any

from kubelambda_runtime.server import metrics
from kubelambda_runtime.server.httpserver import Request, Response
from kubelambda_runtime.server.pool import Pool
from kubelambda_runtime.wire import config, faults
from kubelambda_runtime.wire.invocation import INVOKE_PATH, Invocation, answer, json_answer

__all__ = ["INVOKE_PATH", "RuntimeApp"]


class RuntimeApp:
    def __init__(self, *, settings: config.Settings, pool: Pool) -> None:
        self._pool = pool
        self.stats = metrics.RuntimeStats(
            namespace=settings.namespace, function=settings.function_name
        )
        pool.on_init = self.stats.init.observe
        pool.on_outcome = self.stats.count

    async def handle(self, request: Request) -> Response | None:
        if request.path == INVOKE_PATH:
            if request.method != "POST":
                return json_answer(405, faults.api_error("MethodNotAllowed", "use POST"))
            return await self._invoke(request)
        return await self.handle_admin(request)

    async def handle_admin(self, request: Request) -> Response:
        """/healthz and /metrics: all the metrics port serves."""
        path = request.path
        if path == "/healthz":
            return self._health()
        if path == "/metrics":
            outcomes, durations = self._pool.board.counts()
            stats = self.stats.plus(outcomes, durations)
            stats.init_failed = int(self._pool.health()[0] == "init_failed")
            body, content_type = metrics.render(stats)
            return Response(200, body, [(b"content-type", content_type.encode())])
        message = f"no such path {path!r}: invoke with POST {INVOKE_PATH}"
        return json_answer(404, faults.api_error("ResourceNotFoundException", message))

    def _health(self) -> Response:
        state, error = self._pool.health()
        document: dict[str, Any] = {"status": state}
        if error is not None:
            document["error"] = json.loads(error)
        # An init that failed still serves (invocations answer its error, as on Lambda): a
        # readiness probe must let the pod take them, so only a first init under way is 503.
        return json_answer(503 if state == "initializing" else 200, document)

    async def _invoke(self, request: Request) -> Response | None:
        invocation = Invocation.of(request.headers, request.body)
        if request.too_large:
            limit = config.MAX_PAYLOAD_BYTES
            message = f"Request must be smaller than {limit} bytes for the InvokeFunction operation"
            self.stats.count("bad_request", 0.0)
            error = faults.api_error("RequestTooLargeException", message)
            return json_answer(413, error, request_id=invocation.request_id)
        lend = request.connection if request.keep_alive else None
        result = await self._pool.invoke(invocation, connection=lend)
        if result is None:
            return None  # a worker answers on the connection
        return answer(
            invocation.request_id,
            result.body,
            status=result.status,
            function_error=result.function_error,
            log_tail=result.log_tail,
            billed_ms=result.billed_ms,
        )
