"""dispatcher/kafka.py with a fake consumer (a log per partition, fetches held as aiokafka holds
them, pauses, commits) and a fake function: at most maximumConcurrency batches in flight and at
most about a batch per partition fetched ahead, records fetched ahead kept (not fetched again),
a partition never in two batches at once, in order and never before its last batch's commit was
answered, commits of several batches in one request, batches under 6 MB, filtered
records committed unseen, a rebalance dropping the batches in flight; and one batch's way
through retries, backoffs, partial failures, throttling and a failure destination that is full.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Callable, Collection
from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord, TopicPartition  # type: ignore[import-untyped]

from kubelambda.api.streams import KafkaSource
from kubelambda.api.trigger import Trigger, parse_trigger
from kubelambda.clock import FakeClock, SystemClock
from kubelambda.delivery.jobs import DeliveryJob
from kubelambda.dispatcher.batches import BatchInvoker, FailedRecords
from kubelambda.dispatcher.function_call import Outcome
from kubelambda.dispatcher.kafka import KafkaPoller
from kubelambda.dispatcher.kafka_steps import Share, kafka_record
from support.waiting import wait_for_async

pytestmark = pytest.mark.anyio

TOPIC = "orders"


def partition(n: int) -> Any:
    return TopicPartition(TOPIC, n)


def raw(n: int, offset: int, value: bytes) -> Any:
    return ConsumerRecord(
        topic=TOPIC,
        partition=n,
        offset=offset,
        timestamp=1_700_000_000_000 + offset,
        timestamp_type=0,
        key=None,
        value=value,
        checksum=None,
        serialized_key_size=-1,
        serialized_value_size=len(value),
        headers=[],
    )


class FakeConsumer:
    """What the poller uses of aiokafka's consumer, over an in-memory log, holding fetched records
    as aiokafka does: a fetch takes up to `response` records of each partition not paused that
    holds none (max_partition_fetch_bytes), `getmany` hands out what is held, and pausing a
    partition drops what is held of it, to be fetched again once it is resumed."""

    def __init__(self, log: dict[Any, list[Any]], *, response: int = 7) -> None:
        self.log = log
        self.response = response
        self.positions = dict.fromkeys(log, 0)  # the next offset getmany hands out
        self.held: dict[Any, list[Any]] = {tp: [] for tp in log}
        self.fetched = {tp: [0] * len(records) for tp, records in log.items()}  # times, by offset
        self.committed = dict.fromkeys(log, 0)
        self.commits: list[dict[Any, int]] = []
        self.commit_seconds = 0.0
        self._paused: set[Any] = set()
        self.listener: Any = None
        self.kwargs: dict[str, Any] = {}
        self.fetches = 0
        self.rebalance_at: int | None = None  # the fetch during which the group rebalances

    def __call__(self, **kwargs: Any) -> FakeConsumer:  # the poller's consumer factory
        self.kwargs = kwargs
        return self

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def topics(self) -> set[str]:
        return {TOPIC}

    def subscribe(self, *, topics: list[str], listener: Any) -> None:
        self.listener = listener

    def assignment(self) -> set[Any]:
        return set(self.log)

    def paused(self) -> set[Any]:
        return set(self._paused)

    def pause(self, *partitions: Any) -> None:
        self._paused.update(partitions)
        for tp in partitions:
            self.held[tp] = []

    def resume(self, *partitions: Any) -> None:
        self._paused.difference_update(partitions)

    def seek(self, tp: Any, offset: int) -> None:
        self.positions[tp] = offset
        self.held[tp] = []

    async def getmany(
        self, *, timeout_ms: int, max_records: int | None = None
    ) -> dict[Any, list[Any]]:
        self.fetches += 1
        if self.fetches == self.rebalance_at:
            await self.listener.on_partitions_revoked(set(self.log))
            self.positions = dict(self.committed)  # the new assignment starts there
            self.held = {tp: [] for tp in self.log}
            await self.listener.on_partitions_assigned(set(self.log))
        room = max_records if max_records is not None else len(self.fetched) * self.response
        fetched: dict[Any, list[Any]] = {}
        for tp in sorted(self.log):
            if tp in self._paused or room <= 0:
                continue
            if not self.held[tp]:
                start = self.positions[tp]
                self.held[tp] = self.log[tp][start : start + self.response]
                for record in self.held[tp]:
                    self.fetched[tp][record.offset] += 1
            records, self.held[tp] = self.held[tp][:room], self.held[tp][room:]
            if records:
                fetched[tp] = records
                self.positions[tp] += len(records)
                room -= len(records)
        await asyncio.sleep(0 if fetched else 0.001)
        return fetched

    async def commit(self, offsets: dict[Any, int]) -> None:
        self.commits.append(dict(offsets))
        await asyncio.sleep(self.commit_seconds)
        self.committed.update(offsets)

    def uncommitted(self) -> int:
        """Records handed to the poller and not yet committed: what the poller holds."""
        return sum(self.positions[tp] - self.committed[tp] for tp in self.log)


class FakeFunction:
    """A FunctionCall that answers from `answer(event)` after `seconds`, watching what is in
    flight at once."""

    def __init__(self, answer: Callable[[dict[str, Any]], Outcome] | None = None) -> None:
        self.answer = answer or (lambda event: Outcome(status=200))
        self.events: list[dict[str, Any]] = []
        self.sizes: list[int] = []
        self.in_flight: list[set[str]] = []
        self.most = 0
        self.watch: Callable[[], None] = lambda: None
        self.check: Callable[[dict[str, Any]], None] = lambda event: None
        self.seconds = 0.0

    async def __call__(self, job: DeliveryJob) -> Outcome:
        event = json.loads(job.payload)
        mine = set(event["records"])
        for others in self.in_flight:
            assert not mine & others, "a partition in two batches at once"
        self.in_flight.append(mine)
        self.most = max(self.most, len(self.in_flight))
        self.watch()
        self.check(event)
        self.events.append(event)
        self.sizes.append(len(job.payload))
        try:
            await asyncio.sleep(self.seconds)
            return self.answer(event)
        finally:
            self.in_flight.remove(mine)

    def offsets(self) -> dict[int, list[int]]:
        """Each partition's offsets in the order they were sent."""
        found: dict[int, list[int]] = {}
        for event in self.events:
            for records in event["records"].values():
                for record in records:
                    found.setdefault(record["partition"], []).append(record["offset"])
        return found


def trigger(**batching: Any) -> Trigger:
    made = parse_trigger(
        {
            "apiVersion": "kubelambda.dev/v1alpha1",
            "kind": "Trigger",
            "metadata": {"name": "orders"},
            "spec": {
                "function": "orders",
                "kafka": {
                    "bootstrapServers": ["127.0.0.1:9092"],
                    "topics": [TOPIC],
                    "startingPosition": "TRIM_HORIZON",
                    "maximumRetryAttempts": 2,
                    "functionResponseTypes": ["ReportBatchItemFailures"],
                },
                "delivery": {"onFailure": {"function": "failures"}},
            },
        }
    )
    source = made.source
    assert isinstance(source, KafkaSource)
    source = dataclasses.replace(source, batching=dataclasses.replace(source.batching, **batching))
    return dataclasses.replace(made, source=source)


class Letters:
    """The delivery store's admit: refuses while `full`, else keeps the jobs."""

    def __init__(self) -> None:
        self.full = 0
        self.jobs: list[DeliveryJob] = []

    async def __call__(self, jobs: Collection[DeliveryJob]) -> bool:
        if self.full:
            self.full -= 1
            return False
        self.jobs.extend(jobs)
        return True


def poller(
    made: Trigger,
    function: FakeFunction,
    consumer: FakeConsumer,
    *,
    concurrency: int = 2,
    letters: Letters | None = None,
    sleeps: list[float] | None = None,
) -> KafkaPoller:
    async def sleep(seconds: float) -> None:
        if sleeps is not None:
            sleeps.append(seconds)
        await asyncio.sleep(0)

    async def options() -> dict[str, Any]:
        return {"security_protocol": "PLAINTEXT"}

    assert isinstance(made.source, KafkaSource)
    return KafkaPoller(
        trigger=made,
        source=made.source,
        options=options,
        invoke=BatchInvoker(function, SystemClock()),
        failures=FailedRecords(admit=letters or Letters(), clock=FakeClock()),
        invoked_arn="arn:aws:lambda:us-east-1:000000000000:function:orders",
        concurrency=concurrency,
        clock=SystemClock(),
        sleep=sleep,
        consumer=consumer,
    )


async def polling(made: KafkaPoller, done: Callable[[], bool], what: str) -> None:
    task = asyncio.create_task(made.run())
    try:
        await wait_for_async(done, seconds=10, what=what)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def log_of(partitions: int, count: int, value: Callable[[int], bytes]) -> dict[Any, list[Any]]:
    return {
        partition(n): [raw(n, offset, value(offset)) for offset in range(count)]
        for n in range(partitions)
    }


def committed_before(consumer: FakeConsumer) -> Callable[[dict[str, Any]], None]:
    """A check that each partition's records in an event start where its committed offset is:
    the batch before was committed, and the broker answered, before this one was handed out."""

    def check(event: dict[str, Any]) -> None:
        for records in event["records"].values():
            tp = partition(records[0]["partition"])
            assert records[0]["offset"] == consumer.committed[tp], "a batch before its commit"

    return check


async def test_batches_in_flight_are_bounded_and_a_partitions_records_go_in_order() -> None:
    consumer = FakeConsumer(log_of(3, 30, lambda offset: b'{"n": %d}' % offset), response=7)
    function = FakeFunction()
    function.seconds = 0.005
    function.check = committed_before(consumer)
    held: list[int] = []
    function.watch = lambda: held.append(consumer.uncommitted())
    made = poller(trigger(batch_size=5, window_seconds=0), function, consumer, concurrency=2)
    await polling(made, lambda: consumer.committed == dict.fromkeys(consumer.log, 30), "commits")
    assert function.offsets() == {n: list(range(30)) for n in range(3)}, "once each, in order"
    assert function.most == 2, "maximumConcurrency batches in flight, no more"
    # In flight: 2 batches of 5. Held: per partition, short of a batch (4) and one fetch (7).
    assert max(held) <= 2 * 5 + 3 * (4 + 7), "fetched beyond a batch ahead per partition"
    assert consumer.kwargs["enable_auto_commit"] is False
    assert consumer.kwargs["auto_offset_reset"] == "earliest"
    assert consumer.kwargs["group_id"] == "kubelambda.default.orders"


async def test_records_fetched_while_their_partition_has_a_batch_in_flight_wait_for_the_next() -> (
    None
):
    # Fetches of 20 records, batches of 5: what comes with a fetch beyond a batch is kept for
    # the partition's next batches, not dropped and fetched again when the batch ends.
    consumer = FakeConsumer(log_of(2, 40, lambda offset: b"{}"), response=20)
    function = FakeFunction()
    function.seconds = 0.002
    function.check = committed_before(consumer)
    made = poller(trigger(batch_size=5, window_seconds=0), function, consumer, concurrency=2)
    await polling(made, lambda: consumer.committed == dict.fromkeys(consumer.log, 40), "commits")
    assert function.offsets() == {n: list(range(40)) for n in range(2)}
    assert {n for counts in consumer.fetched.values() for n in counts} == {1}, "fetched once"


async def test_batches_that_end_while_a_commit_is_out_share_the_next_one() -> None:
    consumer = FakeConsumer(log_of(4, 20, lambda offset: b"{}"), response=20)
    consumer.commit_seconds = 0.02  # a broker's round trip, long against the function
    function = FakeFunction()
    function.check = committed_before(consumer)
    made = poller(trigger(batch_size=5, window_seconds=0), function, consumer, concurrency=4)
    await polling(made, lambda: consumer.committed == dict.fromkeys(consumer.log, 20), "commits")
    assert function.offsets() == {n: list(range(20)) for n in range(4)}
    assert len(function.events) == 16
    assert len(consumer.commits) < 16, "one commit request per batch"
    assert max(len(offsets) for offsets in consumer.commits) > 1


async def test_a_batch_stays_under_6_mb_and_the_rest_goes_in_the_next() -> None:
    # 1.6 MB values are 2.1 MB in base64: two records make a batch, a third would not fit.
    consumer = FakeConsumer(log_of(2, 4, lambda offset: bytes([offset]) * 1_600_000))
    function = FakeFunction()
    made = poller(trigger(batch_size=100, window_seconds=0), function, consumer, concurrency=1)
    await polling(made, lambda: consumer.committed == dict.fromkeys(consumer.log, 4), "commits")
    assert function.offsets() == {0: list(range(4)), 1: list(range(4))}
    assert max(function.sizes) < 6 * 1024 * 1024
    assert [sum(map(len, e["records"].values())) for e in function.events] == [2, 2, 2, 2]


async def test_records_no_filter_matches_are_committed_unseen() -> None:
    consumer = FakeConsumer(
        log_of(2, 6, lambda offset: b'{"kind": "%s"}' % (b"order" if offset == 4 else b"refund"))
    )
    function = FakeFunction()
    made = poller(
        trigger(batch_size=3, window_seconds=0, filters=('{"value": {"kind": ["order"]}}',)),
        function,
        consumer,
    )
    await polling(made, lambda: consumer.committed == dict.fromkeys(consumer.log, 6), "commits")
    assert function.offsets() == {0: [4], 1: [4]}


async def test_a_rebalance_drops_the_batches_in_flight_uncommitted() -> None:
    consumer = FakeConsumer(log_of(1, 3, lambda offset: b"{}"))
    function = FakeFunction()
    function.seconds = 60
    made = poller(trigger(batch_size=10, window_seconds=0), function, consumer)
    task = asyncio.create_task(made.run())
    try:
        await wait_for_async(lambda: function.in_flight, seconds=10, what="a batch in flight")
        await consumer.listener.on_partitions_revoked(set(consumer.log))
        assert function.in_flight == [] and consumer.commits == []
        assert consumer.paused() == set()  # a new assignment starts unpaused
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_records_gathered_before_a_rebalance_are_left_to_the_new_assignment() -> None:
    consumer = FakeConsumer(log_of(1, 4, lambda offset: b"{}"))
    consumer.rebalance_at = 2  # while the batching window is open on the first four records
    function = FakeFunction()
    made = poller(trigger(batch_size=10, window_seconds=0.05), function, consumer)
    await polling(made, lambda: consumer.committed == dict.fromkeys(consumer.log, 4), "commits")
    assert function.offsets() == {0: [0, 1, 2, 3]}, "each once, though fetched twice"


def share(n: int, offsets: range) -> Share:
    records = [kafka_record(raw(n, offset, b"{}")) for offset in offsets]
    return Share(partition(n), records, end=offsets[-1] + 1)


def failing(*identifiers: tuple[int, int], error: bool = False) -> Callable[..., Outcome]:
    """Answers naming (partition, offset) items as failed, or a function error."""

    def answer(event: dict[str, Any]) -> Outcome:
        if error:
            return Outcome(status=200, function_error="Unhandled", body={"errorMessage": "x"})
        items = [{"partition": f"{TOPIC}-{p}", "offset": o} for p, o in identifiers]
        return Outcome(
            status=200, body={"batchItemFailures": [{"itemIdentifier": i} for i in items]}
        )

    return answer


class Script:
    """Answers in turn, the last one from then on."""

    def __init__(self, *answers: Callable[..., Outcome]) -> None:
        self.answers = list(answers)

    def __call__(self, event: dict[str, Any]) -> Outcome:
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return answer(event)


async def test_a_failed_batch_is_retried_with_a_doubling_backoff_then_given_up() -> None:
    consumer = FakeConsumer(log_of(2, 3, lambda offset: b"{}"))
    function = FakeFunction(failing(error=True))
    letters, sleeps = Letters(), list[float]()
    letters.full = 1  # the first try to store the records finds the store full
    made = poller(trigger(), function, consumer, letters=letters, sleeps=sleeps)
    await made.process(consumer, [share(0, range(3)), share(1, range(2))])
    assert len(function.events) == 3, "the first try and maximumRetryAttempts 2"
    assert sleeps == [1.0, 2.0, 60.0], "1 s doubling; then the full store waits"
    assert consumer.commits == [{partition(0): 3, partition(1): 2}], "committed once stored"
    [job] = letters.jobs
    letter = json.loads(job.payload)
    assert letter["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert letter["requestContext"]["approximateInvokeCount"] == 3
    assert {k: len(v) for k, v in letter["requestPayload"]["records"].items()} == {
        f"{TOPIC}-0": 3,
        f"{TOPIC}-1": 2,
    }


async def test_a_partial_failure_commits_before_it_and_retries_from_it() -> None:
    consumer = FakeConsumer(log_of(2, 5, lambda offset: b"{}"))
    ok = failing()
    function = FakeFunction(Script(failing((0, 2), (0, 4)), ok))
    sleeps: list[float] = []
    made = poller(trigger(), function, consumer, sleeps=sleeps)
    await made.process(consumer, [share(0, range(5)), share(1, range(5))])
    assert function.offsets() == {0: [0, 1, 2, 3, 4, 2, 3, 4], 1: [0, 1, 2, 3, 4]}
    assert consumer.commits == [{partition(0): 2, partition(1): 5}, {partition(0): 5}]
    assert sleeps == [1.0]


async def test_a_throttled_batch_spends_no_attempt() -> None:
    consumer = FakeConsumer(log_of(1, 2, lambda offset: b"{}"))
    throttled = lambda event: Outcome(status=503, throttled=True)  # noqa: E731
    function = FakeFunction(Script(throttled, throttled, throttled, failing(error=True)))
    letters = Letters()
    made = poller(trigger(), function, consumer, letters=letters, sleeps=[])
    await made.process(consumer, [share(0, range(2))])
    assert len(function.events) == 3 + 3, "three throttled, then three attempts"
    assert len(letters.jobs) == 1
    assert json.loads(letters.jobs[0].payload)["requestContext"]["approximateInvokeCount"] == 3
