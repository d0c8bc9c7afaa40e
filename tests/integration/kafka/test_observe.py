"""The operator's probe (delivery/observe.py) on a real Kafka broker: a consumer group's lag per
partition against the end offsets, counted from the starting position where it committed
nothing; a group that committed nothing yet; a topic that does not exist (and is not made by
looking); SASL/PLAIN credentials taken, refused, or missing; an address nobody listens on; a
broker that stops and comes back."""

from __future__ import annotations

import secrets
import time
from typing import Any

import anyio
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition  # type: ignore[import-untyped]

from harness.kafka import KafkaBroker
from harness.procs import free_port
from kubelambda.api.streams import Position
from kubelambda.delivery.endpoints import KafkaEndpoint, kafka_endpoint
from kubelambda.delivery.observe import (
    AUTHENTICATION_FAILED,
    BROKER_UNREACHABLE,
    TOPIC_NOT_FOUND,
    Consuming,
    KafkaTarget,
    NotConsumed,
    PartitionLag,
    SourceProbe,
    SourceProblem,
)

pytestmark = pytest.mark.anyio


def unique(kind: str) -> str:
    return f"observe-{kind}-{secrets.token_hex(4)}"


async def produce(bootstrap: str, topic: str, per_partition: dict[int, int]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for partition, count in per_partition.items():
            for n in range(count):
                await producer.send_and_wait(topic, f"{n}".encode(), partition=partition)
    finally:
        await producer.stop()


async def commit(bootstrap: str, group: str, offsets: dict[TopicPartition, int]) -> None:
    """Commit `offsets` for `group` as its member would, without reading anything."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        consumer.assign(list(offsets))  # assigned, not subscribed: no rebalance, no reading
        await consumer.commit(offsets)
    finally:
        await consumer.stop()


def target(
    endpoint: KafkaEndpoint, topics: tuple[str, ...], group: str, position: Position = "LATEST"
) -> KafkaTarget:
    return KafkaTarget(endpoint=endpoint, topics=topics, group=group, starting_position=position)


def plain(broker: KafkaBroker) -> KafkaEndpoint:
    return kafka_endpoint((broker.bootstrap,), tls=False, secret=None, data=None)


async def test_the_lag_is_the_end_offsets_minus_the_committed_ones(
    kafka_broker: KafkaBroker,
) -> None:
    topic, other, group = unique("orders"), unique("refunds"), unique("group")
    await kafka_broker.create_topic(topic, partitions=3)
    await kafka_broker.create_topic(other, partitions=1)
    await produce(kafka_broker.bootstrap, topic, {0: 5, 1: 4, 2: 3})
    await produce(kafka_broker.bootstrap, other, {0: 2})
    # The group read partition 0 to 2 and partition 1 to its end; nothing on 2 or on `other`.
    await commit(
        kafka_broker.bootstrap, group, {TopicPartition(topic, 0): 2, TopicPartition(topic, 1): 4}
    )
    probe = SourceProbe(broker=None, timeout_seconds=10)
    try:
        seen = {
            position: await probe.kafka(
                target(plain(kafka_broker), (topic, other), group, position)
            )
            for position in ("TRIM_HORIZON", "LATEST")
        }
        assert probe.open_clients == 1  # one endpoint, one pair of clients, however many looks
    finally:
        await probe.aclose()
    committed = [PartitionLag(topic, 0, 2, 3), PartitionLag(topic, 1, 4, 0)]
    # Where it has no offset, the group starts at the first record (TRIM_HORIZON) ...
    assert seen["TRIM_HORIZON"] == Consuming(
        consumer=group,
        lag=3 + 0 + 3 + 2,
        partitions=(*committed, PartitionLag(topic, 2, None, 3), PartitionLag(other, 0, None, 2)),
    )
    # ... or at the end (LATEST): those records are not its to read.
    assert seen["LATEST"] == Consuming(
        consumer=group,
        lag=3,
        partitions=(*committed, PartitionLag(topic, 2, None, 0), PartitionLag(other, 0, None, 0)),
    )


async def test_a_group_that_committed_nothing_is_not_consuming_yet(
    kafka_broker: KafkaBroker,
) -> None:
    topic, group = unique("orders"), unique("group")
    await kafka_broker.create_topic(topic, partitions=2)
    probe = SourceProbe(broker=None)
    try:
        seen = await probe.kafka(target(plain(kafka_broker), (topic,), group))
    finally:
        await probe.aclose()
    assert seen == NotConsumed(
        f"consumer group {group} has committed no offset on topics {topic} of Kafka at"
        f" {kafka_broker.bootstrap} yet: no dispatcher has consumed them"
    )


async def test_a_missing_topic_is_named_and_not_created(kafka_broker: KafkaBroker) -> None:
    present, missing = unique("present"), unique("missing")
    await kafka_broker.create_topic(present)
    probe = SourceProbe(broker=None)
    try:
        seen = await probe.kafka(target(plain(kafka_broker), (present, missing), unique("g")))
    finally:
        await probe.aclose()
    assert seen == SourceProblem(
        TOPIC_NOT_FOUND,
        f"Kafka topic {missing} does not exist on Kafka at {kafka_broker.bootstrap}",
    )
    async with kafka_broker.admin() as admin:
        assert missing not in await admin.list_topics()


async def test_sasl_credentials_are_taken_refused_or_missed(kafka_broker: KafkaBroker) -> None:
    topic = unique("sasl")
    await kafka_broker.create_topic(topic)
    ((user, password),) = kafka_broker.sasl_users.items()
    servers = (kafka_broker.sasl_bootstrap,)
    cases: list[tuple[dict[str, str] | None, str | None, str]] = [
        ({"username": user, "password": password}, None, ""),
        (
            {"username": user, "password": password + "-wrong", "mechanism": "PLAIN"},
            AUTHENTICATION_FAILED,
            "refused the credentials of Secret kafka-login: [Error 58] SaslAuthenticationFailed:"
            " Authentication failed: Invalid username or password",
        ),
        (None, AUTHENTICATION_FAILED, "the listener may want SASL credentials"),
    ]
    probe = SourceProbe(broker=None, timeout_seconds=5)
    try:
        for data, reason, words in cases:
            endpoint = kafka_endpoint(
                servers, tls=False, secret="kafka-login" if data else None, data=data
            )
            seen = await probe.kafka(target(endpoint, (topic,), unique("g")))
            if reason is None:
                assert isinstance(seen, NotConsumed), seen  # in: the topic is there
                continue
            assert isinstance(seen, SourceProblem), seen
            assert seen.reason == reason
            assert seen.message.startswith(f"Kafka at {servers[0]} ")
            assert words in seen.message
            assert password not in seen.message
    finally:
        await probe.aclose()


async def test_an_address_nobody_listens_on_is_unreachable() -> None:
    server = f"127.0.0.1:{free_port()}"
    probe = SourceProbe(broker=None, timeout_seconds=3)
    began = time.monotonic()
    try:
        seen = await probe.kafka(
            target(kafka_endpoint((server,), tls=False, secret=None, data=None), ("t",), "g")
        )
    finally:
        await probe.aclose()
    assert isinstance(seen, SourceProblem)
    assert seen.reason == BROKER_UNREACHABLE
    assert seen.message.startswith(f"cannot reach Kafka at {server}: ")
    assert "Connect call failed" in seen.message
    assert time.monotonic() - began < 3


async def test_a_broker_that_stops_is_unreachable_until_it_is_back(
    own_kafka_broker: KafkaBroker,
) -> None:
    broker = own_kafka_broker
    topic, group = unique("orders"), unique("group")
    await broker.create_topic(topic, partitions=1)
    await produce(broker.bootstrap, topic, {0: 4})
    await commit(broker.bootstrap, group, {TopicPartition(topic, 0): 1})
    expected = Consuming(consumer=group, lag=3, partitions=(PartitionLag(topic, 0, 1, 3),))
    probe = SourceProbe(broker=None, timeout_seconds=5)
    look: Any = lambda: probe.kafka(target(plain(broker), (topic,), group))  # noqa: E731
    try:
        assert await look() == expected
        await anyio.to_thread.run_sync(broker.stop)
        seen = await look()
        assert isinstance(seen, SourceProblem)
        assert seen.reason == BROKER_UNREACHABLE, seen
        assert broker.bootstrap in seen.message
        await anyio.to_thread.run_sync(broker.start)
        assert await look() == expected  # the group's offsets were kept
    finally:
        await probe.aclose()
