"""The bytes of a job (delivery/codec.py): the payload kept as it came, every field back as it
was, jobs written in the earlier one-document format still read, and broken ones refused."""

from __future__ import annotations

import base64
import json

import pytest

from kubelambda.api.identity import FunctionKey
from kubelambda.delivery.codec import decode_job, encode_job
from kubelambda.delivery.jobs import DeliveryJob, DeliveryPolicy, Target

FUNCTION = FunctionKey("team-a", "resize")
ARN = "arn:aws:lambda:us-east-1:000000000000:function:team-a.resize"


def job(payload: bytes, **more: object) -> DeliveryJob:
    return DeliveryJob(
        id="3f0c2a9e-8d1b-4c6f-9a2e-5b7d1c0e4f8a",
        payload=payload,
        policy=DeliveryPolicy(retries=1, backoff_seconds=2.5),
        invoked_arn=ARN,
        enqueued_at=1_700_000_000.125,
        function=FUNCTION,
        **more,  # type: ignore[arg-type]
    )


def test_the_payload_is_stored_as_it_came() -> None:
    payload = b'{"tag": "async0", "n": [1, 2]}'
    data = encode_job(job(payload), due_wall=1.0)
    # Not base64, not parsed and written again: the accepted bytes end the message.
    assert data.endswith(b"\n" + payload)
    assert decode_job(data)[0].payload == payload


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b'{"text": "two\\nlines"}\n\n',  # raw newlines in the payload: only two end lines
        bytes(range(256)),  # what a job carries is bytes; records may be any
    ],
    ids=["empty", "newlines", "binary"],
)
def test_any_payload_comes_back_byte_for_byte(payload: bytes) -> None:
    assert decode_job(encode_job(job(payload), due_wall=1.0))[0].payload == payload


def test_fields_that_need_escaping_come_back() -> None:
    odd = job(
        b"{}",
        url=None,
        subject='records."quoted"\\back\nslash',
        client_context=b'{"custom": "\xe2\x82\xac"}',
        dead_letter=True,
        attempts=2,
        throttles=3,
        last_error={"statusCode": 200, "functionError": "Unhandled", "body": "line\nbreak"},
    )
    odd.id = 'an "id"\nwith a newline'
    odd.policy = DeliveryPolicy(
        retries=0,
        backoff_seconds=1.0,
        dead_letter_url="https://example.invalid/dlq?a=1\n",
        max_event_age_seconds=60.0,
        on_success=Target(subject="done"),
        on_failure=Target(function=FunctionKey("team-a", "failures")),
    )
    copy, due = decode_job(encode_job(odd, due_wall=1_700_000_123.25))
    assert due == 1_700_000_123.25
    for name in DeliveryJob.__slots__:
        if name != "due":
            assert getattr(copy, name) == getattr(odd, name), name


def test_a_job_written_as_one_document_is_still_read() -> None:
    # What version 1 wrote (job files and broker messages accepted before the change).
    legacy = {
        "version": 1,
        "id": "old",
        "payload": base64.b64encode(b'{"n": 1}').decode(),
        "policy": {
            "retries": 2,
            "backoffSeconds": 60.0,
            "deadLetterFunction": ["team-a", "failures"],
            "deadLetterUrl": None,
            "maxEventAgeSeconds": None,
            "onSuccess": None,
            "onFailure": {"function": None, "url": "https://example.invalid/", "subject": None},
        },
        "invokedArn": ARN,
        "enqueuedAt": 1_700_000_000.0,
        "function": ["team-a", "resize"],
        "url": None,
        "subject": None,
        "clientContext": None,
        "deadLetter": False,
        "attempts": 1,
        "throttles": 0,
        "due": 1_700_000_060.0,
        "lastError": None,
    }
    old, due = decode_job(json.dumps(legacy, separators=(",", ":")).encode())
    assert (old.id, old.payload, old.function, old.attempts, due) == (
        "old",
        b'{"n": 1}',
        FUNCTION,
        1,
        1_700_000_060.0,
    )
    assert old.policy.dead_letter_function == FunctionKey("team-a", "failures")
    assert old.policy.on_failure == Target(url="https://example.invalid/")


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b'{"version":2,"id":"x"}', "version"),  # one line and no newline: read as version 1
        (b'{"version":2,"id":"x"}\n{"retries":2}', "policy line"),
        (b'{"version":3}\n{}\n', "version 3"),
        (b"[1]\n{}\n", "version None"),
    ],
)
def test_a_broken_job_is_refused(data: bytes, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        decode_job(data)
