"""The harness's Kafka broker with the real client (aiokafka): keyed records produced to a
3-partition topic come back to a consumer group with their keys, partitions and offsets; records
and a group's committed offsets survive a graceful restart and a kill -9; a missing topic is an
error; SASL/PLAIN refuses a wrong password; a broker or a part that is missing says why."""

from __future__ import annotations

import secrets
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition  # type: ignore[import-untyped]
from aiokafka.errors import (  # type: ignore[import-untyped]
    KafkaConnectionError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
)

from harness.builds import PartUnavailable
from harness.kafka import KAFKA_VERSION, KafkaBroker, ensure_kafka
from harness.procs import ServerFailed, free_port
from support.waiting import wait_for

pytestmark = pytest.mark.anyio

COUNT = 30
Record = tuple[bytes, bytes, int, int]  # key, value, partition, offset


def unique(kind: str) -> str:
    return f"harness-{kind}-{secrets.token_hex(4)}"


async def produce(
    bootstrap: str, topic: str, count: int, *, first: int = 0, **client: Any
) -> list[Record]:
    """Send `count` keyed records and return them as the broker acknowledged them (acks=all)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", **client)
    await producer.start()
    try:
        sent = []
        for n in range(first, first + count):
            key, value = f"key-{n}".encode(), f"value-{n}".encode()
            acked = await producer.send_and_wait(topic, value, key=key)
            sent.append((key, value, acked.partition, acked.offset))
        return sent
    finally:
        await producer.stop()


async def consume(bootstrap: str, topic: str, group: str, count: int) -> list[Record]:
    """Read as a member of `group` until `count` records came, commit, and leave the group."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        received: list[Record] = []
        with anyio.fail_after(30):
            while len(received) < count:
                for batch in (await consumer.getmany(timeout_ms=500)).values():
                    received += [(r.key, r.value, r.partition, r.offset) for r in batch]
        await consumer.commit()
        return received
    finally:
        await consumer.stop()


async def committed(broker: KafkaBroker, group: str) -> dict[TopicPartition, int]:
    """The group's committed offsets (it committed some). Right after a restart the group
    coordinator may still be loading its offsets, and aiokafka's OffsetFetch then answers an
    empty map (it drops the top-level error code): asked again until the deadline."""
    with anyio.fail_after(30):
        while True:
            async with broker.admin() as admin:
                offsets = await admin.list_consumer_group_offsets(group)
            if offsets:
                return {partition: meta.offset for partition, meta in offsets.items()}
            await anyio.sleep(0.2)  # the coordinator's loading, polled until the deadline


def next_offsets(topic: str, records: list[Record]) -> dict[TopicPartition, int]:
    """Where a group that read `records` resumes: one past the last offset of each partition."""
    return {TopicPartition(topic, p): n for p, n in Counter(r[2] for r in records).items()}


async def test_a_group_reads_every_record_back_with_its_key_partition_and_offset(
    kafka_broker: KafkaBroker,
) -> None:
    topic, group = unique("topic"), unique("group")
    await kafka_broker.create_topic(topic, partitions=3)

    sent = await produce(kafka_broker.bootstrap, topic, COUNT)
    assert {partition for _, _, partition, _ in sent} == {0, 1, 2}
    for partition in range(3):  # each partition's offsets run from 0 without a gap
        offsets = [offset for _, _, p, offset in sent if p == partition]
        assert offsets == list(range(len(offsets)))

    received = await consume(kafka_broker.bootstrap, topic, group, COUNT)
    assert sorted(received) == sorted(sent)
    assert await committed(kafka_broker, group) == next_offsets(topic, sent)

    with pytest.raises(TopicAlreadyExistsError):
        await kafka_broker.create_topic(topic, partitions=3)


async def test_records_and_committed_offsets_survive_a_restart_and_a_kill(
    own_kafka_broker: KafkaBroker,
) -> None:
    broker = own_kafka_broker
    bootstrap, cluster_id, topic = broker.bootstrap, broker.cluster_id, unique("topic")
    await broker.create_topic(topic, partitions=3)
    first = await produce(bootstrap, topic, COUNT)
    assert sorted(await consume(bootstrap, topic, "worker", COUNT)) == sorted(first)

    await anyio.to_thread.run_sync(broker.restart)  # SIGTERM, then the same ports and store
    assert (broker.bootstrap, broker.cluster_id) == (bootstrap, cluster_id)
    assert await committed(broker, "worker") == next_offsets(topic, first)
    assert sorted(await consume(bootstrap, topic, "auditor", COUNT)) == sorted(first)

    second = await produce(bootstrap, topic, COUNT, first=COUNT)
    await anyio.to_thread.run_sync(broker.kill)
    assert broker.process is not None
    assert broker.process.popen.returncode == -signal.SIGKILL
    await anyio.to_thread.run_sync(broker.start)
    # Acknowledged records were in the page cache, which a crash of the process keeps; the
    # group resumes at the offsets it committed before both restarts.
    assert sorted(await consume(bootstrap, topic, "worker", COUNT)) == sorted(second)
    assert await committed(broker, "worker") == next_offsets(topic, first + second)


async def test_a_missing_topic_is_an_error_and_is_not_created(kafka_broker: KafkaBroker) -> None:
    topic = unique("missing")
    with pytest.raises(UnknownTopicOrPartitionError):
        await produce(kafka_broker.bootstrap, topic, 1, request_timeout_ms=1000)
    async with kafka_broker.admin() as admin:
        assert topic not in await admin.list_topics()


async def test_sasl_plain_takes_the_password_and_refuses_a_wrong_one(
    kafka_broker: KafkaBroker,
) -> None:
    topic = unique("sasl")
    await kafka_broker.create_topic(topic)
    ((user, password),) = kafka_broker.sasl_users.items()
    sasl: dict[str, Any] = {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN"}

    sent = await produce(
        kafka_broker.sasl_bootstrap,
        topic,
        1,
        sasl_plain_username=user,
        sasl_plain_password=password,
        **sasl,
    )
    assert [(key, partition, offset) for key, _, partition, offset in sent] == [(b"key-0", 0, 0)]

    with pytest.raises(KafkaConnectionError):
        await produce(
            kafka_broker.sasl_bootstrap,
            topic,
            1,
            sasl_plain_username=user,
            sasl_plain_password=password + "-wrong",
            **sasl,
        )
    # The client only sees its connection end; the broker's log says why.
    wait_for(
        lambda: "Invalid username or password" in kafka_broker.log.read_text(),
        timeout=10,
        what="the broker to log the failed authentication",
    )


def test_a_broker_that_cannot_start_fails_naming_its_log(
    kafka_broker: KafkaBroker, tmp_path: Path
) -> None:
    intruder = KafkaBroker(
        kafka_home=ensure_kafka().parent,
        store_dir=tmp_path / "intruder-store",
        port=kafka_broker.port,  # taken: the intruder cannot listen and exits
        controller_port=free_port(),
        log=tmp_path / "intruder.log",
    )
    try:
        with pytest.raises(ServerFailed) as failed:
            intruder.start()
    finally:
        intruder.stop()
    assert "Address already in use" in str(failed.value)
    assert str(tmp_path / "intruder.log") in str(failed.value)
    assert kafka_broker.alive()


def test_a_missing_part_says_how_to_get_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "empty-cache"
    monkeypatch.setenv("KUBELAMBDA_CACHE", str(cache))
    monkeypatch.setenv("KUBELAMBDA_NO_BUILD", "1")
    with pytest.raises(PartUnavailable, match=r"`scripts/build-parts kafka`"):
        ensure_kafka()

    monkeypatch.delenv("KUBELAMBDA_NO_BUILD")
    monkeypatch.setenv("PATH", str(tmp_path / "no-tools"))
    with pytest.raises(PartUnavailable, match=r"`mvn` is not on PATH.*apt-get install .*maven"):
        ensure_kafka()

    # Maven Central refusing: this mvn fails as Maven does when it cannot resolve an artifact
    # (the java beside it is found, never run).
    tools = tmp_path / "tools"
    tools.mkdir()
    for tool, script in (
        ("mvn", "echo '[ERROR] Could not resolve dependencies'; exit 1"),
        ("java", "exit 1"),
    ):
        (tools / tool).write_text(f"#!/bin/sh\n{script}\n")
        (tools / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{tools}:/usr/bin:/bin")
    with pytest.raises(
        PartUnavailable, match=r"(?s)exited 1.*Could not resolve.*build-parts kafka"
    ):
        ensure_kafka()
    assert not (cache / "bin" / f"kafka-{KAFKA_VERSION}").exists()  # no half-made part
    assert list((cache / "build").iterdir()) == []
