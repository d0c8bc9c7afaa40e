"""OpenTelemetry spans for the gateway's invocations (the invocation, its holds for a slot, its
upstream calls), exported over OTLP/HTTP when the standard OTEL_EXPORTER_OTLP_* variables name
an endpoint; off, and not even imported, otherwise. The invoker is the only caller.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from kubelambda.gateway.tracing import TraceContext

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span

__all__ = ["InvocationSpans", "SpanTracer", "tracer_from_environment"]

DEFAULT_SERVICE_NAME = "kubelambda-gateway"
_ENDPOINTS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")


def tracer_from_environment(environ: Mapping[str, str] | None = None) -> SpanTracer | None:
    """A tracer exporting to the OTLP endpoint the environment names, or None (tracing off)
    when none is named or OTEL_SDK_DISABLED is true. The SDK reads the other standard
    variables itself (OTEL_TRACES_SAMPLER, OTEL_RESOURCE_ATTRIBUTES, OTEL_BSP_*, headers)."""
    environ = os.environ if environ is None else environ
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    if not any(environ.get(name, "").strip() for name in _ENDPOINTS):
        return None
    # Imported here: with tracing off the gateway never loads the SDK (issue 17 measures the
    # gateway's CPU per request).
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    service = environ.get("OTEL_SERVICE_NAME", "").strip() or DEFAULT_SERVICE_NAME
    ids = _trace_ids()()
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service}), id_generator=ids)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return SpanTracer(provider, ids)


def _trace_ids() -> type[Any]:
    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

    class TraceIds(RandomIdGenerator):
        """Random ids, except that a root span takes the trace id the gateway already gave
        the invocation (from the caller's header or a new X-Ray-style root)."""

        def __init__(self) -> None:
            self.next_trace_id = 0

        def generate_trace_id(self) -> int:
            value, self.next_trace_id = self.next_trace_id, 0
            return value or super().generate_trace_id()

    return TraceIds


class SpanTracer:
    """Starts each invocation's spans on one TracerProvider."""

    def __init__(self, provider: TracerProvider, ids: Any) -> None:
        self._provider = provider
        self._ids = ids
        self._tracer = provider.get_tracer("kubelambda.gateway")

    def invocation(
        self, trace: TraceContext, *, function: str, request_id: str, invoked_arn: bytes
    ) -> InvocationSpans:
        """Start the span of one invocation, a child of the caller's span when it sent one."""
        from opentelemetry import trace as api

        if trace.parent_id is None:
            # A root span: OpenTelemetry would draw a new trace id, the runtime's header
            # already names this one. The event loop runs one start_span at a time.
            self._ids.next_trace_id = int(trace.trace_id, 16)
            context = None
        else:
            flags = api.TraceFlags(api.TraceFlags.SAMPLED if trace.sampled is not False else 0)
            parent = api.SpanContext(
                trace_id=int(trace.trace_id, 16),
                span_id=int(trace.parent_id, 16),
                is_remote=True,
                trace_flags=flags,
            )
            context = api.set_span_in_context(api.NonRecordingSpan(parent))
        arn = invoked_arn.decode("ascii", "replace").split(":")
        attributes: dict[str, str] = {"faas.name": function, "faas.invocation_id": request_id}
        if len(arn) > 3 and arn[3]:
            attributes["cloud.region"] = arn[3]
        span = self._tracer.start_span(
            "invoke", context=context, kind=api.SpanKind.SERVER, attributes=attributes
        )
        return InvocationSpans(self._tracer, span)

    def shutdown(self) -> None:
        """Export what is pending and stop the exporter."""
        self._provider.shutdown()


class InvocationSpans:
    """The spans of one invocation: `hold` and `upstream` are its children."""

    def __init__(self, tracer: Any, span: Span) -> None:
        self._tracer = tracer
        self.span = span

    def child(self, name: str, *, client: bool = False) -> Span:
        from opentelemetry import trace as api

        kind = api.SpanKind.CLIENT if client else api.SpanKind.INTERNAL
        return self._tracer.start_span(  # type: ignore[no-any-return]
            name, context=api.set_span_in_context(self.span), kind=kind
        )

    @staticmethod
    def end(span: Span, error: BaseException | None = None, status: int | None = None) -> None:
        """End `span`, marked as failed when `error` is given (or the answer was not 200)."""
        from opentelemetry.trace import Status, StatusCode

        if status is not None:
            span.set_attribute("http.response.status_code", status)
        if error is not None:
            span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
        elif status is not None and status != 200:
            span.set_status(Status(StatusCode.ERROR, f"HTTP {status}"))
        span.end()

    def lines(self, trace: TraceContext, span: Span) -> bytes:
        """The runtime's trace header lines, with `span` (the upstream call) as their parent."""
        context = span.get_span_context()
        return trace.lines(span_id=f"{context.span_id:016x}", sampled=context.trace_flags.sampled)

    def finish(self, *, cold: bool, error: BaseException | None = None) -> None:
        self.span.set_attribute("faas.coldstart", cold)
        self.end(self.span, error)
