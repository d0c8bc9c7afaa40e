"""The records a kafka Trigger's poller fetched and has not yet put in a batch, per partition, and
the next batch taken from them: up to batchSize records of the partitions with no batch in
flight, under the event's size limit. Pure data: kafka.py fetches into it and dispatches the
batches it gives, and pauses a partition while it holds a batch ahead for it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from kubelambda.dispatcher.kafka_steps import Share, record_size
from kubelambda.dispatcher.shapes import KafkaRecord

__all__ = ["Fetched"]

# The size of a record no filter matches: it is committed with a batch but not sent.
_FILTERED = -1


@dataclass(slots=True)
class _Held:
    """One partition's records in offset order, each with its size in the event (_FILTERED
    when no filter matches it); `wanted` and `size` count and add up the others."""

    entries: deque[tuple[KafkaRecord, int]] = field(default_factory=deque)
    wanted: int = 0
    size: int = 0


class Fetched:
    """Fetched records, per partition, waiting for their batch. Partitions take turns: one
    whose records went into a batch goes behind the others, so a partition with a long
    backlog does not keep the others waiting."""

    def __init__(
        self,
        *,
        batch_size: int,
        batch_bytes: int,
        wanted: Callable[[KafkaRecord], bool],
    ) -> None:
        self._batch_size = batch_size
        self._batch_bytes = batch_bytes
        self._wanted = wanted
        self._held: dict[Any, _Held] = {}  # in turn order; only partitions holding records

    def add(self, partition: Any, records: Iterable[KafkaRecord]) -> None:
        """Records of `partition` fetched after those it holds, in offset order."""
        held = self._held.get(partition)
        if held is None:
            held = self._held[partition] = _Held()
        entries, wanted = held.entries, self._wanted
        for record in records:
            if wanted(record):
                size = record_size(record)
                held.wanted += 1
                held.size += size
                entries.append((record, size))
            else:
                entries.append((record, _FILTERED))
        if not entries:
            del self._held[partition]

    def holds_a_batch(self, partition: Any) -> bool:
        """Whether `partition` holds a whole batch (filtered records counted, so a filter that
        matches nothing does not let records pile up): then it is fetched no further for now."""
        held = self._held.get(partition)
        return held is not None and (
            len(held.entries) >= self._batch_size or held.size >= self._batch_bytes
        )

    def ready(self, free: Callable[[Any], bool]) -> tuple[bool, bool]:
        """Whether the partitions for which `free` is true hold any record, and whether they
        hold a whole batch (batchSize records that filters let through, or the size limit)."""
        wanted = size = 0
        found = False
        for partition, held in self._held.items():
            if free(partition):
                found = True
                wanted += held.wanted
                size += held.size
                if wanted >= self._batch_size or size >= self._batch_bytes:
                    return True, True
        return found, False

    def take(self, free: Callable[[Any], bool]) -> dict[Any, Share]:
        """The next batch, from the partitions for which `free` is true: up to batchSize records
        the filters let through and, past the first, under the size limit; the filtered ones
        among them go in the shares' `end` only. The rest stays for the next batch."""
        parts: dict[Any, Share] = {}
        count = size = 0
        limit, most = self._batch_size, self._batch_bytes
        for partition in [p for p in self._held if free(p)]:
            held = self._held[partition]
            entries = held.entries
            part: Share | None = None
            full = False
            while entries:
                record, grows = entries[0]
                if grows != _FILTERED:
                    if count >= limit or (count and size + grows > most):
                        full = True
                        break
                    count, size = count + 1, size + grows
                    held.wanted, held.size = held.wanted - 1, held.size - grows
                entries.popleft()
                if part is None:
                    part = parts[partition] = Share(partition)
                if grows != _FILTERED:
                    part.records.append(record)
                part.end = record.offset + 1
            del self._held[partition]
            if entries:
                self._held[partition] = held  # behind the others
            if full:
                break
        return parts

    def drop(self) -> None:
        """Forget every record: the partitions were revoked, and whoever reads them next starts
        from the committed offsets."""
        self._held.clear()

    def __len__(self) -> int:
        """Records held, filtered ones included."""
        return sum(len(held.entries) for held in self._held.values())
