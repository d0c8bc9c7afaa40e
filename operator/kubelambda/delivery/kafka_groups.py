"""Where a Kafka consumer group stands on its topics, read from outside the group (it is never
joined, so the dispatcher's members keep their partitions): the topics the cluster lacks, and
per partition the committed offset and the records after it. observe.py's probe calls it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from aiokafka import TopicPartition  # type: ignore[import-untyped]
from aiokafka.errors import (  # type: ignore[import-untyped]
    GroupCoordinatorNotAvailableError,
    GroupLoadInProgressError,
    NotCoordinatorForGroupError,
    for_code,
)
from aiokafka.protocol.commit import OffsetFetchRequest  # type: ignore[import-untyped]

from kubelambda.api.streams import Position

__all__ = ["PartitionLag", "committed_offsets", "group_lag", "missing_topics"]

# A group's coordinator moving, loading (after a restart), or not made yet (a new cluster's
# first group): asked again.
_COORDINATOR_AWAY: Final = (
    GroupCoordinatorNotAvailableError,
    GroupLoadInProgressError,
    NotCoordinatorForGroupError,
)


@dataclass(frozen=True)
class PartitionLag:
    """A Kafka partition as the group stands on it: its committed ``offset`` (the next record the
    group reads; None while it has committed none there) and the records after it."""

    topic: str
    partition: int
    offset: int | None
    lag: int


async def missing_topics(admin: Any, topics: tuple[str, ...]) -> tuple[list[str], list[Any]]:
    """Those of ``topics`` the cluster does not have, and the partitions of the others."""
    # Every topic: a metadata request naming topics may create them on a cluster that creates
    # topics on first use, and then a mistyped topic would never be reported. A topic the
    # cluster has is listed even while it has no leader (just after a restart).
    listed = {str(topic["topic"]): topic for topic in await admin.describe_topics()}
    missing = [topic for topic in topics if topic not in listed]
    partitions = []
    for topic in topics:
        if topic in listed:
            _raise_for(listed[topic]["error_code"], f"the metadata of topic {topic}")
            numbers = sorted(int(p["partition"]) for p in listed[topic]["partitions"])
            partitions += [TopicPartition(topic, number) for number in numbers]
    return missing, partitions


async def committed_offsets(admin: Any, group: str, wanted: list[Any]) -> dict[Any, int]:
    """The group's committed offsets (-1 where it has none), asked again while its coordinator
    is away, until the caller's deadline. Asked with aiokafka's request rather than its
    list_consumer_group_offsets, which ignores the answer's own error code: a coordinator still
    loading would look like a group that committed nothing."""
    topics: dict[str, list[int]] = {}
    for tp in wanted:
        topics.setdefault(tp.topic, []).append(tp.partition)
    request = OffsetFetchRequest(group, list(topics.items()))
    asked = f"the offsets of group {group}"
    while True:
        try:
            coordinator = await admin.find_coordinator(group)
            answer = await admin._send_request(request, coordinator)
            _raise_for(getattr(answer, "error_code", 0), asked)
            found = {}
            for topic, partitions in answer.topics:
                for partition, offset, _, error in partitions:
                    _raise_for(error, asked)
                    found[TopicPartition(topic, partition)] = int(offset)
        except _COORDINATOR_AWAY:
            await asyncio.sleep(0.1)
            continue
        return {tp: found.get(tp, -1) for tp in wanted}


async def group_lag(
    consumer: Any,
    *,
    committed: Mapping[Any, int],
    starting_position: Position,
    starting_timestamp: datetime | None,
) -> tuple[PartitionLag, ...]:
    """Each partition of ``committed``: the end offset minus the committed one or, where the
    group has none, minus where it starts (``starting_position``)."""
    wanted = list(committed)
    ends = {tp: int(offset) for tp, offset in (await consumer.end_offsets(wanted)).items()}
    fresh = [tp for tp in wanted if committed[tp] < 0]
    starts = await _starts(consumer, fresh, ends, starting_position, starting_timestamp)
    rows = []
    for tp in wanted:
        offset = committed[tp] if committed[tp] >= 0 else None
        begin = offset if offset is not None else starts[tp]
        rows.append(PartitionLag(tp.topic, tp.partition, offset, max(0, ends[tp] - begin)))
    return tuple(rows)


async def _starts(
    consumer: Any,
    fresh: list[Any],
    ends: Mapping[Any, int],
    position: Position,
    timestamp: datetime | None,
) -> dict[Any, int]:
    """Where the group starts on partitions it has no offset on, as the Trigger's
    startingPosition says: the lag there counts from it."""
    if not fresh:
        return {}
    if position == "TRIM_HORIZON":
        found = await consumer.beginning_offsets(fresh)
        return {tp: int(offset) for tp, offset in found.items()}
    if position == "AT_TIMESTAMP" and timestamp is not None:
        hits = await consumer.offsets_for_times(
            {tp: int(timestamp.timestamp() * 1000) for tp in fresh}
        )
        return {tp: int(hits[tp].offset) if hits.get(tp) else ends[tp] for tp in fresh}
    return {tp: ends[tp] for tp in fresh}  # LATEST: what comes from now on


def _raise_for(code: int, asked: str) -> None:
    if code:
        raise for_code(code)(f"asking for {asked}")
