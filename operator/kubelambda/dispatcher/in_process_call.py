"""One try of an asynchronous job through the gateway's own invoker, in the gateway's process:
scale from zero, holding while an instance starts and per-instance concurrency apply, as on the
Invoke API. The gateway's delivery workers and the pollers in its process (commands/serving.py)
use it; `GatewayCall` (gateway_call.py) is the way through a gateway's Invoke API.
"""

from __future__ import annotations

from collections.abc import Callable

from kubelambda.clock import Clock
from kubelambda.delivery.jobs import DeliveryJob
from kubelambda.dispatcher.function_call import Outcome
from kubelambda.gateway.exceptions import GatewayError
from kubelambda.gateway.invocation import Invoker
from kubelambda.gateway.routing import RoutingTable
from kubelambda.gateway.settings import GatewaySettings
from kubelambda.gateway.tracing import from_xray

__all__ = ["InProcessCall"]


class InProcessCall:
    """Invokes through this gateway's own invoker (scale from zero, holding, concurrency)."""

    def __init__(
        self,
        *,
        invoker: Invoker,
        routes: Callable[[], RoutingTable],
        clock: Clock,
        settings: GatewaySettings,
    ) -> None:
        self._invoker = invoker
        self._routes = routes
        self._clock = clock
        self._settings = settings

    async def __call__(self, job: DeliveryJob) -> Outcome:
        key = job.function
        entry = self._routes().functions.get(key) if key is not None else None
        if entry is None:
            return Outcome(status=404, gone=True)
        try:
            invocation = await self._invoker.invoke(
                entry,
                payload=job.payload,
                request_id=job.id,
                invoked_arn=job.invoked_arn.encode("ascii"),
                hold_deadline=self._clock.monotonic() + self._settings.hold_timeout_seconds,
                client_context=job.client_context,
                # A job written before traces were kept, or a broken trace: a new trace.
                trace=from_xray(job.trace) if job.trace else None,
            )
        except GatewayError as exc:
            error = {"errorType": exc.error_type, "errorMessage": exc.message}
            if exc.retryable:
                return Outcome(status=exc.status, body=error, throttled=True)
            return Outcome(status=exc.status, function_error=exc.error_type, body=error)
        response = invocation.response
        function_error = response.header(b"x-amz-function-error")
        if response.status == 200 and function_error is None:
            return Outcome(status=200, raw=response.body)
        return Outcome(
            status=response.status,
            function_error=function_error.decode("latin-1") if function_error else "Unhandled",
            raw=response.body,
        )
