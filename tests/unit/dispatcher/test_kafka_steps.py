"""dispatcher/kafka_steps.py: what an invocation's outcome means for a partition's share of a
batch (Lambda's checkpointing, retries and giving up), the retry limit with a destination, where
a new group starts, and a client's record in the event's terms."""

from __future__ import annotations

import json

import pytest
from aiokafka.structs import ConsumerRecord  # type: ignore[import-untyped]

from kubelambda.dispatcher.kafka_steps import (
    RETRIES_WITH_DESTINATION,
    Step,
    kafka_record,
    next_step,
    offset_reset,
    record_size,
    retry_limit,
)
from kubelambda.dispatcher.shapes import KafkaRecord, kafka_event, kafka_item_identifier


def record(offset: int, *, partition: int = 0, value: bytes = b"{}") -> KafkaRecord:
    return KafkaRecord(
        topic="orders", partition=partition, offset=offset, timestamp_ms=1, value=value
    )


R = [record(offset) for offset in range(10, 15)]  # one partition's share, offsets 10..14
END = 16  # offset 15 was fetched too, and filtered out
ALL = frozenset(kafka_item_identifier(r) for r in R)


def ids(*offsets: int, partition: int = 0) -> frozenset[str]:
    return frozenset(kafka_item_identifier(record(o, partition=partition)) for o in offsets)


CASES = [
    # name, records, failures before, failed, throttled, retries, the step
    ("success commits past the share", R, 0, frozenset(), False, -1, Step(commit=END)),
    (
        "another partition's failure is not this share's",
        R,
        0,
        ids(10, partition=1),
        False,
        2,
        Step(commit=END),
    ),
    ("nothing left after filters", [], 0, frozenset(), False, 2, Step(commit=END)),
    (
        "a function error retries the whole share",
        R,
        0,
        ALL,
        False,
        -1,
        Step(commit=None, again=tuple(R), failures=1),
    ),
    (
        "retries in a row count",
        R,
        4,
        ALL,
        False,
        -1,
        Step(commit=None, again=tuple(R), failures=5),
    ),
    (
        "after the last retry the records are given up",
        R,
        2,
        ALL,
        False,
        2,
        Step(commit=None, exhausted=tuple(R), failures=3),
    ),
    (
        "no retries: given up at the first failure",
        R,
        0,
        ALL,
        False,
        0,
        Step(commit=None, exhausted=tuple(R), failures=1),
    ),
    (
        "a partial failure commits up to the lowest failed offset and retries from it",
        R,
        0,
        ids(14, 12),
        False,
        2,
        Step(commit=12, again=tuple(R[2:]), failures=1),
    ),
    (
        "progress past the head starts the count again",
        R,
        2,
        ids(11),
        False,
        2,
        Step(commit=11, again=tuple(R[1:]), failures=1),
    ),
    (
        "a partial failure at the same head counts",
        R[2:],
        1,
        ids(12),
        False,
        2,
        Step(commit=None, again=tuple(R[2:]), failures=2),
    ),
    (
        "given up after partial failures: only the records named",
        R[2:],
        2,
        ids(12, 14),
        False,
        2,
        Step(commit=None, exhausted=(R[2], R[4]), failures=3),
    ),
    (
        "a throttled batch spends no attempt",
        R,
        2,
        ALL,
        True,
        2,
        Step(commit=None, again=tuple(R), failures=2),
    ),
]


@pytest.mark.parametrize(
    ("records", "failures", "failed", "throttled", "retries", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_next_step(
    records: list[KafkaRecord],
    failures: int,
    failed: frozenset[str],
    throttled: bool,
    retries: int,
    expected: Step,
) -> None:
    step = next_step(
        records,
        end=END,
        failures=failures,
        failed=failed,
        throttled=throttled,
        retries=retries,
    )
    assert step == expected


@pytest.mark.parametrize(
    ("attempts", "destination", "limit"),
    [(-1, False, -1), (-1, True, RETRIES_WITH_DESTINATION), (3, True, 3), (0, False, 0)],
)
def test_infinite_retries_with_a_destination_are_ten(
    attempts: int, destination: bool, limit: int
) -> None:
    assert RETRIES_WITH_DESTINATION == 10
    assert retry_limit(attempts, has_destination=destination) == limit


@pytest.mark.parametrize(
    ("position", "reset"),
    [("TRIM_HORIZON", "earliest"), ("LATEST", "latest"), ("AT_TIMESTAMP", "none")],
)
def test_where_a_new_group_starts(position: str, reset: str) -> None:
    assert offset_reset(position) == reset  # type: ignore[arg-type]


def consumer_record(**fields: object) -> object:
    values: dict[str, object] = {
        "topic": "orders",
        "partition": 2,
        "offset": 7,
        "timestamp": 1_700_000_000_123,
        "timestamp_type": 0,
        "key": b"k",
        "value": b"v",
        "checksum": None,
        "serialized_key_size": 1,
        "serialized_value_size": 1,
        "headers": [("trace", b"\xc3\xa9"), ("empty", None)],
    }
    values.update(fields)
    return ConsumerRecord(**values)


def test_a_client_record_in_the_events_terms() -> None:
    converted = kafka_record(consumer_record())
    assert converted == KafkaRecord(
        topic="orders",
        partition=2,
        offset=7,
        timestamp_ms=1_700_000_000_123,
        timestamp_type="CREATE_TIME",
        key=b"k",
        value=b"v",
        headers=(("trace", b"\xc3\xa9"), ("empty", b"")),
    )
    appended = kafka_record(consumer_record(timestamp_type=1, key=None, value=None, headers=[]))
    assert appended.timestamp_type == "LOG_APPEND_TIME"
    assert (appended.key, appended.value, appended.headers) == (None, None, ())


@pytest.mark.parametrize(
    "sample",
    [
        record(0, value=b""),
        record(1, value=bytes(range(256)) * 40),
        KafkaRecord(
            topic="a-much-longer-topic-name",
            partition=11,
            offset=123_456_789_012,
            timestamp_ms=1_700_000_000_000,
            key=b"\xff" * 100,
            value=json.dumps({"text": "é" * 500}).encode(),
            headers=[("h" * 30, b"\x80\xff" * 50), ("plain", b"abc")],
        ),
    ],
)
def test_a_records_size_bounds_its_share_of_the_event(sample: KafkaRecord) -> None:
    def size(records: list[KafkaRecord]) -> int:
        event = kafka_event(event_source_arn=None, bootstrap_servers=["b:9092"], records=records)
        return len(json.dumps(event, separators=(",", ":")))

    assert size([sample, sample]) - size([sample]) <= record_size(sample)
    assert size([sample]) - size([]) <= record_size(sample) + len(sample.topic) + 16
