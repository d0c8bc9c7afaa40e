"""Lambda's invocation records, and the jobs that carry them to a destination: the dead letter
and the on-failure destination when an event fails for good, the on-success destination when
it succeeds (`AsyncDelivery` sends them; the record's shape is Lambda's).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from kubelambda.api.identity import FunctionKey
from kubelambda.delivery.jobs import DeliveryJob, DeliveryPolicy, Target
from kubelambda.gateway.ids import new_request_id
from kubelambda.gateway.settings import ASYNC_PAYLOAD_LIMIT

__all__ = [
    "RECORD_LIMIT_BYTES",
    "encode_record",
    "failure_targets",
    "invocation_record",
    "record_jobs",
]

# A record is an asynchronous event for its destination; Lambda's destinations (SNS, SQS, an
# Event invocation) take 256 KB, and Lambda drops the payloads from a larger record.
RECORD_LIMIT_BYTES = ASYNC_PAYLOAD_LIMIT


def invocation_record(
    job: DeliveryJob,
    *,
    condition: str,
    now: float,
    invocations: int,
    status: int,
    function_error: str | None,
    response: Any,
    request_payload: Any,
) -> dict[str, Any]:
    """The record Lambda sends to a destination (condition Success, RetriesExhausted or
    EventAgeExceeded)."""
    response_context: dict[str, Any] = {"statusCode": status, "executedVersion": "$LATEST"}
    if function_error:
        response_context["functionError"] = function_error
    moment = datetime.fromtimestamp(now, UTC)
    return {
        "version": "1.0",
        "timestamp": moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z",
        "requestContext": {
            "requestId": job.id,
            "functionArn": f"{job.invoked_arn}:$LATEST",
            "condition": condition,
            "approximateInvokeCount": invocations,
        },
        "requestPayload": request_payload,
        "responseContext": response_context,
        "responsePayload": response,
    }


def failure_targets(policy: DeliveryPolicy) -> list[Target]:
    """Where a failed event's record goes: the dead letter, then the on-failure destination."""
    targets = []
    if policy.dead_letter_function is not None or policy.dead_letter_url is not None:
        targets.append(Target(function=policy.dead_letter_function, url=policy.dead_letter_url))
    if policy.on_failure is not None:
        targets.append(policy.on_failure)
    return targets


def encode_record(record: dict[str, Any], *, limit: int = RECORD_LIMIT_BYTES) -> bytes:
    """The record as JSON; without `requestPayload` and `responsePayload` when it would exceed
    `limit`, as Lambda does, so that a large event or answer still leaves a record."""
    payload = json.dumps(record, separators=(",", ":")).encode("utf-8")
    if len(payload) <= limit:
        return payload
    trimmed = {k: v for k, v in record.items() if k not in ("requestPayload", "responsePayload")}
    return json.dumps(trimmed, separators=(",", ":")).encode("utf-8")


def record_jobs(
    job: DeliveryJob,
    record: dict[str, Any],
    targets: Sequence[Target],
    *,
    now: float,
    default_namespace: str,
) -> list[DeliveryJob]:
    """One job per target, carrying `record`, retried by the event's own policy."""
    payload = encode_record(record)
    policy = DeliveryPolicy(retries=job.policy.retries, backoff_seconds=job.policy.backoff_seconds)
    letters = []
    for target in targets:
        letter = DeliveryJob(
            id=new_request_id(),
            payload=payload,
            policy=policy,
            invoked_arn=job.invoked_arn,
            enqueued_at=now,
            dead_letter=True,
            url=target.url,
            subject=target.subject,
            function=target.function,
            # The destination's invocation (or URL, or message) joins the event's trace.
            trace=job.trace,
        )
        if target.function is not None:
            letter.invoked_arn = _arn(job.invoked_arn, target.function, default_namespace)
        letters.append(letter)
    return letters


def _arn(invoked_arn: str, key: FunctionKey, default_namespace: str) -> str:
    prefix = invoked_arn.rsplit(":function:", 1)[0]
    name = key.name if key.namespace == default_namespace else f"{key.namespace}.{key.name}"
    return f"{prefix}:function:{name}"
