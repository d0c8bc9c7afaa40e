"""`JetStreamStore` against a real nats-server: a job written back to the stream (a retry, or a
delivery stopped by a dispatcher's shutdown) comes back however often it is written back with
the same tries; the stream and the consumers take the settings the flags give them, also when
they exist already; a dispatcher holding jobs stops at once; a dispatcher's pull request waits
at the server while it holds all it may, and a consumer deleted under it is made again; a
client's retry of an event is acknowledged and stored once; a subject no stream takes is an
error the gateway answers 503 to."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator

import anyio
import nats
import pytest

from harness.nats import NatsServer
from kubelambda.api.identity import FunctionKey
from kubelambda.clock import SystemClock
from kubelambda.delivery.broker import BrokerSettings
from kubelambda.delivery.connection import BrokerUnavailable
from kubelambda.delivery.jetstream import Backlog, JetStreamStore
from kubelambda.delivery.jobs import DeliveryJob, DeliveryPolicy

pytestmark = pytest.mark.anyio

FUNCTION = FunctionKey("default", "worker")
DEADLINE = 15.0  # seconds for a job to come back; it is due at once


def settings(url: str, **more: object) -> BrokerSettings:
    """A stream and subjects of this test's own: the session's server is shared."""
    tag = uuid.uuid4().hex[:8]
    return BrokerSettings(
        url=url,
        stream=f"STORE_{tag}",
        subject_prefix=f"store{tag}",
        **more,  # type: ignore[arg-type]
    )


async def opened(broker: BrokerSettings, *, consume: bool) -> JetStreamStore:
    store = JetStreamStore(broker, clock=SystemClock(), consume=consume, fetch_wait=0.5)
    store.start()
    with anyio.fail_after(DEADLINE):
        await store.wait_ready()
    return store


@pytest.fixture
async def pair(nats_server: NatsServer) -> AsyncIterator[tuple[JetStreamStore, JetStreamStore]]:
    """The gateway's store (publishes) and a dispatcher's (consumes), on one stream."""
    broker = settings(nats_server.url)
    gateway = await opened(broker, consume=False)
    dispatcher = await opened(broker, consume=True)
    try:
        yield gateway, dispatcher
    finally:
        await dispatcher.aclose()
        await gateway.aclose()
        client = await nats.connect(nats_server.url)
        try:
            await client.jetstream().delete_stream(broker.stream)
        finally:
            await client.close()


def job() -> DeliveryJob:
    return DeliveryJob(
        id=str(uuid.uuid4()),
        payload=b'{"n": 1}',
        policy=DeliveryPolicy(retries=2, backoff_seconds=1),
        invoked_arn="arn:aws:lambda:us-east-1:000000000000:function:worker",
        enqueued_at=SystemClock().wall(),
        function=FUNCTION,
    )


async def take(store: JetStreamStore) -> DeliveryJob:
    with anyio.fail_after(DEADLINE):
        return await store.take()


async def test_a_job_written_back_twice_with_the_same_tries_comes_back_each_time(
    pair: tuple[JetStreamStore, JetStreamStore],
) -> None:
    gateway, dispatcher = pair
    accepted = job()
    assert await gateway.admit([accepted])
    clock = SystemClock()
    # What a dispatcher's shutdown does with a delivery it stops: written back, due now, with
    # the tries it had. Twice (two restarts within the stream's duplicate window) must not
    # make the second write-back a "duplicate" that is dropped while its original is acked.
    for _ in range(3):
        taken = await take(dispatcher)
        assert (taken.id, taken.attempts, taken.throttles) == (accepted.id, 0, 0)
        await dispatcher.retry(taken, due=clock.monotonic())
    last = await take(dispatcher)
    assert last.id == accepted.id
    await dispatcher.done(last)


async def test_the_stream_takes_the_bounds_it_is_given(nats_server: NatsServer) -> None:
    broker = settings(
        nats_server.url, max_age_seconds=120.0, max_bytes=5 << 20, max_message_bytes=2 << 20
    )
    store = await opened(broker, consume=False)
    client = await nats.connect(nats_server.url)
    try:
        config = (await client.jetstream().stream_info(broker.stream)).config
        assert (config.max_age, config.max_bytes, config.max_msg_size) == (120.0, 5 << 20, 2 << 20)
    finally:
        await store.aclose()
        await client.jetstream().delete_stream(broker.stream)
        await client.close()


async def test_a_dispatcher_stops_within_moments_holding_jobs(
    pair: tuple[JetStreamStore, JetStreamStore],
) -> None:
    gateway, dispatcher = pair
    assert await gateway.admit([job(), job(), job()])
    await dispatcher.done(await take(dispatcher))
    await take(dispatcher)  # being delivered; the third fetched, waiting for a worker
    # A dispatcher gets SIGTERM and 30 s (Kubernetes' grace) before SIGKILL: stopping must
    # not wait on fetched jobs no one will take, which come back after ack_wait anyway.
    with anyio.fail_after(5):
        await dispatcher.aclose()


async def test_a_dispatcher_brings_an_existing_consumer_to_its_settings(
    nats_server: NatsServer,
) -> None:
    before = settings(nats_server.url, ack_wait_seconds=60.0, function_concurrency=16)
    after = dataclasses.replace(before, ack_wait_seconds=30.0, function_concurrency=4)
    gateway = await opened(before, consume=False)
    client = await nats.connect(nats_server.url)
    try:
        for broker in (before, after):  # an upgrade: the same stream, new flags
            dispatcher = await opened(broker, consume=True)
            try:
                assert await gateway.admit([job()])
                await dispatcher.done(await take(dispatcher))
            finally:
                await dispatcher.aclose()
        consumer = f"c_events_{FUNCTION.namespace}_{FUNCTION.name}"
        config = (await client.jetstream().consumer_info(before.stream, consumer)).config
        assert (config.ack_wait, config.max_ack_pending) == (30.0, 4)
    finally:
        await gateway.aclose()
        await client.jetstream().delete_stream(before.stream)
        await client.close()


async def test_the_backlog_counts_each_functions_events_and_dates_the_oldest(
    nats_server: NatsServer,
) -> None:
    broker = settings(nats_server.url)
    gateway = await opened(broker, consume=False)
    other = FunctionKey("team-b", "resize")
    try:
        assert await gateway.waiting() == {}
        jobs = [
            dataclasses.replace(job(), enqueued_at=1000.0 + n, function=key)
            for n, key in [(5, FUNCTION), (3, FUNCTION), (9, FUNCTION), (7, other)]
        ]
        assert await gateway.admit(jobs)
        # The oldest is the first on the subject: the stream keeps a subject's events in order.
        assert await gateway.waiting() == {
            FUNCTION: Backlog(messages=3, oldest_enqueued_at=1005.0),
            other: Backlog(messages=1, oldest_enqueued_at=1007.0),
        }
    finally:
        await gateway.aclose()


CONSUMER = f"c_events_{FUNCTION.namespace}_{FUNCTION.name}"


async def test_a_dispatcher_holding_all_it_may_has_its_next_request_waiting(
    nats_server: NatsServer,
) -> None:
    broker = settings(nats_server.url, function_concurrency=2)
    gateway = await opened(broker, consume=False)
    dispatcher = await opened(broker, consume=True)
    client = await nats.connect(nats_server.url)
    js = client.jetstream()
    try:
        assert await gateway.admit([job() for _ in range(3)])
        held = [await take(dispatcher), await take(dispatcher)]

        async def waiting() -> bool:
            info = await js.consumer_info(broker.stream, CONSUMER)
            return info.num_ack_pending == 2 and info.num_waiting == 1

        # The function's whole concurrency is held; the third job cannot go out before an
        # acknowledgement, but the request for it already waits at the server, so it goes
        # out the moment one comes (not after the dispatcher notices and asks).
        with anyio.fail_after(DEADLINE):
            while True:
                if await waiting():
                    break
                await anyio.sleep(0.05)  # the condition's next look, within the deadline
        await dispatcher.done(held[0])
        third = await take(dispatcher)
        assert third.id not in {h.id for h in held}
        for one in (held[1], third):
            await dispatcher.done(one)
    finally:
        await dispatcher.aclose()
        await gateway.aclose()
        await js.delete_stream(broker.stream)
        await client.close()


async def test_a_consumer_deleted_under_a_dispatcher_is_made_again(
    pair: tuple[JetStreamStore, JetStreamStore], nats_server: NatsServer
) -> None:
    gateway, dispatcher = pair
    assert await gateway.admit([job()])
    await dispatcher.done(await take(dispatcher))
    client = await nats.connect(nats_server.url)
    try:
        await client.jetstream().delete_consumer(dispatcher.settings.stream, CONSUMER)
    finally:
        await client.close()
    again = job()
    assert await gateway.admit([again])
    assert (await take(dispatcher)).id == again.id


async def test_an_event_sent_twice_is_acknowledged_twice_and_kept_once(
    nats_server: NatsServer,
) -> None:
    broker = settings(nats_server.url)
    gateway = await opened(broker, consume=False)
    try:
        accepted = job()
        assert await gateway.admit([accepted])
        assert await gateway.admit([accepted])  # the client's retry: 202 again, not a 2nd event
        assert await gateway.waiting() == {FUNCTION: Backlog(1, accepted.enqueued_at)}
    finally:
        await gateway.aclose()
        client = await nats.connect(nats_server.url)
        try:
            await client.jetstream().delete_stream(broker.stream)
        finally:
            await client.close()


async def test_a_subject_no_stream_takes_is_not_accepted(nats_server: NatsServer) -> None:
    broker = settings(nats_server.url)
    store = await opened(broker, consume=False)
    try:
        with pytest.raises(BrokerUnavailable, match="no stream took the record"):
            await store.publish_record("nostream.records", b"{}", "record-1")
    finally:
        await store.aclose()
        client = await nats.connect(nats_server.url)
        try:
            await client.jetstream().delete_stream(broker.stream)
        finally:
            await client.close()
