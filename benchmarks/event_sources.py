"""Benchmark: queue and kafka Triggers (Lambda's event source mappings) through `kubelambda local
--nats`, against the same broker read by a plain client in this process, in the same run.

For each source (jetstream: a real nats-server; kafka: the harness's Kafka broker), each round:

1. Reference: --messages messages (~100 bytes of JSON) published first, then read by a plain
   client here: nats-py's pull consumer fetching batches of 100 and acking each message; aiokafka
   in a consumer group, committing each batch of up to 100 (again by new consumers until 1.5 s
   were timed). Messages/s from the first ack (or commit) to the last.
2. Through kubelambda: as many messages published first (Kafka: evenly over --concurrency
   partitions), then local mode started with a Trigger at batchSize 100 (a queue needs a window
   of at least 1 s above 10, as on Lambda, so 1 s, which a backlog fills at once; Kafka: window
   0, the smallest), maximumConcurrency --concurrency, onto a no-op function with as many slots.
   The broker counts: the consumer's ack floor (JetStream) or the group's committed offsets
   (Kafka), polled from here. Messages/s from the first ack seen once the functions serve to the
   last. Target: (2) / (1) >= 0.3. The pace from 10% to 90% acked is printed too: a slow end of
   the drain shows there.
3. Latency at a low rate: --rate messages/s for --latency-seconds, each carrying its send time,
   to a second Trigger (batchSize 10, window 0) whose function notes when it ran: ran - sent, all
   of it beyond the window. Reference: the plain client reading such messages as they come.

Reference and kubelambda alternate first from round to round; rates are medians over rounds,
latency percentiles over every round's messages. CPU per message of each process (local mode,
its runtimes, the broker, this client) and the machine's busy cores say which step dominates.
The default run takes 2 to 3 minutes with both sources; --quick about 40 s.

    python benchmarks/event_sources.py [--sources jetstream,kafka] [--rounds 3] [--quick]
        [--messages 20000] [--concurrency 4] [--rate 20] [--latency-seconds 6]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import logging
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
import nats.js.errors
import uvloop
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # type: ignore[import-untyped]
from nats.js.api import AckPolicy, ConsumerConfig

# CPU from /proc, of local mode and of its runtimes, as the async events benchmark reads it.
from async_events import cpu_seconds, descendants
from loadgen import percentile

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from harness.kafka import KafkaBroker, kafka_broker
from harness.nats import NatsServer, nats_server
from support.local import LocalMode, start_local

BATCH = 100
REFERENCE_SECONDS = 1.5  # the plain client drains the backlog again until this long in all
HANDLED_WITHIN = 30.0  # seconds for the messages of a latency phase, once published
WARM = 5  # messages through the latency path before it is timed: consumers joined, code warm
FUNCTIONS = """
apiVersion: kubelambda.dev/v1alpha1
kind: Function
metadata: {{name: noop}}
spec:
  runtime: python3.12
  handler: app.handler
  concurrency: {concurrency}
  scaling: {{minReplicas: 1, maxReplicas: 1}}
  code: {{inline: {{files: {{app.py: "def handler(event, context):\\n    return None\\n"}}}}}}
---
apiVersion: kubelambda.dev/v1alpha1
kind: Function
metadata: {{name: stamp}}
spec:
  runtime: python3.12
  handler: app.handler
  scaling: {{minReplicas: 1, maxReplicas: 1}}
  env: [{{name: STAMPS, value: "{stamps}"}}]
  code:
    inline:
      files:
        app.py: |
          import base64, json, os, time
          def handler(event, context):
              ran = time.time()
              if "Records" in event:
                  bodies = [record["body"] for record in event["Records"]]
              else:
                  bodies = [base64.b64decode(record["value"])
                            for records in event["records"].values() for record in records]
              path = os.path.join(os.environ["STAMPS"], context.aws_request_id)
              with open(path + ".tmp", "w") as out:
                  json.dump({{"ran": ran, "sent": [json.loads(b) for b in bodies]}}, out)
              os.replace(path + ".tmp", path)
"""
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


DURATION = re.compile(r"\tDuration: ([\d.]+) ms")


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


# --- the phases -----------------------------------------------------------------------------

Seen = Callable[[], list[tuple[dict[str, Any], float]]]  # (message, when it was handled)


async def paced(
    send: Callable[[bytes], Awaitable[Any]], *, rate: float, count: int, first: int = 0
) -> None:
    """`count` messages at `rate`/s, each carrying when it was sent; Kafka's send returns a
    future of the broker's answer, waited for as a JetStream publish is."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    for n in range(count):
        if (delay := start + n / rate - loop.time()) > 0:
            await asyncio.sleep(delay)
        answer = await send(body(first + n, sent=time.time()))
        if isinstance(answer, asyncio.Future):
            await answer


async def wait_seen(seen: Seen, expected: int, what: str) -> None:
    deadline = time.monotonic() + HANDLED_WITHIN
    while (got := len(seen())) < expected:
        if time.monotonic() > deadline:
            raise Failed(f"{what}: {got} of {expected} handled after {HANDLED_WITHIN:.0f} s")
        await asyncio.sleep(0.1)


async def latency(source: Source, target: str, args: argparse.Namespace, seen: Seen) -> list[float]:
    """Milliseconds from send to handled of `rate * latency_seconds` messages published one at
    a time, after WARM untimed ones."""
    count = int(args.rate * args.latency_seconds)
    what = f"{source.name} {target}"
    async with source.publisher(target) as send:
        await paced(send, rate=args.rate, count=WARM)
        await wait_seen(seen, WARM, f"{what}: warm-up")
        await paced(send, rate=args.rate, count=count, first=WARM)
    await wait_seen(seen, WARM + count, what)
    return [(at - message["sent"]) * 1000 for message, at in seen() if message["n"] >= WARM]


async def reference(source: Source, args: argparse.Namespace, r: int, **_: Any) -> dict[str, Any]:
    """The broker read by a plain client in this process."""
    bulk, trickle = f"refbulk{r}", f"reftrickle{r}"
    await source.create(bulk, args.messages)
    await source.create(trickle)

    def cpu() -> dict[str, float]:
        return {
            "broker": cpu_seconds([source.pid]),
            "client": time.process_time(),
            "machine": machine_seconds(),
        }

    # Drained again by new consumers until it took long enough to time: a fast reference can
    # drain a backlog in a tenth of a second.
    drains: list[Drain] = []
    while sum(d.ended - d.started for d in drains) < REFERENCE_SECONDS:
        reader = f"reference{len(drains)}"
        drains.append(await source.drain(bulk, args.messages, cpu, reader=reader))
    drain = Drain.total(drains)
    arrived: list[tuple[float, bytes]] = []
    async with source.reader(trickle, arrived):
        delays = await latency(
            source, trickle, args, lambda: [(json.loads(data), at) for at, data in arrived]
        )
    return {"drain": drain, "latency": delays}


def wait_runtimes(local: LocalMode) -> None:
    """Until both functions answered an invocation of their own (the no-op one's is the one
    invocation that is not a batch), so their instances serve."""
    events: dict[str, dict[str, Any]] = {"noop": {}, "stamp": {"Records": []}}
    for function, event in events.items():
        answer = local.client.post(f"/2015-03-31/functions/{function}/invocations", json=event)
        if answer.status_code != 200 or "x-amz-function-error" in answer.headers:
            raise Failed(
                f"{function} answered {answer.status_code} {answer.text[:200]}; local mode "
                f"said:\n{local.output()[-3000:]}"
            )


async def kubelambda(
    source: Source, args: argparse.Namespace, r: int, *, work: Path, nats_url: str
) -> dict[str, Any]:
    """The same through local mode's pollers and the no-op (and stamping) functions."""
    bulk, trickle = f"bulk{r}", f"trickle{r}"
    await source.create(bulk, args.messages)
    await source.create(trickle)
    stamps = work / f"stamps-{source.name}-{r}"
    stamps.mkdir()
    manifest = work / f"{source.name}-{r}.yaml"
    manifest.write_text(
        FUNCTIONS.format(concurrency=args.concurrency, stamps=stamps)
        + source.triggers(bulk, trickle, concurrency=args.concurrency)
    )
    local = await asyncio.to_thread(start_local, manifest, "--nats", nats_url)
    try:
        drain = await drained(source, local, bulk, args.messages)

        def seen() -> list[tuple[dict[str, Any], float]]:
            found = []
            for path in stamps.iterdir():
                if not path.name.endswith(".tmp"):
                    stamp = json.loads(path.read_text())
                    found += [(message, stamp["ran"]) for message in stamp["sent"]]
            return found

        delays = await latency(source, trickle, args, seen)
        # The no-op function's invocations are the bulk Trigger's batches (the runtime's
        # REPORT lines, all in by now): how full they were, how long the function took.
        reports = [line for line in local.lines if line.startswith("[noop] REPORT")]
        durations = [float(m.group(1)) for m in map(DURATION.search, reports) if m]
        return {
            "drain": drain,
            "latency": delays,
            "batches": len(reports) - 1,  # wait_runtimes' own
            "function ms": statistics.mean(durations) if durations else 0.0,
        }
    finally:
        (work / f"local-{source.name}-{r}.log").write_text(local.output())
        await asyncio.to_thread(local.stop)


async def drained(source: Source, local: LocalMode, bulk: str, count: int) -> Drain:
    """Polls the broker until local mode's consumer acked all `count` messages of `bulk`."""
    pid = local.process.pid

    def cpu() -> dict[str, float]:
        return {
            "local mode": cpu_seconds([pid]),
            "runtimes": cpu_seconds(descendants(pid)),
            "broker": cpu_seconds([source.pid]),
            "client": time.process_time(),
            "machine": machine_seconds(),
        }

    # Timed from the first ack seen once both runtimes serve: their start is not per message.
    ready = asyncio.ensure_future(asyncio.to_thread(wait_runtimes, local))
    drain, progress = Drain(), (0, time.monotonic())
    try:
        async with source.acked(bulk) as acked:
            while (done := await acked()) < count:
                if done != progress[0]:
                    progress = (done, time.monotonic())
                elif time.monotonic() - progress[1] > 60 or local.process.poll() is not None:
                    raise Failed(
                        f"{source.name}: {done} of {count} acked, none more for 60 s; local "
                        f"mode said:\n{local.output()[-4000:]}"
                    )
                if drain.started:
                    drain.samples.append((time.monotonic(), done))
                elif done and ready.done():
                    ready.result()
                    drain.mark(done, cpu(), final=False)
                await asyncio.sleep(0.025)
            if not drain.started:
                raise Failed(
                    f"{source.name}: all {count} messages were acked before the runtimes "
                    "answered; measure more --messages"
                )
            drain.mark(done, cpu(), final=True)
    finally:
        await ready
    return drain


# --- the run --------------------------------------------------------------------------------


async def run(
    args: argparse.Namespace, work: Path, sources: list[Source], nats_url: str
) -> dict[str, list[dict[str, dict[str, Any]]]]:
    results: dict[str, list[dict[str, dict[str, Any]]]] = {s.name: [] for s in sources}
    for r in range(args.rounds):
        for source in sources:
            phases = [("reference", reference), ("kubelambda", kubelambda)]
            found = {}
            for path, phase in phases[:: -1 if r % 2 else 1]:  # each goes first in turn
                found[path] = await phase(source, args, r, work=work, nats_url=nats_url)
            results[source.name].append(found)
            ref, kl = found["reference"], found["kubelambda"]
            print(
                f"round {r + 1} {source.name}: reference {ref['drain'].rate:,.0f}/s, "
                f"kubelambda {kl['drain'].rate:,.0f}/s "
                f"({kl['drain'].rate / ref['drain'].rate:.2f}); latency p50/p99 at "
                f"{args.rate:g}/s: reference {_p(ref, 0.5):.1f}/{_p(ref, 0.99):.1f} ms, "
                f"kubelambda {_p(kl, 0.5):.1f}/{_p(kl, 0.99):.1f} ms",
                flush=True,
            )
    return results


def _p(phase: dict[str, Any], q: float) -> float:
    return percentile(phase["latency"], q)


def report(args: argparse.Namespace, results: dict[str, list[dict[str, dict[str, Any]]]]) -> None:
    summary: dict[str, Any] = {
        "messages": args.messages,
        "batch_size": BATCH,
        "concurrency": args.concurrency,
        "latency_rate": args.rate,
    }
    for name, rounds in results.items():
        summary |= {f"{name}_{k}": v for k, v in report_source(args, name, rounds).items()}
    print(json.dumps(summary))


def report_source(
    args: argparse.Namespace, name: str, rounds: list[dict[str, dict[str, Any]]]
) -> dict[str, float]:
    def med(path: str, read: Callable[[Drain], float]) -> float:
        return statistics.median(read(found[path]["drain"]) for found in rounds)

    def med_of(path: str, measure: str, key: str) -> float:
        """The median over rounds of one process's CPU per message, or cores busy."""
        return med(path, lambda d: getattr(d, measure)()[key])

    def pooled(path: str, q: float) -> float:
        return percentile([d for found in rounds for d in found[path]["latency"]], q)

    def row(label: str, cells: list[str], note: str = "") -> None:
        print(f"  {label:<44} {cells[0]:>12} {cells[1]:>12}{note}")

    paths = ("reference", "kubelambda")
    ratios = [f["kubelambda"]["drain"].rate / f["reference"]["drain"].rate for f in rounds]
    ratio = statistics.median(ratios)
    rates = [med(p, lambda d: d.rate) for p in paths]
    print(
        f"\n{name}: {args.messages:,} messages of ~100 bytes, batchSize {BATCH}, "
        f"maximumConcurrency {args.concurrency}, {len(rounds)} round(s); medians over rounds"
    )
    row("", list(paths))
    row("messages/s, first ack to last", [f"{r:,.0f}" for r in rates])
    met = "met" if ratio >= 0.3 else "missed"
    row("kubelambda / reference", ["", f"{ratio:.2f}"], f"   target >= 0.3 ({met})")
    if max(ratios) > 1.25 * min(ratios):
        print(f"  !! the rounds disagree ({', '.join(f'{v:.2f}' for v in ratios)}): busy machine")
    # Both latency Triggers have window 0 (the smallest), so all of it is beyond the window.
    print(f"  latency at {args.rate:g} messages/s, send -> handled (window 0 s, so all beyond it):")
    for q in (0.5, 0.99):
        row(f"  p{q * 100:g}, ms", [f"{pooled(p, q):.1f}" for p in paths])
    keys = {p: list(rounds[0][p]["drain"].cpu) for p in paths}
    cpu = {p: {k: med_of(p, "per_message", k) for k in keys[p]} for p in paths}
    cores = {p: {k: med_of(p, "cores", k) for k in keys[p]} for p in paths}
    for process in ("broker", "client", "local mode", "runtimes"):
        cells = [f"{cpu[p][process]:.0f}" if process in cpu[p] else "-" for p in paths]
        row(f"CPU us per message, {process}", cells)
    row("cores busy, whole machine", [f"{cores[p]['machine']:.2f}" for p in paths])
    batch = args.messages / statistics.median(f["kubelambda"]["batches"] for f in rounds)
    function_ms = statistics.median(f["kubelambda"]["function ms"] for f in rounds)
    steady = [f["kubelambda"]["drain"].steady() for f in rounds]
    pace, left, took = (statistics.median(s[i] for s in steady) for i in range(3))
    print(
        f"  kubelambda: {batch:.0f} messages per batch, a batch every "
        f"{1000 * batch / rates[1]:.1f} ms (the no-op function runs {function_ms:.2f} ms of "
        f"it); {pace:,.0f}/s from 10% to 90% acked, then the last {left:.0%} took "
        f"{took:.2f} s ({left * args.messages / pace:.2f} s at that pace)"
    )
    found = dominant(
        cpu, cores, rate=rates[1], batch=batch, messages=args.messages, steady=(pace, left, took)
    )
    for line in found:
        print(f"  {line}")
    return {
        "reference_rate": round(rates[0]),
        "rate": round(rates[1]),
        "ratio": round(ratio, 2),
        "steady_rate": round(pace),
        "reference_p50_ms": round(pooled("reference", 0.5), 1),
        "reference_p99_ms": round(pooled("reference", 0.99), 1),
        "p50_ms": round(pooled("kubelambda", 0.5), 1),
        "p99_ms": round(pooled("kubelambda", 0.99), 1),
        "local_cpu_us": round(cpu["kubelambda"]["local mode"]),
    }


def dominant(
    cpu: dict[str, dict[str, float]],
    cores: dict[str, dict[str, float]],
    *,
    rate: float,
    batch: float,
    messages: int,
    steady: tuple[float, float, float],
) -> list[str]:
    """Which step sets the rate through kubelambda: a slow end of the drain (`steady`: the
    pace from 10% to 90% acked, the share left, the seconds it took), a process that keeps a
    core busy, the machine busy with other work, or waiting between batches."""
    pace, left, took = steady
    mine = {k: v for k, v in cores["kubelambda"].items() if k not in ("client", "machine")}
    busiest = max(mine, key=mine.__getitem__)
    others = cores["kubelambda"]["machine"] - sum(mine.values()) - cores["kubelambda"]["client"]
    local = cpu["kubelambda"]["local mode"]
    lines = [
        "cores busy through kubelambda: "
        + ", ".join(f"{k} {v:.2f}" for k, v in sorted(mine.items(), key=lambda kv: -kv[1]))
        + f", this client {cores['kubelambda']['client']:.2f}, other work {max(others, 0):.2f}"
    ]
    full = cores["kubelambda"]["machine"] >= 1.7
    if took > 2 * left * messages / pace and took > 0.25 * messages / rate:
        verdict = (
            f"the end of the drain: the last {left:.0%} took {took:.2f} s, "
            f"{left * messages / pace:.2f} s at the steady pace; at that pace the ratio would "
            f"be {pace / rate:.1f}x higher"
        )
    elif mine[busiest] >= 0.7:
        verdict = f"{busiest}, busy {mine[busiest]:.0%} of a core"
        if full:
            verdict += f" (the 2 cores were full, {others:.2f} of them with other work)"
    elif full and others >= 0.4:
        verdict = f"the machine: its 2 cores are full, {others:.2f} of them with other work"
    else:
        verdict = (
            f"waiting: no process is CPU-bound (the busiest, {busiest}, {mine[busiest]:.0%} of "
            f"a core); local mode's CPU per batch is {local * batch / 1000:.1f} ms of the "
            f"{1000 * batch / rate:.1f} ms between batches"
        )
    lines.append(f"dominates: {verdict}")
    lines.append(
        f"  local mode (gateway and pollers: one Python process) spends {local:.0f} us of CPU "
        f"per message: at most {1e6 / local:,.0f} messages/s on one core. The plain client "
        f"spends {cpu['reference']['client']:.0f} us; the broker {cpu['reference']['broker']:.0f}"
        f" us (reference) and {cpu['kubelambda']['broker']:.0f} us (kubelambda)"
    )
    return lines


def kafka_built() -> bool:
    return importlib.util.find_spec("kubelambda.dispatcher.kafka") is not None


def options() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sources",
        default="jetstream,kafka" if kafka_built() else "jetstream",
        help="comma-separated: jetstream, kafka (default: both, or jetstream alone while "
        "kubelambda has no Kafka event source)",
    )
    parser.add_argument("--rounds", type=int, help="reference and kubelambda alternate (3)")
    parser.add_argument("--messages", type=int, help="the backlog drained per phase (20000)")
    parser.add_argument("--latency-seconds", type=float, help="per latency phase (6)")
    parser.add_argument(
        "--rate", type=float, default=20.0, help="messages/s of the latency phase (20)"
    )
    parser.add_argument("--concurrency", type=int, default=4, help="maximumConcurrency, slots (4)")
    parser.add_argument(
        "--quick", action="store_true", help="1 round, 10000 messages, 4 s of latency"
    )
    args = parser.parse_args()
    quick = {"rounds": 1, "messages": 10000, "latency_seconds": 4.0}
    full = {"rounds": 3, "messages": 20000, "latency_seconds": 6.0}
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.messages = max(BATCH, args.messages // BATCH * BATCH)  # whole batches: no window waits
    args.sources = [s.strip() for s in args.sources.split(",") if s.strip()]
    for name in args.sources:
        if name not in ("jetstream", "kafka"):
            parser.error(f"--sources: {name!r} is not jetstream or kafka")
        if name == "kafka" and not kafka_built():
            raise SystemExit(
                "the Kafka event source is not built yet (no kubelambda.dispatcher.kafka in "
                "this checkout): run with --sources jetstream"
            )
    return args


def not_retried(record: logging.LogRecord) -> bool:
    """False for what aiokafka logs and then tries again by itself (a group's first join while
    the offsets topic is created, a produce before a new topic's leader is known): noise here,
    where a failure stops the run by its deadline anyway."""
    retried = ("GroupCoordinatorNotAvailable", "retrying")
    message = record.getMessage()
    return not record.name.startswith("aiokafka") or not any(r in message for r in retried)


def main() -> None:
    args = options()
    quiet = logging.StreamHandler()
    quiet.addFilter(not_retried)
    logging.basicConfig(handlers=[quiet], format="%(name)s: %(message)s")
    work = Path(tempfile.mkdtemp(prefix="kubelambda-bench-"))
    started, load = time.monotonic(), os.getloadavg()[0]
    try:
        with ExitStack() as stack:
            server = stack.enter_context(
                nats_server(store_dir=work / "jetstream", log_dir=work, name="bench")
            )
            sources: list[Source] = []
            for name in args.sources:
                if name == "jetstream":
                    sources.append(JetStream(server))
                else:
                    broker = kafka_broker(store_dir=work / "kafka", log_dir=work)
                    sources.append(Kafka(stack.enter_context(broker), partitions=args.concurrency))
            results = uvloop.run(run(args, work, sources, server.url))
    except Failed as exc:
        raise SystemExit(
            f"{exc}\nlogs (local mode, nats-server, Kafka) are kept in {work}"
        ) from exc
    except BaseException:
        print(f"logs (local mode, nats-server, Kafka) are kept in {work}")
        raise
    print(
        f"\nmachine: load average {load:.1f} before, {os.getloadavg()[0]:.1f} after, 2 cores; "
        f"run took {time.monotonic() - started:.0f} s"
    )
    report(args, results)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
