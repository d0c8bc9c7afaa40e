"""One batch of an event source mapping (a queue or a Kafka Trigger) invoked, and its answer read
as Lambda reads it: which records failed, or that the batch was not placed at all; and the
record of records that failed for good, for the Trigger's failure destinations.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from kubelambda.api.delivery import Delivery
from kubelambda.api.identity import FunctionKey
from kubelambda.clock import Clock
from kubelambda.delivery.jobs import DeliveryJob, DeliveryPolicy
from kubelambda.dispatcher.function_call import FunctionCall
from kubelambda.dispatcher.records import failure_targets, invocation_record, record_jobs
from kubelambda.dispatcher.shapes import batch_item_failures
from kubelambda.gateway.ids import new_request_id
from kubelambda.gateway.routing import delivery_policy

__all__ = ["BatchInvoker", "BatchOutcome", "FailedRecords"]

# Admits jobs to the delivery store (the broker): True once stored, False when it is full.
Admit = Callable[[Sequence[DeliveryJob]], Awaitable[bool]]


def encoded(event: dict[str, Any]) -> bytes:
    """A batch's event as JSON. Its records hold str keys, str, int, bool and None, which orjson
    writes several times faster than the json module (a batch of 100 small records: about a
    tenth of the time); what orjson refuses (an int beyond 64 bits) the json module writes."""
    try:
        return orjson.dumps(event)
    except TypeError:
        return json.dumps(event, separators=(",", ":")).encode("utf-8")


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """What one invocation of a batch came to. `failed` names the records to try again (all of
    them when the function failed or answered what Lambda reads as a whole-batch failure);
    `throttled`: the batch was not placed (no instance in time, the function gone), so no record
    was tried."""

    failed: frozenset[str]
    throttled: bool = False
    status: int = 200
    function_error: str | None = None
    body: Any = None


class BatchInvoker:
    """Invokes a batch synchronously (RequestResponse) through a `FunctionCall`: the gateway's
    data path, so scale from zero, holding and per-instance concurrency apply."""

    def __init__(self, call: FunctionCall, clock: Clock) -> None:
        self._call = call
        self._clock = clock

    async def __call__(
        self,
        *,
        function: FunctionKey,
        invoked_arn: str,
        event: dict[str, Any],
        item_ids: Sequence[str],
        report_failures: bool,
    ) -> BatchOutcome:
        job = DeliveryJob(
            id=new_request_id(),
            payload=encoded(event),
            policy=DeliveryPolicy(retries=0, backoff_seconds=1),
            invoked_arn=invoked_arn,
            enqueued_at=self._clock.wall(),
            function=function,
        )
        outcome = await self._call(job)
        everything = frozenset(item_ids)
        if outcome.throttled or outcome.gone:
            return BatchOutcome(failed=everything, throttled=True, status=outcome.status)
        if outcome.function_error is not None:
            return BatchOutcome(
                failed=everything,
                status=outcome.status,
                function_error=outcome.function_error,
                body=outcome.body,
            )
        if not report_failures:
            return BatchOutcome(failed=frozenset(), body=outcome.body)
        failed = batch_item_failures(outcome.body, item_ids=everything)
        return BatchOutcome(failed=failed or frozenset(), body=outcome.body)


class FailedRecords:
    """Sends the records that failed for good to the Trigger's failure destinations (its
    `delivery.deadLetter` and `delivery.onFailure`) as Lambda's invocation record, whose
    `requestPayload` is an event holding just those records: nothing is dropped unseen."""

    def __init__(self, *, admit: Admit, clock: Clock, default_namespace: str = "default") -> None:
        self._admit = admit
        self._clock = clock
        self._default_namespace = default_namespace

    def has_destination(self, delivery: Delivery | None, namespace: str) -> bool:
        return delivery is not None and bool(
            failure_targets(delivery_policy(delivery, namespace=namespace))
        )

    async def send(
        self,
        *,
        delivery: Delivery | None,
        namespace: str,
        invoked_arn: str,
        event: dict[str, Any],
        outcome: BatchOutcome,
        attempts: int,
        condition: str = "RetryAttemptsExhausted",
    ) -> bool:
        """True once the records are stored for delivery (or there is nowhere to send them);
        False when the store could not take them: the caller keeps the records."""
        if delivery is None:
            return True
        policy = delivery_policy(delivery, namespace=namespace)
        targets = failure_targets(policy)
        if not targets:
            return True
        now = self._clock.wall()
        failed = DeliveryJob(
            id=new_request_id(),
            payload=b"",
            policy=policy,
            invoked_arn=invoked_arn,
            enqueued_at=now,
        )
        record = invocation_record(
            failed,
            condition=condition,
            now=now,
            invocations=attempts,
            status=outcome.status,
            function_error=outcome.function_error,
            response=outcome.body,
            request_payload=event,
        )
        letters = record_jobs(
            failed, record, targets, now=now, default_namespace=self._default_namespace
        )
        try:
            return await self._admit(letters)
        except OSError:
            return False
