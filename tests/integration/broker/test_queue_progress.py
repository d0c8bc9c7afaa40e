"""dispatcher/queue.py on a real nats-server: a poller reports its fetched messages in progress,
so a batch that runs past the ack wait is not handed out again, and the messages of a poller
that died come back to another one after the (short) ack wait, not after the Function's
timeout plus the gateway's hold."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, cast

import nats
import nats.js.errors
from nats.js import JetStreamContext

from harness.nats import NatsServer
from kubelambda.api import parse_trigger
from kubelambda.api.streams import QueueSource
from kubelambda.clock import SystemClock
from kubelambda.dispatcher.batches import BatchInvoker, BatchOutcome, FailedRecords
from kubelambda.dispatcher.queue import QueuePoller

ACK_WAIT = 1.0  # seconds: the pollers here report progress every third of it

Invoke = Callable[..., Awaitable[BatchOutcome]]


def poller(js: JetStreamContext, stream: str, invoke: Invoke) -> QueuePoller:
    trigger = parse_trigger(
        {
            "apiVersion": "kubelambda.dev/v1alpha1",
            "kind": "Trigger",
            "metadata": {"name": "orders-queue", "namespace": "default"},
            "spec": {"function": "orders", "queue": {"stream": stream, "batchSize": 5}},
        }
    )
    assert isinstance(trigger.source, QueueSource)

    async def admit(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("nothing goes to a failure destination here")

    return QueuePoller(
        trigger=trigger,
        source=trigger.source,
        js=js,
        invoke=cast(BatchInvoker, invoke),
        failures=FailedRecords(admit=admit, clock=SystemClock()),  # type: ignore[arg-type]
        invoked_arn="arn:aws:lambda:us-east-1:000000000000:function:orders",
        concurrency=1,
        ack_wait_seconds=ACK_WAIT,
        clock=SystemClock(),
        region="us-east-1",
        account_id="000000000000",
    )


@asynccontextmanager
async def stream_of(broker: NatsServer, count: int) -> AsyncIterator[tuple[JetStreamContext, str]]:
    """A stream of ``count`` messages of its own on the session's server."""
    client = await nats.connect(broker.url)
    js = client.jetstream()
    stream = f"progress{uuid.uuid4().hex[:8]}"
    await js.add_stream(name=stream, subjects=[f"{stream}.>"])
    for n in range(count):
        await js.publish(f"{stream}.created", str(n).encode())
    try:
        yield js, stream
    finally:
        await js.delete_stream(stream)
        await client.close()


def bodies(event: dict[str, Any]) -> list[str]:
    return [record["body"] for record in event["Records"]]


def test_a_batch_running_past_the_ack_wait_is_not_handed_out_again(
    nats_server: NatsServer,
) -> None:
    seen: list[str] = []

    async def slow(**call: Any) -> BatchOutcome:
        seen.extend(bodies(call["event"]))
        await asyncio.sleep(3 * ACK_WAIT)
        return BatchOutcome(failed=frozenset())

    async def body() -> None:
        async with stream_of(nats_server, 5) as (js, stream):
            polling = poller(js, stream, slow)
            running = asyncio.create_task(polling.run())
            try:
                async with asyncio.timeout(30):
                    while True:  # the broker tells no one when a consumer's state changes
                        await asyncio.sleep(0.1)
                        with contextlib.suppress(nats.js.errors.NotFoundError):  # not made yet
                            info = await js.consumer_info(stream, polling.consumer)
                            if info.ack_floor.stream_seq == 5:
                                break
            finally:
                running.cancel()
            assert sorted(seen) == ["0", "1", "2", "3", "4"], "each message handed out once"
            assert info.num_redelivered == 0

    asyncio.run(body())


def test_a_dead_pollers_messages_come_back_after_the_ack_wait(nats_server: NatsServer) -> None:
    handled: list[str] = []
    taken = asyncio.Event()

    async def never(**call: Any) -> BatchOutcome:
        taken.set()
        await asyncio.Event().wait()  # the poller dies with this batch in hand
        raise AssertionError("unreachable")

    all_handled = asyncio.Event()

    async def quick(**call: Any) -> BatchOutcome:
        handled.extend(bodies(call["event"]))
        if sorted(handled) == ["0", "1", "2", "3", "4"]:
            all_handled.set()
        return BatchOutcome(failed=frozenset())

    async def body() -> None:
        async with stream_of(nats_server, 5) as (js, stream):
            first = asyncio.create_task(poller(js, stream, never).run())
            async with asyncio.timeout(20):
                await taken.wait()
            first.cancel()  # no ack, no nak, no more progress reports: as a killed process
            second = asyncio.create_task(poller(js, stream, quick).run())
            try:
                async with asyncio.timeout(30):
                    await all_handled.wait()
            finally:
                second.cancel()

    # Reported in progress after its poller died, they would never come back.
    asyncio.run(body())
