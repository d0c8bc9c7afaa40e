"""The event sources benchmark's brokers (benchmarks/event_sources.py): JetStream streams and Kafka
topics filled with a backlog, drained by a plain client (the reference), read as messages come,
and the Triggers through which local mode reads them; and `Drain`, one backlog consumed.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
import nats.js.errors
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # type: ignore[import-untyped]
from nats.js.api import AckPolicy, ConsumerConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from harness.kafka import KafkaBroker
from harness.nats import NatsServer

BATCH = 100
QUEUE_TRIGGERS = """
---
apiVersion: kubelambda.dev/v1alpha1
kind: Trigger
metadata: {{name: bulk}}
spec:
  function: noop
  queue: {{stream: {bulk}, batchSize: {batch}, maximumBatchingWindowSeconds: 1,
           maximumConcurrency: {concurrency}}}
---
apiVersion: kubelambda.dev/v1alpha1
kind: Trigger
metadata: {{name: trickle}}
spec:
  function: stamp
  queue: {{stream: {trickle}, batchSize: 10, maximumBatchingWindowSeconds: 0}}
"""
KAFKA_TRIGGERS = """
---
apiVersion: kubelambda.dev/v1alpha1
kind: Trigger
metadata: {{name: bulk}}
spec:
  function: noop
  kafka: {{bootstrapServers: ["{bootstrap}"], topics: [{bulk}], consumerGroup: {bulk},
          startingPosition: TRIM_HORIZON, batchSize: {batch}, maximumBatchingWindowSeconds: 0,
          maximumConcurrency: {concurrency}}}
---
apiVersion: kubelambda.dev/v1alpha1
kind: Trigger
metadata: {{name: trickle}}
spec:
  function: stamp
  kafka: {{bootstrapServers: ["{bootstrap}"], topics: [{trickle}], consumerGroup: {trickle},
          startingPosition: TRIM_HORIZON, batchSize: 10, maximumBatchingWindowSeconds: 0}}
"""
Cpu = Callable[[], dict[str, float]]


class Failed(Exception):
    """The run cannot go on; raised inside the event loop, where a SystemExit would skip the
    cleanups that stop local mode, and turned into one at the end."""


def machine_seconds() -> float:
    """CPU seconds every process on the machine used so far, all cores (/proc/stat: all but
    idle and iowait; steal counts, as someone else's work)."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def body(n: int, *, sent: float = 0.0) -> bytes:
    """A message of about 100 bytes of JSON."""
    return json.dumps({"n": n, "sent": sent, "order": f"{n:08d}", "pad": "x" * 48}).encode()


@dataclass
class Drain:
    """A backlog consumed: how many were acked at the first and the last sighting, when, and
    the CPU seconds of each process between the two."""

    first: int = 0
    last: int = 0
    started: float = 0.0
    ended: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)
    samples: list[tuple[float, int]] = field(default_factory=list)  # (when, acked) polled

    @property
    def rate(self) -> float:
        return (self.last - self.first) / max(self.ended - self.started, 1e-3)

    def per_message(self) -> dict[str, float]:
        """CPU microseconds per message, by process."""
        return {k: v / max(self.last - self.first, 1) * 1e6 for k, v in self.cpu.items()}

    def cores(self) -> dict[str, float]:
        """Cores each process kept busy meanwhile."""
        return {k: v / max(self.ended - self.started, 1e-3) for k, v in self.cpu.items()}

    @classmethod
    def total(cls, drains: list[Drain]) -> Drain:
        """Several drains as one: their messages over their summed times."""
        return cls(
            last=sum(d.last - d.first for d in drains),
            ended=sum(d.ended - d.started for d in drains),
            cpu={k: sum(d.cpu[k] for d in drains) for k in drains[0].cpu},
        )

    def mark(self, acked: int, cpu: dict[str, float], *, final: bool) -> None:
        now = time.monotonic()
        if not final:
            self.first, self.started, self.cpu = acked, now, cpu
        else:
            self.last, self.ended = acked, now
            self.cpu = {k: cpu[k] - self.cpu[k] for k in cpu}
        self.samples.append((now, acked))

    def steady(self) -> tuple[float, float, float]:
        """Messages/s from 10% to 90% of the backlog acked (as polled); the share left after
        that, and the seconds it took: a slow end shows here, not in the overall rate."""
        low = next(s for s in self.samples if s[1] >= 0.1 * self.last)
        high = next(s for s in self.samples if s[1] >= 0.9 * self.last)
        if high[0] - low[0] < 0.1:  # too few polls to tell: the whole drain
            return self.rate, 0.0, 0.0
        rate = (high[1] - low[1]) / (high[0] - low[0])
        return rate, 1 - high[1] / self.last, self.ended - high[0]


# --- the sources ----------------------------------------------------------------------------


class JetStream:
    """Streams on the harness's nats-server; kubelambda's consumer is kubelambda_default_bulk
    (docs/contracts.md: `kubelambda_NAMESPACE_TRIGGER`)."""

    name = "jetstream"

    def __init__(self, server: NatsServer) -> None:
        self.server = server
        self.pid = server.process.popen.pid if server.process else 0

    def triggers(self, bulk: str, trickle: str, *, concurrency: int) -> str:
        return QUEUE_TRIGGERS.format(
            bulk=bulk, trickle=trickle, batch=BATCH, concurrency=concurrency
        )

    @asynccontextmanager
    async def client(self) -> AsyncIterator[Any]:
        nc = await nats.connect(self.server.url)
        try:
            yield nc
        finally:
            await nc.close()

    async def create(self, stream: str, count: int = 0) -> None:
        """The stream, with `count` messages in it (published without waiting for each ack,
        then counted)."""
        async with self.client() as nc:
            js = nc.jetstream()
            await js.add_stream(name=stream, subjects=[f"{stream}.>"])
            for n in range(count):
                await nc.publish(f"{stream}.m", body(n))
                if n % 1000 == 999:
                    await nc.flush()
            await nc.flush()
            deadline = time.monotonic() + 30
            while (held := (await js.stream_info(stream)).state.messages) < count:
                if time.monotonic() > deadline:
                    raise Failed(f"stream {stream} holds {held} of the {count} published")
                await asyncio.sleep(0.05)

    @asynccontextmanager
    async def acked(self, stream: str) -> AsyncIterator[Callable[[], Awaitable[int]]]:
        async with self.client() as nc:
            js = nc.jetstream()

            async def floor() -> int:
                try:
                    info = await js.consumer_info(stream, "kubelambda_default_bulk")
                except nats.js.errors.NotFoundError:
                    return 0
                return info.ack_floor.stream_seq if info.ack_floor else 0

            yield floor

    async def drain(self, stream: str, count: int, cpu: Cpu, *, reader: str) -> Drain:
        async with self.client() as nc:
            config = ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, max_ack_pending=10 * BATCH)
            sub = await nc.jetstream().pull_subscribe(
                f"{stream}.>", durable=reader, stream=stream, config=config
            )
            drain, got = Drain(), 0
            while got < count:
                msgs = await sub.fetch(BATCH, timeout=10)
                for msg in msgs:
                    await msg.ack()
                got += len(msgs)
                if not drain.started:
                    await nc.flush()
                    drain.mark(got, cpu(), final=False)
            await nc.flush()
            drain.mark(got, cpu(), final=True)
            return drain

    @asynccontextmanager
    async def publisher(self, stream: str) -> AsyncIterator[Callable[[bytes], Awaitable[Any]]]:
        async with self.client() as nc:
            js = nc.jetstream()
            yield lambda data: js.publish(f"{stream}.m", data)

    @asynccontextmanager
    async def reader(self, stream: str, seen: list[tuple[float, bytes]]) -> AsyncIterator[None]:
        """Reads `stream` as messages come, noting when each arrived, until the end of the block."""
        async with self.client() as nc:
            sub = await nc.jetstream().pull_subscribe(
                f"{stream}.>", durable="reader", stream=stream
            )

            async def read() -> None:
                while True:
                    try:
                        msgs = await sub.fetch(10, timeout=5)
                    except TimeoutError:
                        continue
                    now = time.time()
                    for msg in msgs:
                        seen.append((now, msg.data))
                        await msg.ack()

            async with _running(read()):
                yield


class Kafka:
    """Topics of the harness's Kafka broker; kubelambda's group is named in its Trigger."""

    name = "kafka"

    def __init__(self, broker: KafkaBroker, *, partitions: int) -> None:
        self.broker = broker
        self.partitions = partitions
        self.pid = broker.process.popen.pid if broker.process else 0

    def triggers(self, bulk: str, trickle: str, *, concurrency: int) -> str:
        return KAFKA_TRIGGERS.format(
            bootstrap=self.broker.bootstrap,
            bulk=bulk,
            trickle=trickle,
            batch=BATCH,
            concurrency=concurrency,
        )

    async def create(self, topic: str, count: int = 0) -> None:
        """The topic, with `count` records spread evenly over its partitions: one per batch in
        flight, as Lambda has at most one per partition."""
        partitions = self.partitions if count else 1
        await self.broker.create_topic(topic, partitions=partitions)
        producer = AIOKafkaProducer(bootstrap_servers=self.broker.bootstrap, linger_ms=5)
        await producer.start()
        try:
            for chunk in range(0, count, 1000):
                sent = [producer.send(topic, body(n), partition=n % partitions)
                        for n in range(chunk, min(chunk + 1000, count))]  # fmt: skip
                await asyncio.gather(*await asyncio.gather(*sent))
        finally:
            await producer.stop()

    @asynccontextmanager
    async def acked(self, topic: str) -> AsyncIterator[Callable[[], Awaitable[int]]]:
        async with self.broker.admin() as admin:

            async def committed() -> int:
                offsets = await admin.list_consumer_group_offsets(topic)
                return sum(max(meta.offset, 0) for meta in offsets.values())

            yield committed

    def consumer(self, topic: str, group: str) -> Any:
        return AIOKafkaConsumer(
            topic,
            bootstrap_servers=self.broker.bootstrap,
            group_id=group,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            max_poll_records=BATCH,
        )

    async def drain(self, topic: str, count: int, cpu: Cpu, *, reader: str) -> Drain:
        consumer = self.consumer(topic, f"{reader}-{topic}")
        await consumer.start()
        try:
            drain, got = Drain(), 0
            while got < count:
                batches = await consumer.getmany(timeout_ms=1000, max_records=BATCH)
                if batches:
                    await consumer.commit()
                    got += sum(len(records) for records in batches.values())
                    if not drain.started:
                        drain.mark(got, cpu(), final=False)
            drain.mark(got, cpu(), final=True)
            return drain
        finally:
            await consumer.stop()

    @asynccontextmanager
    async def publisher(self, topic: str) -> AsyncIterator[Callable[[bytes], Awaitable[Any]]]:
        producer = AIOKafkaProducer(bootstrap_servers=self.broker.bootstrap)
        await producer.start()
        try:
            yield lambda data: producer.send(topic, data)
        finally:
            await producer.stop()

    @asynccontextmanager
    async def reader(self, topic: str, seen: list[tuple[float, bytes]]) -> AsyncIterator[None]:
        consumer = self.consumer(topic, f"reader-{topic}")
        await consumer.start()

        async def read() -> None:
            while True:
                batches = await consumer.getmany(timeout_ms=1000, max_records=10)
                now = time.time()
                for records in batches.values():
                    seen.extend((now, record.value) for record in records)
                if batches:
                    await consumer.commit()

        try:
            async with _running(read()):
                yield
        finally:
            await consumer.stop()


Source = JetStream | Kafka


@asynccontextmanager
async def _running(work: Awaitable[None]) -> AsyncIterator[None]:
    """`work` runs in the background for the block; its failure is raised, not lost."""
    task = asyncio.ensure_future(work)
    try:
        yield
    finally:
        task.cancel()
        results = await asyncio.gather(task, return_exceptions=True)
        if isinstance(results[0], Exception):
            raise results[0]
