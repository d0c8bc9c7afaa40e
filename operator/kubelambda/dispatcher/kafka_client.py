"""What a kafka Trigger's poller needs of its cluster beyond delivery/endpoints.py (the Secret's
rules, the client's options and the probe it shares with the operator): the probe's answer in the
poller's words (`why_unreachable`), the topics it lacks, a fetch that places an AT_TIMESTAMP
group, a rebalance listener, and a bounded stop. Used by kafka.py.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any

from aiokafka import ConsumerRebalanceListener  # type: ignore[import-untyped]
from aiokafka.errors import (  # type: ignore[import-untyped]
    NoOffsetForPartitionError,
    OffsetOutOfRangeError,
)

from kubelambda.delivery.endpoints import KafkaEndpoint, kafka_unreachable

__all__ = [
    "Rebalance",
    "fetch",
    "missing_topics",
    "stop",
    "why_unreachable",
]


async def why_unreachable(
    servers: tuple[str, ...], options: Mapping[str, Any], *, seconds: float
) -> str | None:
    """What connecting to the bootstrap servers with the poller's `options` runs into (a refused
    connection, credentials the brokers refuse, a listener that wants SASL), which the consumer
    only reports as "Unable to bootstrap"; None when one of them answers. The operator's probe
    looks the same way (delivery/endpoints.py)."""
    # The probe words a refusal by the SASL mechanism offered (none: the listener may want one).
    endpoint = KafkaEndpoint(bootstrap_servers=servers, mechanism=options.get("sasl_mechanism"))
    found = await kafka_unreachable(endpoint, options, seconds=seconds)
    return None if found is None else found.detail


async def stop(consumer: Any, *, seconds: float) -> None:
    """Leave the group and close, bounded: a cluster that is away does not hold up a stop."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(seconds):
            await consumer.stop()


async def missing_topics(consumer: Any, topics: Collection[str]) -> list[str]:
    """Those of `topics` the cluster does not have (it does not create them on a read)."""
    present = await consumer.topics()
    return [topic for topic in topics if topic not in present]


class Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    """Calls `revoked` before the group takes this member's partitions away (and waits for
    it), and `assigned` once it has new ones."""

    def __init__(self, *, revoked: Callable[[], Awaitable[None]], assigned: Callable[[], None]):
        self._revoked = revoked
        self._assigned = assigned

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self._revoked()

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self._assigned()


async def fetch(
    consumer: Any, *, seconds: float, count: int, start_ms: int | None
) -> dict[Any, list[Any]]:
    """Up to `count` records, waiting at most `seconds` for the first. An AT_TIMESTAMP group's
    consumer resets to "none", so a partition it has no offset for is reported here and placed at
    the first record from `start_ms` on (at the end when there is none yet), and one whose
    committed offset is gone at its beginning; then nothing is returned this time."""
    try:
        fetched: dict[Any, list[Any]] = await consumer.getmany(
            timeout_ms=max(1, int(seconds * 1000)), max_records=count
        )
        return fetched
    except NoOffsetForPartitionError as exc:
        partition = exc.args[0]
        found = await consumer.offsets_for_times({partition: start_ms or 0})
        hit = found.get(partition)
        if hit is None:
            await consumer.seek_to_end(partition)
        else:
            consumer.seek(partition, hit.offset)
    except OffsetOutOfRangeError as exc:
        await consumer.seek_to_beginning(*exc.args[0])
    return {}
