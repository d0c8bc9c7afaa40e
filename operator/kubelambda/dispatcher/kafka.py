"""Lambda's self-managed Apache Kafka event source mapping: a kafka Trigger's topics, read by its
consumer group, reach the Function in batches in the self-managed Kafka event shape.

EventSources (sources.py) runs one `KafkaPoller` per kafka Trigger. A partition has at most one
batch in flight, its offset is committed only once that batch succeeded or was given up, and its
next batch starts only after that commit was answered, so records of a partition go in order and
a crash repeats some but loses none. Records fetched meanwhile wait in `Fetched`
(kafka_buffer.py); each batch is invoked, tried again and committed by `BatchRunner`
(kafka_batch.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer  # type: ignore[import-untyped]
from aiokafka.errors import KafkaError  # type: ignore[import-untyped]

from kubelambda.api.filters import FilterPattern, matches_any, parse_filter
from kubelambda.api.streams import KafkaSource
from kubelambda.api.trigger import Trigger
from kubelambda.clock import Clock
from kubelambda.delivery.reachability import described
from kubelambda.dispatcher.batches import BatchInvoker, FailedRecords
from kubelambda.dispatcher.kafka_batch import BatchRunner
from kubelambda.dispatcher.kafka_buffer import Fetched
from kubelambda.dispatcher.kafka_client import (
    Rebalance,
    fetch,
    missing_topics,
    pause_only,
    stop,
    why_unreachable,
)
from kubelambda.dispatcher.kafka_steps import Share, kafka_record, offset_reset
from kubelambda.dispatcher.shapes import KafkaRecord, filter_document_kafka
from kubelambda.gateway.settings import SYNC_PAYLOAD_LIMIT

__all__ = ["ClientOptions", "KafkaPoller"]

log = logging.getLogger(__name__)

# The client's connection settings (security protocol, SASL, TLS context), read afresh at each
# connect so a mended Secret counts; LookupError names what is wrong with them.
ClientOptions = Callable[[], Awaitable[dict[str, Any]]]

# How long a fetch waits for a first record; then the loop may look at the cluster (`_check`).
_FETCH_WAIT_SECONDS = 1.0
# A batch's event stays under the synchronous payload limit, with room for the envelope.
_BATCH_BYTES = SYNC_PAYLOAD_LIMIT - 64 * 1024
# Connecting again after the cluster was not there (or a topic was missing): doubling up to 30 s.
_RECONNECT_MAX_SECONDS = 30.0
# While no record comes, the cluster and the topics are looked at this often, so a broker that
# went away or a topic deleted shows as a problem (the client itself only reconnects quietly).
_CHECK_SECONDS = 10.0
_FETCH_MAX_WAIT_MS = 20
_REQUEST_TIMEOUT_MS = 20_000
_STOP_SECONDS = 10.0


class _Unavailable(Exception):
    """The consumer cannot start: the message is the Trigger's problem."""


class KafkaPoller:
    """Polls one kafka Trigger's topics until cancelled."""

    def __init__(
        self,
        *,
        trigger: Trigger,
        source: KafkaSource,
        options: ClientOptions,
        invoke: BatchInvoker,
        failures: FailedRecords,
        invoked_arn: str,
        concurrency: int,
        clock: Clock,
        on_state: Callable[[str | None], None] = lambda problem: None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        consumer: Callable[..., Any] = AIOKafkaConsumer,
    ) -> None:
        self.trigger = trigger
        self.source = source
        self._options = options
        self._concurrency = max(1, concurrency)
        self._clock = clock
        self._on_state = on_state
        self._sleep = sleep  # the backoffs' waits
        self._new_consumer = consumer  # aiokafka's, or a fake
        self._filters: tuple[FilterPattern, ...] = tuple(
            parse_filter(pattern) for pattern in source.batching.filters
        )
        self._runner = BatchRunner(
            trigger=trigger,
            source=source,
            invoke=invoke,
            failures=failures,
            invoked_arn=invoked_arn,
            sleep=sleep,
        )
        moment = source.batching.starting_position_timestamp
        self._start_ms = int(moment.timestamp() * 1000) if moment is not None else None
        self._where = ",".join(source.bootstrap_servers)
        self._name = f"{trigger.namespace}/{trigger.name}"
        self._consumer: Any = None
        self._fetched = Fetched(
            batch_size=source.batching.batch_size, batch_bytes=_BATCH_BYTES, wanted=self._wanted
        )
        self._busy: set[Any] = set()  # partitions with a batch in flight
        self._batches: set[asyncio.Task[None]] = set()
        self._wake: asyncio.Future[None] | None = None  # set when records came or a batch ended
        self._opened: float | None = None  # when the batching window of the next batch opened

    # --- connecting -----------------------------------------------------------------------

    async def run(self) -> None:
        """Poll until cancelled; a cluster that cannot be reached, a topic that does not exist
        or credentials it refuses are reported through `on_state` and tried again, and nothing
        is committed meanwhile."""
        delay = 1.0
        while True:
            try:
                consumer = await self._connect()
            except _Unavailable as exc:
                self._on_state(str(exc))
                await self._sleep(delay)  # a backoff between tries, not a wait for a state
                delay = min(delay * 2, _RECONNECT_MAX_SECONDS)
                continue
            self._on_state(None)
            delay = 1.0
            try:
                await self._poll(consumer)
            except KafkaError as exc:
                self._on_state(
                    f"reading from the Kafka cluster at {self._where} failed: {described(exc)}"
                )
            finally:
                await self._drop_batches()
                self._consumer = None
                await stop(consumer, seconds=_STOP_SECONDS)
            await self._sleep(delay)
            delay = min(delay * 2, _RECONNECT_MAX_SECONDS)

    async def _connect(self) -> Any:
        try:
            options = await self._options()
        except LookupError as exc:
            raise _Unavailable(str(exc)) from exc
        consumer = self._new_consumer(
            bootstrap_servers=list(self.source.bootstrap_servers),
            group_id=self.source.consumer_group,
            client_id=f"kubelambda-{self.trigger.namespace}-{self.trigger.name}",
            enable_auto_commit=False,
            auto_offset_reset=offset_reset(self.source.batching.starting_position),
            request_timeout_ms=_REQUEST_TIMEOUT_MS,
            # aiokafka keeps one fetch in flight per broker; while a partition is paused (it
            # holds a batch ahead), the fetch covers only the others, and when they are empty
            # the broker holds it up to this long before the resumed partition is asked again
            # (500 ms by default: a partition with a backlog could wait that long for records).
            fetch_max_wait_ms=_FETCH_MAX_WAIT_MS,
            **options,
        )
        try:
            await consumer.start()
            missing = await missing_topics(consumer, self.source.topics)
        except KafkaError as exc:
            await stop(consumer, seconds=_STOP_SECONDS)
            why = await why_unreachable(
                self.source.bootstrap_servers, options, seconds=_REQUEST_TIMEOUT_MS / 1000
            )
            why = why or described(exc)
            raise _Unavailable(f"cannot reach the Kafka cluster at {self._where}: {why}") from exc
        if missing:
            await stop(consumer, seconds=_STOP_SECONDS)
            raise _Unavailable(self._missing(missing))
        # Batches in flight are dropped before the group takes their partitions away, so no
        # commit lands after another member started reading them.
        rebalance = Rebalance(revoked=self._drop_batches, assigned=self._sync_pauses)
        consumer.subscribe(topics=list(self.source.topics), listener=rebalance)
        return consumer

    def _missing(self, topics: list[str]) -> str:
        names = ", ".join(topics)
        verb = "does" if len(topics) == 1 else "do"
        return f"topic {names} {verb} not exist on the Kafka cluster at {self._where}"

    async def _check(self, consumer: Any) -> None:
        """Say whether the cluster answers and the topics exist, while no record comes."""
        try:
            async with asyncio.timeout(_REQUEST_TIMEOUT_MS / 1000):
                missing = await missing_topics(consumer, self.source.topics)
        except (KafkaError, TimeoutError) as exc:
            self._on_state(f"cannot reach the Kafka cluster at {self._where}: {described(exc)}")
            return
        self._on_state(self._missing(missing) if missing else None)

    # --- the loop -------------------------------------------------------------------------

    async def _poll(self, consumer: Any) -> None:
        """Fetch in the background while batches start as soon as a slot and records of a
        partition with no batch in flight are there: a partition's next batch is usually
        fetched while its batch runs, so it starts once that batch is committed."""
        self._consumer = consumer
        checked = self._clock.monotonic()
        taking: asyncio.Future[bool] | None = None
        try:
            while True:
                closes = self._start_batches()
                if taking is None:
                    taking = asyncio.ensure_future(self._take(consumer))
                wake = self._wake = asyncio.get_running_loop().create_future()
                wait = None if closes is None else max(closes - self._clock.monotonic(), 0.0)
                either: list[asyncio.Future[Any]] = [taking, wake]
                await asyncio.wait(either, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
                if not taking.done():
                    continue
                got, taking = taking.result(), None
                if got:
                    checked = self._clock.monotonic()
                elif self._clock.monotonic() - checked >= _CHECK_SECONDS:
                    await self._check(consumer)
                    checked = self._clock.monotonic()
        finally:
            if taking is not None:
                taking.cancel()
                await asyncio.gather(taking, return_exceptions=True)

    async def _take(self, consumer: Any) -> bool:
        """Wait up to a second for records and keep what came; whether any did. The records are
        held and the partitions that now hold a batch ahead paused in the same step, before
        the client can fetch more for them."""
        fetched = await fetch(consumer, seconds=_FETCH_WAIT_SECONDS, start_ms=self._start_ms)
        for partition, records in fetched.items():
            self._fetched.add(partition, map(kafka_record, records))
        self._sync_pauses()
        self._woken()
        return bool(fetched)

    def _sync_pauses(self) -> None:
        """Pause the partitions that hold a whole batch ahead, and only those: the client then
        fetches nothing more for them, so memory stays bounded however slow the Function is
        (per partition, a batch in flight, one ahead and the rest of one fetch), and the
        consumer still polls (it stays in its group)."""
        if self._consumer is not None:
            pause_only(self._consumer, self._fetched.holds_a_batch)

    def _start_batches(self) -> float | None:
        """Start the batches that may start: while a slot is free and partitions with no batch
        in flight hold records, as many as they make (a batch that is not full waits for the
        batching window, opened when its first record could go). The moment the window closes,
        or None."""
        window = self.source.batching.window_seconds
        free = self._free
        while len(self._batches) < self._concurrency:
            found, full = self._fetched.ready(free)
            if not found:
                self._opened = None
                return None
            if window > 0 and not full:
                now = self._clock.monotonic()
                if self._opened is None:
                    self._opened = now
                if now - self._opened < window:
                    return self._opened + window
            self._opened = None
            self._dispatch(self._fetched.take(free))
            self._sync_pauses()  # a partition that held a batch ahead may now fetch again
        return None

    def _free(self, partition: Any) -> bool:
        return partition not in self._busy

    def _woken(self) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    def _wanted(self, record: KafkaRecord) -> bool:
        return not self._filters or matches_any(self._filters, filter_document_kafka(record))

    def _dispatch(self, parts: dict[Any, Share]) -> None:
        consumer = self._consumer
        self._busy.update(parts)
        task = asyncio.create_task(self.process(consumer, list(parts.values())))
        self._batches.add(task)

        def finished(task: asyncio.Task[None]) -> None:
            self._batches.discard(task)
            self._busy.difference_update(parts)
            if not task.cancelled() and (error := task.exception()) is not None:
                log.error("kafka %s: a batch failed unexpectedly", self._name, exc_info=error)
            self._woken()  # its partitions and its slot are free

        task.add_done_callback(finished)

    async def _drop_batches(self) -> None:
        """Cancel the batches in flight and forget the records fetched (the partitions were
        revoked, or the consumer stops): their offsets are not committed, so their records come
        again, to whoever reads next."""
        self._fetched.drop()
        batches = list(self._batches)
        for task in batches:
            task.cancel()
        await asyncio.gather(*batches, return_exceptions=True)
        await self._runner.settle()
        self._batches.clear()
        self._busy.clear()

    async def process(self, consumer: Any, parts: list[Share]) -> None:
        """Invoke one batch until every share of it is done (`BatchRunner.process`). The poll
        loop runs it as a task per batch."""
        await self._runner.process(consumer, parts)
