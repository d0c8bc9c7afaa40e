"""One invocation of a function: get a slot, send the contract's request, read the answer.

The HTTP trigger handler, the Invoke API and asynchronous delivery all call
`Invoker.invoke`; it retries on another instance (or waits for one) when an instance
refuses the connection or answers 429, so those never reach a client. Each answer an
instance gave is counted as Lambda bills it (`GatewayMetrics.billed`). The invocation's trace
goes to the runtime in `X-Amzn-Trace-Id` and `traceparent`, with spans when tracing is on.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Final, NamedTuple, cast

from kubelambda.clock import Clock
from kubelambda.gateway.activation import Activator
from kubelambda.gateway.exceptions import (
    DeadlineExceeded,
    GatewayError,
    InstanceUnavailable,
    UpstreamFailed,
)
from kubelambda.gateway.lease import Outcome
from kubelambda.gateway.metrics import BILLED_DURATION_HEADER, GatewayMetrics, billed_ms
from kubelambda.gateway.routing import FunctionEntry
from kubelambda.gateway.spans import InvocationSpans, SpanTracer, tracer_from_environment
from kubelambda.gateway.tracing import TraceContext, new_trace
from kubelambda.gateway.upstream import UpstreamPool
from kubelambda.gateway.upstreamconnection import UpstreamResponse

__all__ = ["INVOKE_TARGET", "Invocation", "Invoker"]

log = logging.getLogger(__name__)

INVOKE_TARGET: Final = b"/2015-03-31/functions/function/invocations"
_POST: Final = b"POST"
_JSON: Final = (b"content-type", b"application/json")
_TAIL: Final = (b"x-amz-log-type", b"Tail")
# spec.memoryMB's default, for routing tables built without a Function.
_DEFAULT_MEMORY_MB: Final = 128
# Failures logged with the invocation's trace id: timeouts and broken answers. Refusals under
# load (429, 503) are counted in metrics, not logged one by one.
_LOGGED: Final = (DeadlineExceeded, UpstreamFailed)
# Invoker's `tracer` when none is given: the OTEL_* environment decides.
_FROM_ENVIRONMENT: SpanTracer | None = cast(SpanTracer, object())
# Makes a NamedTuple without its own __new__, a Python function: half the cost per record.
_make: Final = tuple.__new__


class Invocation(NamedTuple):
    """The instance's answer and how long the request was held first. (A NamedTuple: one is
    made per request, the cheapest immutable record to make.)"""

    response: UpstreamResponse
    waited: float
    cold: bool

    def server_timing(self) -> tuple[bytes, bytes] | None:
        """`Server-Timing` for an answer that was held: `coldstart` when it waited for an
        instance to start, `queue` when it waited for a busy one; None when it did not wait."""
        if not self.waited:
            return None
        metric = b"coldstart" if self.cold else b"queue"
        return (b"server-timing", b"%s;dur=%.1f" % (metric, self.waited * 1000))


class Invoker:
    """Sends invocations to instances chosen by the activator."""

    def __init__(
        self,
        *,
        activator: Activator,
        pool: UpstreamPool,
        clock: Clock,
        metrics: GatewayMetrics,
        grace_seconds: float,
        tracer: SpanTracer | None = _FROM_ENVIRONMENT,
    ) -> None:
        self.tracer = tracer_from_environment() if tracer is _FROM_ENVIRONMENT else tracer
        self._activator = activator
        self._pool = pool
        self._clock = clock
        self._metrics = metrics
        self._grace = grace_seconds

    async def invoke(
        self,
        function: FunctionEntry,
        *,
        payload: bytes,
        request_id: str,
        invoked_arn: bytes,
        hold_deadline: float,
        client_context: bytes | None = None,
        log_tail: bool = False,
        gone: Callable[[], Awaitable[object]] | None = None,
        trace: TraceContext | None = None,
    ) -> Invocation:
        """Invoke `function` with `payload` (the event as JSON) and return the raw answer.

        `hold_deadline` (clock time) bounds the wait for a slot; once sent, the function
        has its whole timeout. `gone` returns when the client disconnects (see
        Activator.acquire). Raises the GatewayError subclasses of activation and
        upstream (HoldQueueFull, DeadlineExceeded, Unavailable, UpstreamTimeout,
        UpstreamFailed). `trace` is the caller's (tracing.incoming); None starts a new one.
        """
        if trace is None:
            trace = new_trace(self._clock.wall())
        spans = (
            None
            if self.tracer is None
            else self.tracer.invocation(
                trace, function=function.key.name, request_id=request_id, invoked_arn=invoked_arn
            )
        )
        try:
            invocation = await self._invoke(
                function,
                payload=payload,
                request_id=request_id,
                invoked_arn=invoked_arn,
                hold_deadline=hold_deadline,
                client_context=client_context,
                log_tail=log_tail,
                gone=gone,
                trace=trace,
                spans=spans,
            )
        except BaseException as exc:
            if isinstance(exc, _LOGGED):
                _log_failure(function, request_id, trace, exc)
            if spans is not None:
                spans.finish(cold=False, error=exc)
            raise
        if spans is not None:
            spans.finish(cold=invocation.cold)
        return invocation

    async def _invoke(
        self,
        function: FunctionEntry,
        *,
        payload: bytes,
        request_id: str,
        invoked_arn: bytes,
        hold_deadline: float,
        client_context: bytes | None,
        log_tail: bool,
        gone: Callable[[], Awaitable[object]] | None,
        trace: TraceContext,
        spans: InvocationSpans | None,
    ) -> Invocation:
        key = function.key
        timeout = function.timeout_seconds
        waited = 0.0
        cold = False
        request_id_header = (b"lambda-runtime-aws-request-id", request_id.encode("ascii"))
        arn_header = (b"lambda-runtime-invoked-function-arn", invoked_arn)
        # Without spans the runtime's trace headers are the same on every try.
        trace_headers = trace.headers() if spans is None else ()
        while True:
            if spans is None:
                lease = await self._activator.acquire(key, deadline=hold_deadline, gone=gone)
            else:
                hold = spans.child("hold")
                try:
                    lease = await self._activator.acquire(key, deadline=hold_deadline, gone=gone)
                except BaseException as exc:
                    spans.end(hold, exc)
                    raise
                spans.end(hold)
            waited += lease.waited
            cold = cold or lease.cold
            instance = lease.instance
            # The function's clock starts now, not when the request arrived: a cold start
            # does not eat into the handler's timeout.
            deadline_ms = int((self._clock.wall() + timeout) * 1000)
            headers = [
                _JSON,
                request_id_header,
                (b"lambda-runtime-deadline-ms", str(deadline_ms).encode("ascii")),
                arn_header,
                *trace_headers,
            ]
            if client_context:
                headers.append((b"lambda-runtime-client-context", client_context))
            if log_tail:
                headers.append(_TAIL)
            upstream = None
            if spans is not None:
                upstream = spans.child("upstream", client=True)
                headers += spans.headers(trace, upstream)
            sent = self._clock.monotonic()
            try:
                response = await self._pool.request(
                    host=instance.host,
                    port=instance.port,
                    method=_POST,
                    target=INVOKE_TARGET,
                    headers=headers,
                    body=payload,
                    within=timeout + self._grace,
                )
            except InstanceUnavailable as exc:
                if upstream is not None:
                    InvocationSpans.end(upstream, exc)
                log.info("instance %s of %s unavailable, trying again: %s", instance.id, key, exc)
                lease.release(Outcome.REFUSED)
                continue
            except BaseException as exc:
                if upstream is not None:
                    InvocationSpans.end(upstream, exc)
                lease.release()
                raise
            if upstream is not None:
                InvocationSpans.end(upstream, status=response.status)
            if response.status == 429:
                # Every slot of that instance is busy (its concurrency is lower than we
                # were told, or another gateway uses it): wait for a slot elsewhere.
                lease.release(Outcome.BUSY)
                continue
            # One clock read for both: the lease's service time and the billed fallback.
            answered = self._clock.monotonic()
            lease.release(now=answered)
            if response.status == 200:
                self._bill(function, response, answered - sent)
            if cold:
                self._metrics.cold_start(key, waited)
            # _make: one is made per request.
            return _make(Invocation, (response, waited, cold))

    def _bill(self, function: FunctionEntry, response: UpstreamResponse, seconds: float) -> None:
        """Count an answered invocation: the runtime's billed duration when it sent one, else
        the time the instance took to answer, which holds the handler's time and the trip."""
        duration_ms = billed_ms(seconds * 1000)
        header = response.header(BILLED_DURATION_HEADER)
        if header is not None and header.isdigit() and int(header) > 0:
            duration_ms = int(header)
        memory_mb = function.spec.memory_mb if function.spec is not None else _DEFAULT_MEMORY_MB
        self._metrics.billed(function.key, duration_ms=duration_ms, memory_mb=memory_mb)


def _log_failure(
    function: FunctionEntry, request_id: str, trace: TraceContext, exc: GatewayError
) -> None:
    """The gateway's line about an invocation it could not complete, naming the trace."""
    log.warning(
        "invocation %s of %s failed: %s (trace %s)",
        request_id,
        function.key,
        exc,
        trace.root,
    )
