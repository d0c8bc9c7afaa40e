"""The operator's probe (delivery/observe.py) on a real nats-server: a durable consumer's ack
floor and lag; a stream without its consumer yet; a stream that does not exist; a NATS that is
not there, then there again; credentials the server refuses, from a Trigger's Secret; one
connection per server, however many looks."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import anyio
import nats
import pytest
from nats.js.api import AckPolicy, ConsumerConfig

from harness.nats import NatsFactory, NatsServer, nats_binary
from harness.procs import free_port
from kubelambda.api.streams import queue_consumer_name
from kubelambda.delivery.broker import BrokerSettings
from kubelambda.delivery.endpoints import nats_endpoint
from kubelambda.delivery.observe import (
    AUTHENTICATION_FAILED,
    BROKER_UNREACHABLE,
    OBSERVE_FAILED,
    STREAM_NOT_FOUND,
    Consuming,
    NotConsumed,
    QueueTarget,
    SourceProbe,
    SourceProblem,
)

pytestmark = pytest.mark.anyio


def names() -> tuple[str, str, str]:
    """A stream, its subject and a Trigger's consumer, of this test alone."""
    tag = uuid.uuid4().hex[:8]
    return f"OBSERVE_{tag}", f"observe.{tag}", queue_consumer_name("team-a", f"orders-{tag}")


async def stream_with_consumer(
    url: str, *, published: int, fetched: int, acked: int, consumer: bool = True
) -> tuple[str, str]:
    """A stream holding `published` messages; its durable consumer, made as the dispatcher makes
    it, took `fetched` and acknowledged the first `acked` of them."""
    stream, subject, name = names()
    client = await nats.connect(url)
    try:
        js = client.jetstream()
        await js.add_stream(name=stream, subjects=[subject])
        for n in range(published):
            await js.publish(subject, f"message {n}".encode())
        if consumer:
            await js.add_consumer(
                stream, ConsumerConfig(durable_name=name, ack_policy=AckPolicy.EXPLICIT)
            )
            if fetched:
                taken = await js.pull_subscribe_bind(name, stream=stream)
                messages = await taken.fetch(fetched, timeout=5)
                assert len(messages) == fetched
                for message in messages[:acked]:
                    await message.ack_sync()
    finally:
        await client.close()
    return stream, name


async def test_a_consumer_is_seen_at_its_ack_floor_with_what_is_left_as_lag(
    nats_server: NatsServer,
) -> None:
    stream, consumer = await stream_with_consumer(nats_server.url, published=10, fetched=4, acked=3)
    probe = SourceProbe(broker=BrokerSettings(url=nats_server.url), timeout_seconds=5)
    try:
        # The platform's broker (no endpoint of the Trigger's own).
        seen = await probe.queue(QueueTarget(stream=stream, consumer=consumer))
        # Acknowledged up to sequence 3; 6 not delivered plus 1 delivered and not acknowledged.
        assert seen == Consuming(consumer=consumer, lag=7, position=3)

        endpoint = nats_endpoint(nats_server.url, secret=None, data=None)
        again = await probe.queue(QueueTarget(stream=stream, consumer=consumer, endpoint=endpoint))
        assert again == seen
        for _ in range(5):
            await probe.queue(QueueTarget(stream=stream, consumer=consumer))
        # One client per endpoint (the platform's, with its credentials, and the plain URL).
        assert probe.open_clients == 2
    finally:
        await probe.aclose()
    assert probe.open_clients == 0


async def test_a_stream_without_its_consumer_is_not_consumed_yet(nats_server: NatsServer) -> None:
    stream, consumer = await stream_with_consumer(
        nats_server.url, published=2, fetched=0, acked=0, consumer=False
    )
    probe = SourceProbe(broker=BrokerSettings(url=nats_server.url))
    try:
        seen = await probe.queue(QueueTarget(stream=stream, consumer=consumer))
    finally:
        await probe.aclose()
    assert seen == NotConsumed(
        f"JetStream stream {stream} on NATS at {nats_server.url} has no consumer {consumer} yet:"
        " no dispatcher has polled it"
    )


async def test_a_missing_stream_is_named(nats_server: NatsServer) -> None:
    probe = SourceProbe(broker=BrokerSettings(url=nats_server.url))
    try:
        seen = await probe.queue(QueueTarget(stream="NO_SUCH_STREAM", consumer="kubelambda_a_b"))
    finally:
        await probe.aclose()
    assert seen == SourceProblem(
        STREAM_NOT_FOUND,
        f"JetStream stream NO_SUCH_STREAM does not exist on NATS at {nats_server.url}",
    )


async def test_without_a_broker_the_platforms_streams_are_not_observed() -> None:
    probe = SourceProbe(broker=None)
    seen = await probe.queue(QueueTarget(stream="ORDERS", consumer="kubelambda_a_b"))
    assert isinstance(seen, SourceProblem)
    assert seen.reason == OBSERVE_FAILED
    assert "no broker (--nats)" in seen.message


async def test_a_nats_that_is_not_there_is_unreachable_until_it_is_back(
    nats_factory: NatsFactory,
) -> None:
    server = nats_factory()
    stream, consumer = await stream_with_consumer(server.url, published=5, fetched=2, acked=2)
    target = QueueTarget(stream=stream, consumer=consumer)
    probe = SourceProbe(broker=BrokerSettings(url=server.url), timeout_seconds=3)
    try:
        assert await probe.queue(target) == Consuming(consumer=consumer, lag=3, position=2)
        # In a thread, as a server stops on its own: the client sees its connection end.
        await anyio.to_thread.run_sync(server.stop)
        began = time.monotonic()
        seen = await probe.queue(target)
        assert isinstance(seen, SourceProblem)
        assert seen.reason == BROKER_UNREACHABLE
        assert seen.message.startswith(f"cannot reach NATS at {server.url}: ")
        assert "refused" in seen.message.lower()
        assert time.monotonic() - began < 3  # a refused connection is an answer at once
        assert probe.open_clients == 0

        # The same port and store: the consumer and its position are kept.
        await anyio.to_thread.run_sync(server.start)
        assert await probe.queue(target) == Consuming(consumer=consumer, lag=3, position=2)
    finally:
        await probe.aclose()


async def test_an_address_nobody_listens_on_is_unreachable() -> None:
    url = f"nats://127.0.0.1:{free_port()}"
    probe = SourceProbe(broker=None, timeout_seconds=3)
    try:
        seen = await probe.queue(
            QueueTarget(
                stream="ORDERS", consumer="c", endpoint=nats_endpoint(url, secret=None, data=None)
            )
        )
    finally:
        await probe.aclose()
    assert isinstance(seen, SourceProblem)
    assert (seen.reason, seen.message.split(": ")[0]) == (
        BROKER_UNREACHABLE,
        f"cannot reach NATS at {url}",
    )


class GuardedNats(NatsServer):
    """A nats-server that takes only `user` with `password` (the harness's takes anyone)."""

    def __init__(self, tmp_path: Path, *, user: str, password: str) -> None:
        super().__init__(
            binary=nats_binary(),
            port=free_port(),
            store_dir=tmp_path / "guarded-store",
            name="kubelambda-guarded",
            log=tmp_path / "guarded.log",
        )
        self.user, self.password = user, password

    def argv(self) -> list[str]:
        return [*super().argv(), "--user", self.user, "--pass", self.password]


@pytest.fixture
def guarded_nats(tmp_path: Path) -> Iterator[GuardedNats]:
    server = GuardedNats(tmp_path, user="orders", password=uuid.uuid4().hex)
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def test_credentials_from_the_secret_are_taken_or_refused(guarded_nats: GuardedNats) -> None:
    client = await nats.connect(
        guarded_nats.url, user=guarded_nats.user, password=guarded_nats.password
    )
    try:
        await client.jetstream().add_stream(name="GUARDED", subjects=["guarded"])
    finally:
        await client.close()
    url, user = guarded_nats.url, guarded_nats.user
    cases = [
        # (the Secret's data (None: no Secret), what the probe sees, who is refused)
        ({"user": user, "password": guarded_nats.password}, None, None),
        ({"user": user, "password": "not-it"}, AUTHENTICATION_FAILED, "Secret nats-login"),
        (None, AUTHENTICATION_FAILED, "a connection without credentials"),
    ]
    probe = SourceProbe(broker=None, timeout_seconds=3)
    try:
        for data, reason, refused in cases:
            secret = "nats-login" if data is not None else None
            endpoint = nats_endpoint(url, secret=secret, data=data)
            seen = await probe.queue(
                QueueTarget(stream="GUARDED", consumer="kubelambda_a_b", endpoint=endpoint)
            )
            if reason is None:
                assert isinstance(seen, NotConsumed), seen  # in: the stream is there
                continue
            assert isinstance(seen, SourceProblem), seen
            assert seen.reason == reason
            assert seen.message.startswith(f"NATS at {url} refused ")
            assert str(refused) in seen.message
            assert "Authorization Violation" in seen.message
            assert guarded_nats.password not in seen.message
    finally:
        await probe.aclose()
