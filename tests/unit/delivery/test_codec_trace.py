"""A job's trace in its bytes (delivery/codec.py): written only when set, back as it was, and
jobs written before traces were kept (either format) still read, without one."""

from __future__ import annotations

import base64
import json

import pytest

from kubelambda.api.identity import FunctionKey
from kubelambda.delivery.codec import decode_job, encode_job
from kubelambda.delivery.jobs import DeliveryJob, DeliveryPolicy, trace_value

FUNCTION = FunctionKey("team-a", "resize")
ARN = "arn:aws:lambda:us-east-1:000000000000:function:team-a.resize"
TRACE = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"


def job(**more: object) -> DeliveryJob:
    return DeliveryJob(
        id="3f0c2a9e-8d1b-4c6f-9a2e-5b7d1c0e4f8a",
        payload=b'{"n": 1}',
        policy=DeliveryPolicy(retries=1, backoff_seconds=2.5),
        invoked_arn=ARN,
        enqueued_at=1_700_000_000.125,
        function=FUNCTION,
        **more,  # type: ignore[arg-type]
    )


def test_a_trace_comes_back_as_it_was() -> None:
    traced = job(trace=TRACE + ";Lineage=1f:2", attempts=2)
    decoded, due = decode_job(encode_job(traced, due_wall=7.5))
    assert decoded == traced
    assert decoded.trace == TRACE + ";Lineage=1f:2"
    assert due == 7.5


def test_a_job_without_a_trace_is_written_without_one() -> None:
    data = encode_job(job(), due_wall=1.0)
    assert b'"trace"' not in data.partition(b"\n")[0]
    assert decode_job(data)[0].trace is None


def test_a_job_written_before_traces_were_kept_still_reads() -> None:
    # Version 2's job line as the codec wrote it before it knew of traces.
    line = (
        '{"version":2,"id":"3f0c2a9e-8d1b-4c6f-9a2e-5b7d1c0e4f8a","invokedArn":"' + ARN + '"'
        ',"enqueuedAt":1700000000.125,"due":3.0,"function":["team-a","resize"],"attempts":1}'
    )
    policy = '{"retries":1,"backoffSeconds":2.5}'
    decoded, due = decode_job(f"{line}\n{policy}\n".encode() + b'{"n": 1}')
    assert decoded == job(attempts=1)
    assert decoded.trace is None
    assert due == 3.0


def test_the_one_document_format_reads_with_and_without_a_trace() -> None:
    document = {
        "version": 1,
        "id": "3f0c2a9e-8d1b-4c6f-9a2e-5b7d1c0e4f8a",
        "payload": base64.b64encode(b'{"n": 1}').decode(),
        "policy": {"retries": 1, "backoffSeconds": 2.5},
        "invokedArn": ARN,
        "enqueuedAt": 1_700_000_000.125,
        "due": 2.0,
        "function": ["team-a", "resize"],
    }
    assert decode_job(json.dumps(document).encode())[0] == job()
    document["trace"] = TRACE
    assert decode_job(json.dumps(document).encode())[0].trace == TRACE


def test_a_trace_that_is_not_a_string_is_refused() -> None:
    data = encode_job(job(trace=TRACE), due_wall=1.0)
    broken = data.replace(json.dumps(TRACE).encode(), b"42")
    with pytest.raises(ValueError, match="trace must be a string"):
        decode_job(broken)


def test_a_trace_value_names_only_what_the_caller_sent() -> None:
    root = "1-5759e988-bd862e3fe1be46a994272793"
    assert trace_value(root, "53995c3f42cd8ad8", True) == TRACE
    assert trace_value(root, None, False, ";Lineage=1f:2") == f"Root={root};Sampled=0;Lineage=1f:2"
    # No parent, no decision: each try's span is a root, and the sampler decides.
    assert trace_value(root, None, None) == f"Root={root}"
