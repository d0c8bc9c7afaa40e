"""Lambda's SQS event source mapping on a NATS JetStream stream: a queue Trigger's messages,
read by a durable pull consumer, reach its Function in batches in the SQS event shape.

A message is acknowledged once the batch holding it succeeded (or, with
ReportBatchItemFailures, once it was not among the failed items); a failed one comes again
after a backoff, and after `maxReceiveCount` receives goes to the Trigger's failure
destinations and is acknowledged. Messages no filter matches are acknowledged unseen, as
Lambda deletes them. At most `maximumConcurrency` batches are in flight, so a busy Function
slows the poller instead of filling its memory: a fetched message is always in a batch.

Every fetched message is reported in progress every third of the ack wait until it is
acknowledged or refused, however long its batch gathers or its Function runs; so the ack wait is
short, and the messages of a poller that died come back to another one in seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from kubelambda.api.filters import FilterPattern, matches_any, parse_filter
from kubelambda.api.identity import FunctionKey
from kubelambda.api.streams import QueueSource, queue_consumer_name
from kubelambda.api.trigger import Trigger
from kubelambda.clock import Clock
from kubelambda.dispatcher.batches import BatchInvoker, BatchOutcome, FailedRecords
from kubelambda.dispatcher.shapes import filter_document_sqs, sqs_event, sqs_record
from kubelambda.gateway.settings import SYNC_PAYLOAD_LIMIT

__all__ = ["QueuePoller", "consumer_name"]

log = logging.getLogger(__name__)

# How long a fetch waits for a first message; then it asks again (and sees a stop).
_FETCH_WAIT_SECONDS = 5.0
# A batch's event stays under the synchronous payload limit, with room for the envelope.
_BATCH_BYTES = SYNC_PAYLOAD_LIMIT - 64 * 1024
# Backoff of a failed message: first, doubling, at most (SQS's visibility timeout, roughly).
_BACKOFF_SECONDS = 1.0
_BACKOFF_MAX_SECONDS = 60.0
_UUIDS = uuid.UUID("6b1d3c9e-2f4a-4e8b-9c71-5d0a8f3e2b17")


def consumer_name(trigger: Trigger) -> str:
    """The durable consumer of a queue Trigger (the operator observes the same one)."""
    return queue_consumer_name(trigger.namespace, trigger.name)


@dataclass(slots=True)
class _Item:
    msg: Msg
    record: dict[str, Any]
    receive_count: int
    size: int = field(default=0)


class QueuePoller:
    """Polls one queue Trigger's stream until cancelled."""

    def __init__(
        self,
        *,
        trigger: Trigger,
        source: QueueSource,
        js: JetStreamContext,
        invoke: BatchInvoker,
        failures: FailedRecords,
        invoked_arn: str,
        concurrency: int,
        ack_wait_seconds: float,
        clock: Clock,
        region: str,
        account_id: str,
        on_state: Callable[[str | None], None] = lambda problem: None,
    ) -> None:
        self.trigger = trigger
        self.source = source
        self._js = js
        self._invoke = invoke
        self._failures = failures
        self._invoked_arn = invoked_arn
        self._concurrency = max(1, concurrency)
        self._ack_wait = ack_wait_seconds
        self._clock = clock
        self._arn = f"arn:aws:sqs:{region}:{account_id}:{source.stream}"
        self._region = region
        self._filters: tuple[FilterPattern, ...] = tuple(
            parse_filter(pattern) for pattern in source.batching.filters
        )
        self._function = FunctionKey(trigger.namespace, trigger.function)
        self._on_state = on_state
        self._carried: list[Msg] = []  # fetched beyond a full batch: the next batch's first
        self._held: dict[str, Msg] = {}  # fetched, not yet settled: reported in progress
        self.consumer = consumer_name(trigger)

    # --- the consumer ---------------------------------------------------------------------

    def _hold(self, msgs: list[Msg]) -> list[Msg]:
        for msg in msgs:
            self._held[msg.reply] = msg
        return msgs

    async def _settle(self, msg: Msg, acknowledgement: Any) -> None:
        """An ack or a nak; one lost with the connection is harmless (the message comes again
        after ack_wait)."""
        self._held.pop(msg.reply, None)
        with contextlib.suppress(nats.errors.Error):
            await acknowledgement

    async def _report_progress(self) -> None:
        """Tell the broker every held message is still being worked on, every third of the ack
        wait, until cancelled."""
        while True:
            await asyncio.sleep(self._ack_wait / 3)  # a period, not a wait for a state
            for msg in list(self._held.values()):
                with contextlib.suppress(nats.errors.Error):
                    await msg.in_progress()

    def _config(self, existing: ConsumerConfig | None) -> ConsumerConfig:
        batching = self.source.batching
        if existing is not None:
            # Where a consumer starts is fixed when it is made (as a mapping's starting
            # position is on Lambda): keep it, change what may change.
            deliver, start = existing.deliver_policy, existing.opt_start_time
        elif batching.starting_position == "LATEST":
            deliver, start = DeliverPolicy.NEW, None
        elif batching.starting_position == "AT_TIMESTAMP":
            moment = batching.starting_position_timestamp
            assert moment is not None  # the Trigger's validation requires it
            deliver = DeliverPolicy.BY_START_TIME
            start = moment.astimezone(UTC)
        else:
            deliver, start = DeliverPolicy.ALL, None
        return ConsumerConfig(
            durable_name=self.consumer,
            filter_subject=self.source.subject,
            deliver_policy=deliver,
            opt_start_time=start,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self._ack_wait,
            max_deliver=-1,
            # Every fetched message is in a batch in flight: no more than that many pending.
            max_ack_pending=self._concurrency * batching.batch_size,
        )

    async def _subscribe(self) -> JetStreamContext.PullSubscription:
        stream = self.source.stream
        try:
            info = await self._js.consumer_info(stream, self.consumer)
            existing: ConsumerConfig | None = info.config
        except nats.js.errors.NotFoundError:
            existing = None
        await self._js.add_consumer(stream, self._config(existing))
        return await self._js.pull_subscribe_bind(durable=self.consumer, stream=stream)

    # --- the loop -------------------------------------------------------------------------

    async def run(self) -> None:
        """Poll until cancelled; a broker or a stream that is not there is reported through
        `on_state` and tried again, nothing is acknowledged meanwhile."""
        delay = 1.0
        while True:
            try:
                subscription = await self._subscribe()
            except (nats.errors.Error, TimeoutError) as exc:
                self._on_state(_problem(self.source, exc))
                await asyncio.sleep(delay)  # a backoff between tries, not a wait for a state
                delay = min(delay * 2, 30.0)
                continue
            self._on_state(None)
            delay = 1.0
            try:
                await self._poll(subscription)
            except (nats.errors.Error, TimeoutError) as exc:
                self._on_state(_problem(self.source, exc))
            finally:
                with contextlib.suppress(Exception):
                    await subscription.unsubscribe()

    async def _poll(self, subscription: JetStreamContext.PullSubscription) -> None:
        slots = asyncio.Semaphore(self._concurrency)
        running: set[asyncio.Task[None]] = set()

        def finished(task: asyncio.Task[None]) -> None:
            running.discard(task)
            slots.release()
            if not task.cancelled() and task.exception() is not None:
                log.error(
                    "queue %s/%s: a batch failed unexpectedly",
                    self.trigger.namespace,
                    self.trigger.name,
                    exc_info=task.exception(),
                )

        progress = asyncio.create_task(self._report_progress())
        try:
            while True:
                await slots.acquire()
                try:
                    batch = await self._gather(subscription)
                except BaseException:
                    slots.release()
                    raise
                if not batch:
                    slots.release()
                    continue
                task = asyncio.create_task(self._process(batch))
                running.add(task)
                task.add_done_callback(finished)
        finally:
            progress.cancel()
            for task in list(running):
                task.cancel()
            await asyncio.gather(progress, *running, return_exceptions=True)
            # Unsettled: the broker hands them out again after the ack wait.
            self._held.clear()
            self._carried.clear()

    async def _fetch(
        self, subscription: JetStreamContext.PullSubscription, count: int, wait: float
    ) -> list[Msg]:
        try:
            return self._hold(await subscription.fetch(count, timeout=wait))
        except (nats.errors.TimeoutError, TimeoutError):
            return []

    async def _gather(self, subscription: JetStreamContext.PullSubscription) -> list[Msg]:
        """Up to batchSize messages: what is there at once, or, with a batching window, what
        arrives until the window closes or the batch is full."""
        batching = self.source.batching
        msgs, self._carried = self._carried, []
        if not msgs:
            msgs = await self._fetch(subscription, batching.batch_size, _FETCH_WAIT_SECONDS)
        if msgs and batching.window_seconds > 0:
            closes = self._clock.monotonic() + batching.window_seconds
            while len(msgs) < batching.batch_size:
                left = closes - self._clock.monotonic()
                if left <= 0:
                    break
                msgs += await self._fetch(subscription, batching.batch_size - len(msgs), left)
        return msgs

    # --- one batch ------------------------------------------------------------------------

    def _item(self, msg: Msg, now_ms: int) -> _Item:
        meta = msg.metadata
        sequence = meta.sequence.stream
        sent_ms = int(meta.timestamp.timestamp() * 1000) if meta.timestamp else now_ms
        received = meta.num_delivered or 1
        headers = {k: v for k, v in (msg.headers or {}).items() if not k.startswith("Nats-")}
        record = sqs_record(
            message_id=str(uuid.uuid5(_UUIDS, f"{self.source.stream}/{sequence}")),
            receipt_handle=f"{self.consumer}/{sequence}/{received}",
            body=msg.data,
            sent_timestamp_ms=sent_ms,
            receive_count=received,
            # JetStream does not keep the first delivery's time; the first receive is now.
            first_receive_ms=sent_ms if received > 1 else now_ms,
            headers=headers,
            event_source_arn=self._arn,
            region=self._region,
        )
        return _Item(msg=msg, record=record, receive_count=received, size=len(msg.data) + 1024)

    async def _process(self, msgs: list[Msg]) -> None:
        now_ms = int(self._clock.wall() * 1000)
        items: list[_Item] = []
        size = 0
        for n, msg in enumerate(msgs):
            item = self._item(msg, now_ms)
            if self._filters and not matches_any(self._filters, filter_document_sqs(item.record)):
                await self._settle(msg, msg.ack())  # Lambda deletes what no filter matches
                continue
            if items and size + item.size > _BATCH_BYTES:
                self._carried.extend(msgs[n:])  # the rest starts the next batch
                break
            items.append(item)
            size += item.size
        if not items:
            return
        event = sqs_event([item.record for item in items])
        outcome = await self._invoke(
            function=self._function,
            invoked_arn=self._invoked_arn,
            event=event,
            item_ids=[item.record["messageId"] for item in items],
            report_failures=self.source.batching.reports_batch_item_failures,
        )
        await self._settle_batch(items, outcome)

    async def _settle_batch(self, items: list[_Item], outcome: BatchOutcome) -> None:
        exhausted: list[_Item] = []
        for item in items:
            if item.record["messageId"] not in outcome.failed:
                await self._settle(item.msg, item.msg.ack())
            elif item.receive_count >= self.source.max_receive_count and not outcome.throttled:
                exhausted.append(item)
            else:
                backoff = _BACKOFF_SECONDS * 2 ** (item.receive_count - 1)
                await self._settle(item.msg, item.msg.nak(delay=min(backoff, _BACKOFF_MAX_SECONDS)))
        if not exhausted:
            return
        sent = await self._failures.send(
            delivery=self.trigger.delivery,
            namespace=self.trigger.namespace,
            invoked_arn=self._invoked_arn,
            event=sqs_event([item.record for item in exhausted]),
            outcome=outcome,
            attempts=max(item.receive_count for item in exhausted),
        )
        for item in exhausted:
            if sent:
                if not self._failures.has_destination(
                    self.trigger.delivery, self.trigger.namespace
                ):
                    log.warning(
                        "queue %s/%s: message %s dropped after %d receives, no failure destination",
                        self.trigger.namespace,
                        self.trigger.name,
                        item.record["messageId"],
                        item.receive_count,
                    )
                await self._settle(item.msg, item.msg.ack())
            else:
                await self._settle(item.msg, item.msg.nak(delay=_BACKOFF_MAX_SECONDS))


def _problem(source: QueueSource, exc: BaseException) -> str:
    if isinstance(exc, nats.js.errors.NotFoundError):
        return f"stream {source.stream} does not exist on the broker"
    return f"cannot consume stream {source.stream}: {exc!r}"
