"""The S3 notification endpoint, `/_kubelambda/events/s3`: what an S3 server's webhook posts
becomes one asynchronous invocation per record and matching bucket Trigger.

`Gateway` registers `BucketEvents` among the public app's reserved endpoints; MinIO's
webhook target (or any server posting `{"Records": [...]}`) calls it.
"""

from __future__ import annotations

import hmac
import json
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from kubelambda.api.identity import FunctionKey, function_arn
from kubelambda.clock import Clock
from kubelambda.delivery.jobs import DeliveryJob, trace_value
from kubelambda.delivery.store import DeliveryStore
from kubelambda.gateway.exceptions import (
    BadRequest,
    MethodNotAllowed,
    PayloadTooLarge,
    Unauthorized,
    Unavailable,
)
from kubelambda.gateway.http import Request, Response, is_loopback
from kubelambda.gateway.metrics import GatewayMetrics
from kubelambda.gateway.routing import RoutingTable
from kubelambda.gateway.settings import GatewaySettings
from kubelambda.gateway.sources.s3_records import NotificationError, matches, normalise
from kubelambda.gateway.tracing import (
    TRACEPARENT_HEADER,
    XRAY_HEADER,
    TraceContext,
    from_traceparent,
    from_xray,
    new_trace,
)

__all__ = ["S3_EVENTS_PATH", "BucketEvents", "Unauthorized", "record_id"]

log = logging.getLogger(__name__)

S3_EVENTS_PATH = "/_kubelambda/events/s3"
_JSON = (b"content-type", b"application/json")
# The namespace of the ids of bucket events' invocations (uuid5).
_RECORD_IDS = uuid.UUID("6f1d3c9a-4b7e-5a2f-9c3d-2e8b7a1f0c64")
_ALLOWED = frozenset({"HEAD", "POST"})


def record_id(record: Mapping[str, Any], function: FunctionKey) -> str:
    """The invocation's request id: the same for the same S3 event and function, so a
    notification the S3 server sends again is stored once (the broker's message id)."""
    s3 = record.get("s3") or {}
    obj = s3.get("object") or {}
    identity = [
        function.namespace,
        function.name,
        record.get("eventName"),
        record.get("eventTime"),
        (s3.get("bucket") or {}).get("name"),
        obj.get("key"),
        obj.get("versionId"),
        obj.get("sequencer"),
        obj.get("eTag"),
    ]
    digest = json.dumps(identity, separators=(",", ":"), default=str)
    return str(uuid.uuid5(_RECORD_IDS, digest))


class BucketEvents:
    """HEAD answers 200 (older MinIO releases probe the target with it); POST takes a
    notification, checks its bearer token, and acknowledges (200) only once every
    delivery it makes is recorded in the delivery store: synced to disk when the store
    is a `FileDeliveryStore`, in memory otherwise. A full store answers 503 with
    Retry-After, so the server keeps the event (MinIO: in its queue_dir) and sends it
    again; so does a store that cannot write.
    """

    def __init__(
        self,
        *,
        routes: Callable[[], RoutingTable],
        store: DeliveryStore,
        metrics: GatewayMetrics,
        clock: Clock,
        settings: GatewaySettings,
    ) -> None:
        self._routes = routes
        self._store = store
        self._metrics = metrics
        self._clock = clock
        self._settings = settings
        token = settings.s3_notification_token
        self._token = token.encode("utf-8") if token else None

    async def __call__(self, request: Request) -> Response:
        if request.method == "HEAD":
            return Response(status=200, headers=[_JSON], body=b"")
        if request.method != "POST":
            raise MethodNotAllowed(
                f"{S3_EVENTS_PATH} takes POST (notifications) and HEAD, not {request.method}",
                allowed=_ALLOWED,
            )
        refusal = self._refusal(request)
        if refusal is not None:
            raise Unauthorized(refusal)
        try:
            body = json.loads(request.body)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # nested too deep
            raise BadRequest(f"notification body is not JSON: {exc}") from None
        try:
            records = normalise(body, region=self._settings.region)
        except NotificationError as exc:
            raise BadRequest(str(exc)) from None
        jobs, received = self._jobs(records, _sent_trace(request))
        limit = self._settings.delivery_queue_size
        if len(jobs) > limit:
            # It could never fit, so "full, try later" would have the server resend it forever.
            raise PayloadTooLarge(
                f"this notification makes {len(jobs)} deliveries, more than the {limit} the "
                "delivery queue holds; send its records in smaller notifications"
            )
        accepted: dict[FunctionKey, int] = {}
        try:
            if jobs:
                await self._record(jobs)
            for job in jobs:
                if job.function is not None:
                    accepted[job.function] = accepted.get(job.function, 0) + 1
        finally:
            for function, count in received.items():
                self._metrics.s3_events(
                    function, received=count, accepted=accepted.get(function, 0)
                )
        answer = {"records": len(records), "deliveries": len(jobs)}
        return Response(status=200, headers=[_JSON], body=json.dumps(answer).encode())

    def _refusal(self, request: Request) -> str | None:
        """Why the request may not post notifications, or None when it may."""
        if self._token is None:
            # No token configured: open to this machine only, fail closed for the rest.
            if is_loopback(request.client):
                return None
            return (
                "this gateway has no S3 notification token configured, so it takes "
                "notifications only from loopback; configure one and give the S3 "
                "server's webhook the same auth token"
            )
        scheme, _, presented = (request.header(b"authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            return "missing bearer token: send Authorization: Bearer <token>"
        if not hmac.compare_digest(presented.strip().encode("utf-8"), self._token):
            return "wrong bearer token"
        return None

    def _jobs(
        self, records: Sequence[dict[str, object]], sent: str | None
    ) -> tuple[list[DeliveryJob], dict[FunctionKey, int]]:
        """One job per record and matching bucket route: Lambda invokes a function with
        one S3 record at a time. Each record starts a trace, unless the server sent one
        (`sent`), which all the records join."""
        table = self._routes()
        settings = self._settings
        jobs: list[DeliveryJob] = []
        received: dict[FunctionKey, int] = {}
        wall = self._clock.wall()
        for record in records:
            payload: bytes | None = None
            trace: str | None = None
            for route in table.buckets:
                if not matches(
                    record,
                    bucket=route.bucket,
                    events=route.events,
                    prefix=route.prefix,
                    suffix=route.suffix,
                ):
                    continue
                received[route.function] = received.get(route.function, 0) + 1
                entry = table.functions.get(route.function)
                if entry is None:
                    log.warning(
                        "bucket trigger %s sends to Function %s, which does not exist; "
                        "its event is dropped",
                        route.trigger or route.bucket,
                        route.function,
                    )
                    continue
                if payload is None:
                    payload = json.dumps({"Records": [record]}, separators=(",", ":")).encode()
                    trace = sent or _header(new_trace(wall))
                jobs.append(
                    DeliveryJob(
                        id=record_id(record, entry.key),
                        payload=payload,
                        policy=route.delivery or entry.delivery,
                        invoked_arn=function_arn(
                            entry.key,
                            region=settings.region,
                            account_id=settings.account_id,
                            default_namespace=settings.default_namespace,
                        ),
                        enqueued_at=wall,
                        function=entry.key,
                        trace=trace,
                    )
                )
        return jobs, received

    async def _record(self, jobs: list[DeliveryJob]) -> None:
        """Hand `jobs` to the store, or raise Unavailable so the server sends again."""
        retry_after = self._settings.retry_after_seconds
        try:
            admitted = await self._store.admit(jobs)
        except OSError as exc:
            log.error("cannot record bucket events: %s", exc)
            raise Unavailable(
                "the gateway cannot record this notification; try again later",
                retry_after=retry_after,
            ) from None
        if not admitted:
            raise Unavailable(
                "the asynchronous delivery queue is full; try again later",
                retry_after=retry_after,
            )


def _header(context: TraceContext) -> str:
    """The X-Amzn-Trace-Id value a delivery of the event sends."""
    return trace_value(context.root, context.parent_id, context.sampled, context.extra)


def _sent_trace(request: Request) -> str | None:
    """The trace the S3 server sent the notification in (MinIO usually sends none), as the
    X-Amzn-Trace-Id value deliveries send; None when it sent no valid one."""
    xray = request.header(XRAY_HEADER)
    context = from_xray(xray) if xray else None
    if context is None:
        traceparent = request.header(TRACEPARENT_HEADER)
        context = from_traceparent(traceparent) if traceparent else None
    return None if context is None else _header(context)
