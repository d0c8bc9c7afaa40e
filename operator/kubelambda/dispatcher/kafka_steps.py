"""The decisions of a kafka Trigger's poller, as pure functions: what one invocation's outcome
means for a partition's share of a batch (commit, retry from where, give up), how many retries
a batch gets, where a new group starts, and a client's record in the event's terms. kafka.py
does the I/O.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from kubelambda.api.streams import Position
from kubelambda.dispatcher.shapes import KafkaRecord, kafka_item_identifier

__all__ = [
    "Share",
    "Step",
    "kafka_record",
    "next_step",
    "offset_reset",
    "record_size",
    "retry_limit",
]

# Lambda's retries of a mapping with infinite retries (-1) and an on-failure destination
# ("Configuring error handling controls for Kafka event sources").
RETRIES_WITH_DESTINATION: Final = 10
# A record's share of the event besides its key, value and headers (topic, partition, offset,
# timestamp, their JSON), counted generously.
_RECORD_OVERHEAD: Final = 256


@dataclass(slots=True)
class Share:
    """One partition's share of a batch: the records the filters let through, in offset order;
    `end`, the offset after the last one fetched (filtered ones included), committed once the
    share is done; `failures`, invocations in a row that failed at `records[0]`."""

    partition: Any  # the client's TopicPartition
    records: list[KafkaRecord] = field(default_factory=list)
    end: int = 0
    failures: int = 0


@dataclass(frozen=True, slots=True)
class Step:
    """What one partition's share of a batch comes to after an invocation: `commit`, the offset
    to commit now (the next one to read; None: nothing new); `again`, the records to invoke
    again after a backoff; `exhausted`, the records that failed for good (to the failure
    destinations, then the share's end is committed); `failures`, invocations in a row that
    failed at `again[0]` (or at the exhausted records)."""

    commit: int | None
    again: tuple[KafkaRecord, ...] = ()
    exhausted: tuple[KafkaRecord, ...] = ()
    failures: int = 0


def next_step(
    records: Sequence[KafkaRecord],
    *,
    end: int,
    failures: int,
    failed: Collection[str],
    throttled: bool,
    retries: int,
) -> Step:
    """The step for one partition's `records` (in offset order; `end` is one past the last
    offset fetched, filtered records included) given the batch's outcome: `failed`, the
    `kafka_item_identifier`s the outcome names (all of them for a function error), `throttled`
    when the batch was not placed at all.

    Lambda's rules: a batch that succeeded is committed whole; a failed one is retried, and
    with ReportBatchItemFailures from the lowest failed offset of each partition, the records
    before it committed ("Lambda uses the record with the lowest sequence number as the
    checkpoint"); a throttled batch is retried without spending an attempt. After `retries`
    retries in a row at the same record (-1: without end) the failed records are given up.
    """
    if throttled:
        return Step(commit=None, again=tuple(records), failures=failures)
    if not failed:  # the common case, without an identifier made per record
        return Step(commit=end)
    first = next(
        (n for n, record in enumerate(records) if kafka_item_identifier(record) in failed), None
    )
    if first is None:
        return Step(commit=end)
    again = tuple(records[first:])
    failures = failures + 1 if first == 0 else 1
    if 0 <= retries < failures:
        # The records before the first failure succeeded, and so did those after it that the
        # answer did not name: only the named ones failed for good.
        exhausted = tuple(r for r in again if kafka_item_identifier(r) in failed)
        return Step(commit=None, exhausted=exhausted, failures=failures)
    return Step(commit=again[0].offset if first > 0 else None, again=again, failures=failures)


def retry_limit(maximum_retry_attempts: int, *, has_destination: bool) -> int:
    """Retries of a failed batch (-1: without end). Lambda applies at most 10 to a mapping
    with infinite retries and an on-failure destination, so the destination ever gets one."""
    if maximum_retry_attempts < 0 and has_destination:
        return RETRIES_WITH_DESTINATION
    return maximum_retry_attempts


def offset_reset(position: Position) -> str:
    """The client's `auto_offset_reset` for a partition the group has no offset for:
    TRIM_HORIZON the earliest record, LATEST what comes next; AT_TIMESTAMP "none", so the
    client says so and the poller seeks the partition by time."""
    if position == "TRIM_HORIZON":
        return "earliest"
    if position == "LATEST":
        return "latest"
    return "none"


def kafka_record(record: Any) -> KafkaRecord:
    """An aiokafka ConsumerRecord (timestamp type 1 is LogAppendTime) as the event shows it."""
    headers = record.headers
    return KafkaRecord(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        timestamp_ms=record.timestamp,
        timestamp_type="LOG_APPEND_TIME" if record.timestamp_type == 1 else "CREATE_TIME",
        key=record.key,
        value=record.value,
        headers=tuple((name, value or b"") for name, value in headers) if headers else (),
    )


def record_size(record: KafkaRecord) -> int:
    """An upper bound of the record's bytes in the event's JSON: key and value in base64,
    header values as lists of signed bytes (up to 5 characters each)."""
    key, value = record.key, record.value
    size = _RECORD_OVERHEAD + len(record.topic)
    if key:
        size += 4 * ((len(key) + 2) // 3)  # base64
    if value:
        size += 4 * ((len(value) + 2) // 3)
    if record.headers:
        size += sum(len(name) + 5 * len(data) + 8 for name, data in record.headers)
    return size
