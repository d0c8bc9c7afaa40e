"""Asynchronous invocations: taken from the delivery store, invoked with retries, then sent to
the function's dead letter, as Lambda's on-failure destination would be.

The gateway's sources put accepted events (Event invocations, bucket notifications) in
the store; `AsyncDelivery`'s workers take them and invoke each through a `FunctionCall`
(function_call.py): in the gateway's own process (`InProcessCall`, in_process_call.py, with the
memory or file store; the gateway starts and stops them, `Gateway.attach`), or through a
gateway's Invoke API (`dispatcher.gateway_call`, in ``kubelambda dispatcher`` over the broker).
Every try, and every record sent on, carries the trace the event was accepted in
(`DeliveryJob.trace`).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any, Protocol
from urllib.parse import urlsplit

from kubelambda.clock import Clock
from kubelambda.delivery.jobs import DeliveryJob, Target
from kubelambda.delivery.store import DeliveryStore
from kubelambda.dispatcher.function_call import FunctionCall, json_or_text
from kubelambda.dispatcher.records import failure_targets, invocation_record, record_jobs
from kubelambda.gateway.exceptions import GatewayError, InstanceUnavailable
from kubelambda.gateway.settings import GatewaySettings
from kubelambda.gateway.tracing import XRAY_HEADER
from kubelambda.gateway.upstream import UpstreamPool, header_lines

__all__ = ["AsyncDelivery", "PublishRecord"]

log = logging.getLogger(__name__)

_JSON = (b"content-type", b"application/json")
# A dead-letter URL gets this long to answer each try.
_URL_TIMEOUT_SECONDS = 30.0
# Idle workers look at the store again this often (their wait needs a deadline too).
_IDLE_SECONDS = 60.0


class PublishRecord(Protocol):
    """Publishes a record to a destination subject (JetStreamStore.publish_record)."""

    async def __call__(
        self, subject: str, data: bytes, msg_id: str, *, trace: str | None = None
    ) -> None: ...


class AsyncDelivery:
    """Workers that take due jobs from a `DeliveryStore` and deliver them."""

    def __init__(
        self,
        *,
        store: DeliveryStore,
        call: FunctionCall,
        pool: UpstreamPool,
        clock: Clock,
        settings: GatewaySettings,
        publish: PublishRecord | None = None,
    ) -> None:
        self._store = store
        self._call = call
        # (subject, data, message id, trace) → published to the broker; None: no broker.
        self._publish = publish
        self._pool = pool
        self._clock = clock
        self._settings = settings
        self._workers: list[asyncio.Task[None]] = []
        self._tls: ssl.SSLContext | None = None

    def start(self) -> None:
        if self._workers:
            return
        for index in range(self._settings.delivery_workers):
            self._workers.append(asyncio.create_task(self._work(), name=f"delivery-{index}"))

    async def aclose(self) -> None:
        """Stop the workers; a job being delivered goes back to the store first."""
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers.clear()
        if len(self._store):
            # The in-memory store dies with the gateway; a durable one keeps them.
            log.warning("stopping with %d asynchronous events not yet delivered", len(self._store))

    async def _work(self) -> None:
        while True:
            try:
                async with asyncio.timeout(_IDLE_SECONDS):
                    job = await self._store.take()
            except TimeoutError:
                continue
            try:
                await self._deliver(job)
            except asyncio.CancelledError:
                await self._store.retry(job, due=self._clock.monotonic())
                raise
            except Exception:
                # A bug here must not stop the worker; the job is kept for another try.
                log.exception("delivering %s failed unexpectedly", job.id)
                await self._store.retry(
                    job, due=self._clock.monotonic() + job.policy.backoff_seconds
                )

    async def _deliver(self, job: DeliveryJob) -> None:
        if job.url is not None:
            await self._post(job, job.url)
            return
        if job.subject is not None:
            await self._publish_record(job, job.subject)
            return
        outcome = await self._call(job)
        if outcome.gone:
            log.warning("dropping event %s: function %s no longer exists", job.id, job.function)
            await self._store.done(job)
        elif outcome.throttled:
            await self._throttled(job, status=outcome.status, error=outcome.body)
        elif outcome.function_error is None:
            await self._store.done(job)
            success = job.policy.on_success
            if success is not None and not job.dead_letter:
                await self._send_records(
                    job,
                    [success],
                    condition="Success",
                    invocations=job.attempts + 1,
                    status=outcome.status,
                    function_error=None,
                    response=outcome.body,
                )
        else:
            await self._failed(
                job,
                status=outcome.status,
                function_error=outcome.function_error,
                body=outcome.body,
                final=outcome.final,
            )

    async def _publish_record(self, job: DeliveryJob, subject: str) -> None:
        if self._publish is None:
            log.error(
                "record %s for subject %s dropped: subject destinations need the broker (--nats)",
                job.id,
                subject,
            )
            await self._store.done(job)
            return
        try:
            await self._publish(subject, job.payload, job.id, trace=job.trace)
        except OSError as exc:
            await self._failed(job, status=503, function_error="DeliveryFailed", body=str(exc))
            return
        await self._store.done(job)

    async def _post(self, job: DeliveryJob, url: str) -> None:
        parts = urlsplit(url)
        tls = None
        if parts.scheme == "https":
            if self._tls is None:
                self._tls = ssl.create_default_context()
            tls = self._tls
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        headers = [_JSON]
        if job.trace:
            # The URL's side can join the event's trace (X-Ray reads this header).
            headers.append((XRAY_HEADER, job.trace.encode("ascii")))
        try:
            response = await self._pool.request(
                host=parts.hostname or "localhost",
                port=parts.port or (443 if tls else 80),
                method=b"POST",
                target=target.encode("ascii"),
                headers=header_lines(headers),
                body=job.payload,
                deadline=asyncio.get_running_loop().time() + _URL_TIMEOUT_SECONDS,
                tls=tls,
            )
        except (GatewayError, InstanceUnavailable) as exc:
            await self._failed(job, status=502, function_error="DeliveryFailed", body=str(exc))
            return
        if 200 <= response.status < 300:
            await self._store.done(job)
        else:
            await self._failed(
                job, status=response.status, function_error="DeliveryFailed", body=response.status
            )

    async def _throttled(self, job: DeliveryJob, *, status: int, error: dict[str, Any]) -> None:
        """The gateway could not place the event: try later without spending a retry."""
        job.throttles += 1
        job.last_error = {"statusCode": status, "functionError": None, "body": error}
        delay = min(
            job.policy.backoff_seconds * 2 ** (job.throttles - 1),
            self._settings.throttle_retry_max_seconds,
        )
        await self._later(job, delay)

    async def _failed(
        self,
        job: DeliveryJob,
        *,
        status: int,
        function_error: str,
        body: Any,
        final: bool = False,
    ) -> None:
        """A try reached the function (or the URL) and failed: spend a retry (all of them
        when no retry can succeed)."""
        job.attempts += 1
        job.last_error = {"statusCode": status, "functionError": function_error, "body": body}
        if final or job.attempts > job.policy.retries:
            await self._give_up(job, "RetriesExhausted")
            return
        await self._later(job, job.policy.backoff_seconds * 2 ** (job.attempts - 1))

    async def _later(self, job: DeliveryJob, delay: float) -> None:
        age = self._clock.wall() - job.enqueued_at
        limit = self._settings.max_event_age_seconds
        if job.policy.max_event_age_seconds is not None:
            limit = min(limit, job.policy.max_event_age_seconds)
        if age + delay > limit:
            await self._give_up(job, "EventAgeExceeded")
            return
        await self._store.retry(job, due=self._clock.monotonic() + delay)

    async def _give_up(self, job: DeliveryJob, condition: str) -> None:
        await self._store.done(job)
        if job.dead_letter:
            log.error("record %s could not be delivered (%s); it is lost", job.id, condition)
            return
        targets = failure_targets(job.policy)
        if not targets:
            log.warning(
                "event %s for %s dropped: %s, no dead letter", job.id, job.function, condition
            )
            return
        last = job.last_error or {}
        await self._send_records(
            job,
            targets,
            condition=condition,
            invocations=job.attempts,
            status=last.get("statusCode", 200),
            function_error=last.get("functionError"),
            response=last.get("body"),
        )

    async def _send_records(
        self,
        job: DeliveryJob,
        targets: list[Target],
        *,
        condition: str,
        invocations: int,
        status: int,
        function_error: str | None,
        response: Any,
    ) -> None:
        record = invocation_record(
            job,
            condition=condition,
            now=self._clock.wall(),
            invocations=invocations,
            status=status,
            function_error=function_error,
            response=response,
            request_payload=json_or_text(job.payload or b"{}"),
        )
        letters = record_jobs(
            job,
            record,
            targets,
            now=self._clock.wall(),
            default_namespace=self._settings.default_namespace,
        )
        # The store just freed the original job's place, so these fit but for a rare crowd.
        try:
            admitted = await self._store.admit(letters)
        except OSError as exc:
            log.error("records of event %s lost: they could not be recorded: %s", job.id, exc)
            return
        if not admitted:
            log.error("records of event %s lost: the delivery queue is full", job.id)
