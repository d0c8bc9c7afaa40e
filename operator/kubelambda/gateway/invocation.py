"""One invocation of a function: get a slot, send the contract's request, read the answer.

The HTTP trigger handler, the Invoke API and asynchronous delivery all call
`Invoker.invoke`; it retries on another instance (or waits for one) when an instance
refuses the connection or answers 429, so those never reach a client. Each answer an
instance gave is counted as Lambda bills it (`GatewayMetrics.billed`). The invocation's trace
goes to the runtime in `X-Amzn-Trace-Id` and `traceparent`, with spans when tracing is on.

A warm request needs no task: `Invoker.start` sends it at once when a slot is free and a kept
connection to its instance is idle, and the answer calls back (the edge's path for requests
whose body is all in, edge.py). Whatever would wait (holding, connecting, trying again) goes
on as `run` does, in a task.
"""

from __future__ import annotations

import asyncio
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
from kubelambda.gateway.lease import Lease, Outcome
from kubelambda.gateway.metrics import BILLED_DURATION_HEADER, GatewayMetrics, billed_ms
from kubelambda.gateway.routing import FunctionEntry
from kubelambda.gateway.spans import InvocationSpans, SpanTracer, tracer_from_environment
from kubelambda.gateway.tracing import TraceContext, new_trace
from kubelambda.gateway.upstream import UpstreamPool
from kubelambda.gateway.upstreamconnection import StaleConnection, UpstreamResponse

__all__ = ["INVOKE_TARGET", "Call", "Invocation", "Invoker", "Then"]

log = logging.getLogger(__name__)

INVOKE_TARGET: Final = b"/2015-03-31/functions/function/invocations"
_POST: Final = b"POST"
# The contract's headers every invocation carries, filled in with one format.
_CONTRACT: Final = (
    b"content-type: application/json\r\n"
    b"lambda-runtime-aws-request-id: %s\r\n"
    b"lambda-runtime-deadline-ms: %d\r\n"
    b"lambda-runtime-invoked-function-arn: %s\r\n"
)
# spec.memoryMB's default, for routing tables built without a Function.
_DEFAULT_MEMORY_MB: Final = 128
# Failures logged with the invocation's trace id: timeouts and broken answers. Refusals under
# load (429, 503) are counted in metrics, not logged one by one.
_LOGGED: Final = (DeadlineExceeded, UpstreamFailed)
# Invoker's `tracer` when none is given: the OTEL_* environment decides.
_FROM_ENVIRONMENT: SpanTracer | None = cast(SpanTracer, object())
# Makes a NamedTuple without its own __new__, a Python function: half the cost per record.
_make: Final = tuple.__new__


class Call(NamedTuple):
    """One invocation as a source asks for it: what `Invoker.invoke` takes. `gone` returns when
    the client disconnects (see Activator.acquire); `trace` is the caller's
    (tracing.incoming), None for a new one."""

    function: FunctionEntry
    payload: bytes
    request_id: str
    invoked_arn: bytes
    hold_deadline: float
    client_context: bytes | None
    log_tail: bool
    gone: Callable[[], Awaitable[object]] | None
    trace: TraceContext | None


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


Then = Callable[[Invocation | BaseException], None]
"""Told how an invocation started with `Invoker.start` ended: its Invocation, or the error
`invoke` would have raised."""


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
        # Invocations `start` handed on to a task (held, connecting, tried again), kept
        # until they end: the loop keeps only weak references to tasks.
        self._going_on: set[asyncio.Task[None]] = set()

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
        call = Call(
            function,
            payload,
            request_id,
            invoked_arn,
            hold_deadline,
            client_context,
            log_tail,
            gone,
            trace,
        )
        return await self.run(call)

    async def run(self, call: Call, lease: Lease | None = None) -> Invocation:
        """`invoke` with its arguments in one record; with `lease`, on that slot first."""
        trace = call.trace
        if trace is None:
            trace = new_trace(self._clock.wall())
        function = call.function
        spans = (
            None
            if self.tracer is None
            else self.tracer.invocation(
                trace,
                function=function.key.name,
                request_id=call.request_id,
                invoked_arn=call.invoked_arn,
            )
        )
        try:
            invocation = await self._invoke(call, trace, spans, lease)
        except BaseException as exc:
            if isinstance(exc, _LOGGED):
                _log_failure(function, call.request_id, trace, exc)
            if spans is not None:
                spans.finish(cold=False, error=exc)
            raise
        if spans is not None:
            spans.finish(cold=invocation.cold)
        return invocation

    def start(self, call: Call, then: Then) -> None:
        """Invoke as `run` does, telling `then` how it ended, once, never before this returns:
        sent at once when a slot is free now and a connection to it kept, held without a task
        when none is free (Activator.hold), else in a task as `run` (connecting, spans
        recorded). Raises at once what `run` raises before holding (Throttled,
        GatewayOverloaded), and the refusal to hold (HoldQueueFull, DeadlineExceeded)."""
        if self.tracer is not None:
            self.go_on(call, None, then)
            return
        trace = call.trace
        if trace is None:  # the one every try joins, should it go on in a task
            trace = new_trace(self._clock.wall())
            call = call._replace(trace=trace)
        lease = self._activator.lease_now(call.function.key)
        if lease is None:
            self._activator.hold(
                call.function.key,
                deadline=call.hold_deadline,
                gone=call.gone,
                then=_Held(self, call, trace, then).granted,
            )
            return
        self._send(call, trace, lease, then)

    def _send(self, call: Call, trace: TraceContext, lease: Lease, then: Then) -> None:
        """Send `call` on `lease`'s instance: at once on a kept connection, telling `then` from
        its callback, else in a task as `run`."""
        sent = _Sent(self, call, trace, lease, then)
        instance = lease.instance
        if not self._pool.send_now(
            host=instance.host,
            port=instance.port,
            method=_POST,
            target=INVOKE_TARGET,
            headers=self._lines(call, trace.lines()),
            body=call.payload,
            within=call.function.timeout_seconds + self._grace,
            then=sent.answered,
        ):
            self.go_on(call, lease, then)  # no idle connection: `run` connects

    def go_on(self, call: Call, lease: Lease | None, then: Then) -> None:
        """Go on with `call` in a task, as `run` (on `lease` first, if any), telling `then`."""
        # Named as the connection names its requests' tasks (unnamed, it formats "Task-N").
        task = asyncio.get_running_loop().create_task(
            self._go_on(call, lease, then), name="request"
        )
        self._going_on.add(task)
        task.add_done_callback(self._going_on.discard)

    async def _go_on(self, call: Call, lease: Lease | None, then: Then) -> None:
        try:
            invocation = await self.run(call, lease)
        except BaseException as exc:  # told, not kept in the task: its traceback holds frames
            then(exc)
            return
        then(invocation)

    def _lines(self, call: Call, trace_lines: bytes) -> bytes:
        """The contract's request headers for one try, as header lines, its deadline starting
        now: a cold start does not eat into the handler's timeout."""
        deadline_ms = int((self._clock.wall() + call.function.timeout_seconds) * 1000)
        lines = (
            _CONTRACT % (call.request_id.encode("ascii"), deadline_ms, call.invoked_arn)
            + trace_lines
        )
        if call.client_context:
            lines += b"lambda-runtime-client-context: %s\r\n" % call.client_context
        if call.log_tail:
            lines += b"x-amz-log-type: Tail\r\n"
        return lines

    async def _invoke(
        self,
        call: Call,
        trace: TraceContext,
        spans: InvocationSpans | None,
        lease: Lease | None,
    ) -> Invocation:
        function = call.function
        key = function.key
        timeout = function.timeout_seconds
        # A lease handed in was held for already (Activator.hold): its wait is this call's.
        waited = 0.0 if lease is None else lease.waited
        cold = False if lease is None else lease.cold
        # Without spans the runtime's trace headers are the same on every try.
        trace_lines = trace.lines() if spans is None else b""
        while True:
            if lease is None:
                lease = await self._acquire(call, spans)
                waited += lease.waited
                cold = cold or lease.cold
            instance = lease.instance
            upstream = None
            if spans is not None:
                upstream = spans.child("upstream", client=True)
                trace_lines = spans.lines(trace, upstream)
            headers = self._lines(call, trace_lines)
            sent = self._clock.monotonic()
            try:
                response = await self._pool.request(
                    host=instance.host,
                    port=instance.port,
                    method=_POST,
                    target=INVOKE_TARGET,
                    headers=headers,
                    body=call.payload,
                    within=timeout + self._grace,
                )
            except InstanceUnavailable as exc:
                if upstream is not None:
                    InvocationSpans.end(upstream, exc)
                log.info("instance %s of %s unavailable, trying again: %s", instance.id, key, exc)
                lease.release(Outcome.REFUSED)
                lease = None
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
                lease = None
                continue
            return self._answered(function, lease, response, sent, waited, cold)

    async def _acquire(self, call: Call, spans: InvocationSpans | None) -> Lease:
        key = call.function.key
        if spans is None:
            return await self._activator.acquire(key, deadline=call.hold_deadline, gone=call.gone)
        hold = spans.child("hold")
        try:
            lease = await self._activator.acquire(key, deadline=call.hold_deadline, gone=call.gone)
        except BaseException as exc:
            spans.end(hold, exc)
            raise
        spans.end(hold)
        return lease

    def _answered(
        self,
        function: FunctionEntry,
        lease: Lease,
        response: UpstreamResponse,
        sent: float,
        waited: float,
        cold: bool,
    ) -> Invocation:
        """The instance answered (not 429): its slot back, the answer billed."""
        # One clock read for both: the lease's service time and the billed fallback.
        answered = self._clock.monotonic()
        lease.release(now=answered)
        if response.status == 200:
            self._bill(function, response, answered - sent)
        if cold:
            self._metrics.cold_start(function.key, waited)
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


class _Sent:
    """An invocation `Invoker.start` sent on an idle connection, until its instance answers."""

    __slots__ = ("_call", "_invoker", "_lease", "_sent", "_then", "_trace")

    def __init__(
        self, invoker: Invoker, call: Call, trace: TraceContext, lease: Lease, then: Then
    ) -> None:
        self._invoker = invoker
        self._call = call
        self._trace = trace
        self._lease = lease
        self._then = then
        self._sent = invoker._clock.monotonic()

    def answered(self, outcome: UpstreamResponse | Exception) -> None:
        """The pool's callback: as `Invoker._invoke` goes on after its upstream request."""
        invoker, call, lease = self._invoker, self._call, self._lease
        if isinstance(outcome, UpstreamResponse):
            if outcome.status == 429:  # that instance is busy: a slot elsewhere, as _invoke
                lease.release(Outcome.BUSY)
                invoker.go_on(call, None, self._then)
                return
            invocation = invoker._answered(
                call.function, lease, outcome, self._sent, lease.waited, lease.cold
            )
            self._then(invocation)
        elif isinstance(outcome, StaleConnection):
            invoker.go_on(call, lease, self._then)  # sent again, on another connection
        else:
            lease.release()
            if isinstance(outcome, _LOGGED):
                _log_failure(call.function, call.request_id, self._trace, outcome)
            self._then(outcome)


class _Held:
    """An invocation `Invoker.start` had held (Activator.hold), until it gets its slot."""

    __slots__ = ("_call", "_invoker", "_then", "_trace")

    def __init__(self, invoker: Invoker, call: Call, trace: TraceContext, then: Then) -> None:
        self._invoker = invoker
        self._call = call
        self._trace = trace
        self._then = then

    def granted(self, outcome: Lease | BaseException) -> None:
        """The activator's callback: sent on its slot, or failed as `run` fails."""
        call = self._call
        if isinstance(outcome, Lease):
            self._invoker._send(call, self._trace, outcome, self._then)
            return
        if isinstance(outcome, _LOGGED):
            _log_failure(call.function, call.request_id, self._trace, outcome)
        self._then(outcome)


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
