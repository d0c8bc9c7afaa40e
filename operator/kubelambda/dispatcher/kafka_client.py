"""What a kafka Trigger's poller needs of its cluster beyond delivery/endpoints.py (the Secret's
rules, the client's options) and delivery/reachability.py (the probe it shares with the
operator): the probe's answer in the poller's words (`why_unreachable`), the topics it lacks, a
fetch that places an AT_TIMESTAMP group, pauses, commits of several batches in one request, a
rebalance listener, and a bounded stop. Used by kafka.py.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any

from aiokafka import ConsumerRebalanceListener  # type: ignore[import-untyped]
from aiokafka.errors import (  # type: ignore[import-untyped]
    KafkaError,
    NoOffsetForPartitionError,
    OffsetOutOfRangeError,
)

from kubelambda.delivery.endpoints import KafkaEndpoint
from kubelambda.delivery.reachability import kafka_unreachable

__all__ = [
    "Commits",
    "Rebalance",
    "fetch",
    "missing_topics",
    "pause_only",
    "stop",
    "why_unreachable",
]


async def why_unreachable(
    servers: tuple[str, ...], options: Mapping[str, Any], *, seconds: float
) -> str | None:
    """What connecting to the bootstrap servers with the poller's `options` runs into (a refused
    connection, credentials the brokers refuse, a listener that wants SASL), which the consumer
    only reports as "Unable to bootstrap"; None when one of them answers. The operator's probe
    looks the same way (delivery/reachability.py)."""
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


def pause_only(consumer: Any, wanted: Callable[[Any], bool]) -> None:
    """Pause the assigned partitions for which `wanted` is true and resume the others. Pausing
    drops what the client fetched of a partition and the poller has not taken: it is fetched
    again once the partition is resumed."""
    assigned = set(consumer.assignment())
    stop = {partition for partition in assigned if wanted(partition)}
    paused = set(consumer.paused())
    with contextlib.suppress(KafkaError):  # a partition revoked meanwhile
        if pause := stop - paused:
            consumer.pause(*pause)
        if go := (paused - stop) & assigned:
            consumer.resume(*go)


class Commits:
    """Commits the offsets of one consumer's batches, the batches that end while a request is
    out together in the next one: the client sends one commit at a time, so each batch waiting
    its turn would add a round trip to the broker before its partition's next batch starts."""

    def __init__(self, consumer: Any) -> None:
        self.consumer = consumer
        self._pending: dict[Any, int] = {}
        self._waiting: list[asyncio.Future[None]] = []
        self._sending: asyncio.Task[None] | None = None

    async def commit(self, offsets: Mapping[Any, int]) -> None:
        """Return once a request carrying `offsets` (partition → the next offset to read) was
        answered; raise what the client raised for it (a KafkaError: the group rebalanced, the
        cluster is away)."""
        answered = asyncio.get_running_loop().create_future()
        self._pending.update(offsets)
        self._waiting.append(answered)
        if self._sending is None:
            self._sending = asyncio.create_task(self._send())
        await answered

    async def settle(self) -> None:
        """Forget the offsets not yet sent and wait for the request out, if any: called when the
        partitions are revoked, so that no commit of theirs is sent after that."""
        self._pending.clear()
        waiting, self._waiting = self._waiting, []
        for answered in waiting:
            answered.cancel()
        if self._sending is not None:
            await asyncio.gather(self._sending, return_exceptions=True)

    async def _send(self) -> None:
        try:
            while self._pending:
                offsets, waiting = self._pending, self._waiting
                self._pending, self._waiting = {}, []
                try:
                    await self.consumer.commit(offsets)
                except Exception as exc:  # the callers decide what it means
                    for answered in waiting:
                        if not answered.done():
                            answered.set_exception(exc)
                else:
                    for answered in waiting:
                        if not answered.done():
                            answered.set_result(None)
        finally:
            self._sending = None


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


async def fetch(consumer: Any, *, seconds: float, start_ms: int | None) -> dict[Any, list[Any]]:
    """The records the client fetched for the partitions not paused (all it holds of them: what
    it keeps is dropped when a partition is paused), waiting at most `seconds` for the first.
    An AT_TIMESTAMP group's consumer resets to "none", so a partition it has no offset for is
    reported here and placed at the first record from `start_ms` on (at the end when there is
    none yet), and one whose committed offset is gone at its beginning; then nothing is
    returned this time."""
    try:
        fetched: dict[Any, list[Any]] = await consumer.getmany(
            timeout_ms=max(1, int(seconds * 1000))
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
