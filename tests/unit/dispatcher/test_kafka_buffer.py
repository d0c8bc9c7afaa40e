"""dispatcher/kafka_buffer.py: the records a kafka poller holds ahead, per partition, and the
batches taken from them: batchSize and the size limit, partitions with a batch in flight left
out, partitions taking turns, filtered records carried in a share's end, and when a partition
holds a whole batch (and is fetched no further)."""

from __future__ import annotations

from typing import Any

from kubelambda.dispatcher.kafka_buffer import Fetched
from kubelambda.dispatcher.kafka_steps import record_size
from kubelambda.dispatcher.shapes import KafkaRecord


def record(partition: int, offset: int, value: bytes = b"{}") -> KafkaRecord:
    return KafkaRecord(
        topic="orders", partition=partition, offset=offset, timestamp_ms=1, value=value
    )


def fetched(batch_size: int = 3, batch_bytes: int = 10**6, **held: range) -> Fetched:
    """Partitions named p0, p1, ... holding records at the offsets given."""
    made = Fetched(
        batch_size=batch_size, batch_bytes=batch_bytes, wanted=lambda r: r.value != b"skip"
    )
    for name, offsets in held.items():
        made.add(name, [record(int(name[1:]), offset) for offset in offsets])
    return made


def offsets(parts: dict[Any, Any]) -> dict[Any, tuple[list[int], int]]:
    return {name: ([r.offset for r in part.records], part.end) for name, part in parts.items()}


def anyone(partition: Any) -> bool:
    return True


def test_a_batch_takes_up_to_batch_size_records_in_turn_order() -> None:
    made = fetched(p0=range(0, 2), p1=range(10, 15))
    assert offsets(made.take(anyone)) == {"p0": ([0, 1], 2), "p1": ([10], 11)}
    assert offsets(made.take(anyone)) == {"p1": ([11, 12, 13], 14)}
    assert offsets(made.take(anyone)) == {"p1": ([14], 15)}
    assert offsets(made.take(anyone)) == {} and len(made) == 0


def test_a_partition_taken_from_goes_behind_the_others() -> None:
    made = fetched(p0=range(0, 6), p1=range(0, 6))
    assert list(made.take(anyone)) == ["p0"]
    assert list(made.take(anyone)) == ["p1"]
    assert list(made.take(anyone)) == ["p0"]


def test_partitions_with_a_batch_in_flight_are_left_for_later() -> None:
    made = fetched(p0=range(0, 2), p1=range(0, 2))
    assert offsets(made.take(lambda p: p != "p0")) == {"p1": ([0, 1], 2)}
    assert made.ready(lambda p: p != "p0") == (False, False)
    assert offsets(made.take(anyone)) == {"p0": ([0, 1], 2)}


def test_filtered_records_move_a_shares_end_without_counting() -> None:
    made = Fetched(batch_size=2, batch_bytes=10**6, wanted=lambda r: r.offset % 2 == 0)
    made.add("p0", [record(0, offset) for offset in range(7)])
    # Offset 3, filtered, comes along with the full batch: nothing waits for it.
    assert offsets(made.take(anyone)) == {"p0": ([0, 2], 4)}
    assert offsets(made.take(anyone)) == {"p0": ([4, 6], 7)}


def test_only_filtered_records_make_a_share_with_none_to_send() -> None:
    made = Fetched(batch_size=2, batch_bytes=10**6, wanted=lambda r: False)
    made.add("p0", [record(0, offset) for offset in range(3)])
    assert made.ready(anyone) == (True, False)
    assert offsets(made.take(anyone)) == {"p0": ([], 3)}


def test_a_batch_stays_under_the_size_limit_but_takes_one_record_however_large() -> None:
    big = record(0, 0, b"x" * 3000)
    made = Fetched(batch_size=10, batch_bytes=2 * record_size(big) + 1, wanted=anyone)
    made.add("p0", [record(0, offset, b"x" * 3000) for offset in range(3)])
    made.add("p1", [record(1, 0, b"y" * 9000)])
    assert offsets(made.take(anyone)) == {"p0": ([0, 1], 2)}
    assert offsets(made.take(anyone)) == {"p1": ([0], 1)}, "one record past the limit goes alone"
    assert offsets(made.take(anyone)) == {"p0": ([2], 3)}


def test_ready_says_whether_free_partitions_hold_records_and_a_whole_batch() -> None:
    made = fetched(batch_size=3, p0=range(0, 2), p1=range(0, 1))
    assert made.ready(anyone) == (True, True)
    assert made.ready(lambda p: p == "p0") == (True, False)
    assert made.ready(lambda p: False) == (False, False)


def test_a_partition_holding_a_whole_batch_is_fetched_no_further() -> None:
    made = fetched(batch_size=3, batch_bytes=10**6, p0=range(0, 2))
    assert not made.holds_a_batch("p0") and not made.holds_a_batch("p9")
    made.add("p0", [record(0, 2, b"skip")])  # filtered records count: they take memory too
    assert made.holds_a_batch("p0")
    made.take(anyone)
    assert not made.holds_a_batch("p0")
    large = fetched(batch_size=100, batch_bytes=1000)
    large.add("p0", [record(0, 0, b"x" * 2000)])
    assert large.holds_a_batch("p0"), "the size limit counts too"


def test_dropping_forgets_every_record() -> None:
    made = fetched(p0=range(0, 2), p1=range(0, 2))
    made.drop()
    assert len(made) == 0 and made.take(anyone) == {}
