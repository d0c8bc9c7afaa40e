"""Invocation records as their destinations get them: Lambda's shape, and, for a record that
would exceed what a destination takes, Lambda's rule of dropping the payloads."""

from __future__ import annotations

import json

from kubelambda.delivery.jobs import DeliveryJob, DeliveryPolicy, Target
from kubelambda.dispatcher.records import RECORD_LIMIT_BYTES, invocation_record, record_jobs

ARN = "arn:aws:lambda:us-east-1:000000000000:function:worker"


def event(*, retries: int) -> DeliveryJob:
    return DeliveryJob(
        id="req-1",
        payload=b"{}",
        policy=DeliveryPolicy(retries=retries, backoff_seconds=1),
        invoked_arn=ARN,
        enqueued_at=1000.0,
    )


def failed_record(response: object) -> dict[str, object]:
    return invocation_record(
        event(retries=0),
        condition="RetriesExhausted",
        now=1001.0,
        invocations=1,
        status=200,
        function_error="Unhandled",
        response=response,
        request_payload={"order": 7},
    )


def letter_payload(record: dict[str, object]) -> dict[str, object]:
    (letter,) = record_jobs(
        event(retries=2),
        record,
        [Target(url="http://dlq.test/")],
        now=1002.0,
        default_namespace="default",
    )
    assert len(letter.payload) <= RECORD_LIMIT_BYTES
    decoded: dict[str, object] = json.loads(letter.payload)
    return decoded


def test_a_record_carries_the_event_and_the_answer() -> None:
    record = letter_payload(failed_record({"errorMessage": "boom"}))
    assert record["requestPayload"] == {"order": 7}
    assert record["responsePayload"] == {"errorMessage": "boom"}


def test_a_record_too_large_for_its_destination_goes_without_its_payloads() -> None:
    huge = {"errorMessage": "x" * RECORD_LIMIT_BYTES}
    record = letter_payload(failed_record(huge))
    assert "requestPayload" not in record and "responsePayload" not in record
    # What the destination needs to act on is kept.
    assert record["requestContext"] == {
        "requestId": "req-1",
        "functionArn": f"{ARN}:$LATEST",
        "condition": "RetriesExhausted",
        "approximateInvokeCount": 1,
    }
    assert record["responseContext"] == {
        "statusCode": 200,
        "executedVersion": "$LATEST",
        "functionError": "Unhandled",
    }
