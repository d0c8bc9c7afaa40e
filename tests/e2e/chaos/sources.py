"""The chaos load's pull sources: a `Producer` publishing a steady rate of messages, each
{"id": "<source>:<n>"}, to a JetStream stream on the release's own NATS (the queue Trigger's)
or to a Kafka topic (the kafka Trigger's), retrying each until it is stored, as a producer
does. load.py runs one per source; scenario.py connects them; window.py counts each message
by the window in which it was stored (acknowledged).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from dataclasses import dataclass, field

import nats
from aiokafka import AIOKafkaProducer
from nats.js.errors import NotFoundError

STREAM = "CHAOS"
SUBJECT = "chaos.orders"
TOPIC = "chaos-orders"
ATTEMPT_TIMEOUT = 5.0  # one publish's wait for the broker's acknowledgement
PATIENCE = 180.0  # a message not stored within this is given up (as Sender gives up events)
STOP_TIMEOUT = PATIENCE + 10.0


# Stores one message (id, body): returns once the broker acknowledged it, raises otherwise.
Publish = Callable[[str, bytes], Awaitable[None]]
Connect = Callable[[], AbstractAsyncContextManager[Publish]]


def body(ident: str) -> bytes:
    return json.dumps({"id": ident}).encode()


@asynccontextmanager
async def jetstream(url: str) -> AsyncIterator[Publish]:
    """A client of the release's NATS that reconnects for ever (the broker is one of the
    disruptions); a publish is sent again with the same Nats-Msg-Id, so the stream keeps one
    copy of a message whose acknowledgement was lost."""

    async def expected(error: Exception) -> None:
        """The broker's restart breaks the connection (logged by nats-py by default)."""

    client = await nats.connect(
        url,
        max_reconnect_attempts=-1,
        reconnect_time_wait=1,
        connect_timeout=3,
        error_cb=expected,
    )
    js = client.jetstream()

    async def publish(ident: str, data: bytes) -> None:
        await js.publish(SUBJECT, data, timeout=ATTEMPT_TIMEOUT, headers={"Nats-Msg-Id": ident})

    try:
        yield publish
    finally:
        await client.close()


async def make_stream(url: str) -> None:
    """The stream the queue Trigger reads, new and empty (a previous run's is removed)."""
    client = await nats.connect(url, connect_timeout=3)
    try:
        js = client.jetstream()
        with suppress(NotFoundError):
            await js.delete_stream(STREAM)
        await js.add_stream(name=STREAM, subjects=[SUBJECT])
    finally:
        await client.close()


@asynccontextmanager
async def kafka(bootstrap: str) -> AsyncIterator[Publish]:
    """An idempotent producer waiting for every in-sync replica (acks=all)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()

    async def publish(ident: str, data: bytes) -> None:
        await asyncio.wait_for(
            producer.send_and_wait(TOPIC, data, key=ident.encode()), timeout=30.0
        )

    try:
        yield publish
    finally:
        await producer.stop()


async def publish_once(connect: Connect, ident: str) -> None:
    """One message on a connection of its own (the scenario's warm-up)."""
    async with connect() as publish:
        await publish(ident, body(ident))


@dataclass
class Producer:
    """Publishes `rate` messages a second in a thread of its own (an asyncio loop) until
    `stop()`: message n is "<source>:<n>", sent again until stored or `patience` runs out.
    Messages in flight are at most rate x patience (each ends within its patience)."""

    source: str  # "queue" or "kafka", the prefix of its ids
    connect: Connect
    rate: float
    patience: float = PATIENCE
    failed_attempts: Counter[str] = field(default_factory=Counter)  # by exception type
    not_published: list[str] = field(default_factory=list)  # ids given up on
    error: BaseException | None = None
    _stored: dict[str, float] = field(default_factory=dict)  # id -> when acknowledged
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(
            target=asyncio.run, args=(self._run(),), name=f"produce-{self.source}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """No new messages; those in flight are stored or given up within their patience."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=STOP_TIMEOUT)

    def stored(self) -> dict[str, float]:
        """Message id -> time.monotonic() of the broker's acknowledgement."""
        with self._lock:
            return dict(self._stored)

    def refused(self) -> int:
        with self._lock:
            return len(self.not_published)

    async def _run(self) -> None:
        try:
            async with self.connect() as publish:
                tasks: set[asyncio.Task[None]] = set()
                interval, due, n = 1.0 / self.rate, time.monotonic(), 0
                while not self._stop.is_set():
                    task = asyncio.create_task(self._send(publish, f"{self.source}:{n:06d}"))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                    n += 1
                    due += interval
                    # The pace of the load, not a wait for a state; a late tick is not made up.
                    await asyncio.sleep(max(0.0, due - time.monotonic()))
                    due = max(due, time.monotonic() - interval)
                if tasks:
                    await asyncio.wait(tasks, timeout=self.patience + ATTEMPT_TIMEOUT)
        except BaseException as exc:  # reported by the window, not lost in a thread
            self.error = exc

    async def _send(self, publish: Publish, ident: str) -> None:
        deadline = time.monotonic() + self.patience
        while time.monotonic() < deadline:
            try:
                await publish(ident, body(ident))
            except Exception as exc:  # the broker away or slow: again, as a producer does
                with self._lock:
                    self.failed_attempts[type(exc).__name__] += 1
                await asyncio.sleep(0.5)
                continue
            with self._lock:
                self._stored[ident] = time.monotonic()
            return
        with self._lock:
            self.not_published.append(ident)
