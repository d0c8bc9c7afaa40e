"""Scenario: Lambda's event source mappings on the real cluster. A producer writes N messages to
a JetStream stream on the release's own NATS (queue Trigger) and N records to a Kafka topic
(kafka Trigger; the broker runs on the node's address, which pods reach); the dispatchers poll
both and a Function in a pod handles every message, reporting what it saw to a recorder on the
node. Counted: produced, handled, duplicates; lost must be 0. The functions start at zero
replicas: the first batch wakes them.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
from aiokafka import AIOKafkaProducer

from e2e.async_events.disruptions import logs
from e2e.async_events.traffic import Recorder
from e2e.kit import FUNCTIONS_NAMESPACE, Installed, fail_on_crash, nats_url, wait_function_ready
from harness.cluster import Cluster
from harness.kafka import KafkaBroker, kafka_broker
from harness.relay import Relay

MESSAGES = 300
STREAM = "E2E_ORDERS"
TOPIC = "e2e-orders"
HANDLED_TIMEOUT = 240.0
CODE = """
import base64
import json
import os
import urllib.request


def report(ids):
    request = urllib.request.Request(
        os.environ["RECORDER_URL"],
        data=json.dumps({"id": ids}).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        answer.read()


def handler(event, context):
    if event.get("eventSource") == "SelfManagedKafka":
        ids = [
            "kafka:" + json.loads(base64.b64decode(record["value"]))["id"]
            for records in event["records"].values()
            for record in records
        ]
    else:
        ids = ["queue:" + json.loads(record["body"])["id"] for record in event["Records"]]
    report(",".join(ids))
    return {"batchItemFailures": []}
"""


@pytest.fixture
def kafka(e2e_cluster: Cluster, tmp_path: Path) -> Iterator[KafkaBroker]:
    """A Kafka broker listening on the node's address: the test produces to it, pods consume."""
    with kafka_broker(log_dir=tmp_path, host=e2e_cluster.node_ip) as broker:
        asyncio.run(broker.create_topic(TOPIC, partitions=3))
        yield broker


def manifests(recorder_url: str, node_ip: str, bootstrap: str) -> list[dict[str, Any]]:
    def function(name: str) -> dict[str, Any]:
        return {
            "apiVersion": "kubelambda.dev/v1alpha1",
            "kind": "Function",
            "metadata": {"name": name, "namespace": FUNCTIONS_NAMESPACE},
            "spec": {
                "runtime": "python3.12",
                "handler": "app.handler",
                "concurrency": 2,
                "timeoutSeconds": 30,
                "scaling": {"minReplicas": 0, "maxReplicas": 2},
                "env": [{"name": "RECORDER_URL", "value": recorder_url}],
                "network": {"egress": [{"cidr": f"{node_ip}/32"}]},
                "code": {"inline": {"files": {"app.py": CODE}}},
            },
        }

    def trigger(name: str, source: str, spec: dict[str, Any]) -> dict[str, Any]:
        return {
            "apiVersion": "kubelambda.dev/v1alpha1",
            "kind": "Trigger",
            "metadata": {"name": name, "namespace": FUNCTIONS_NAMESPACE},
            "spec": {"function": name, source: spec},
        }

    batching = {
        "batchSize": 50,
        "maximumBatchingWindowSeconds": 1,
        "functionResponseTypes": ["ReportBatchItemFailures"],
    }
    return [
        function("orders-queue"),
        function("orders-kafka"),
        trigger("orders-queue", "queue", {"stream": STREAM, "subject": "e2e.orders.>", **batching}),
        trigger(
            "orders-kafka",
            "kafka",
            {
                "bootstrapServers": [bootstrap],
                "topics": [TOPIC],
                "startingPosition": "TRIM_HORIZON",
                **batching,
            },
        ),
    ]


async def produce_to_nats(url: str, ids: list[str]) -> None:
    client = await nats.connect(url)
    try:
        js = client.jetstream()
        await js.add_stream(name=STREAM, subjects=["e2e.orders.>"])
        for n, id_ in enumerate(ids):
            await js.publish(f"e2e.orders.{n % 4}", json.dumps({"id": id_}).encode())
    finally:
        await client.close()


async def produce_to_kafka(bootstrap: str, ids: list[str]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for id_ in ids:
            await producer.send(TOPIC, json.dumps({"id": id_}).encode(), key=id_.encode())
        await producer.flush()
    finally:
        await producer.stop()


def test_every_message_of_a_stream_and_a_topic_is_handled_by_pods(
    e2e_cluster: Cluster,
    installed: Installed,
    reports: tuple[Recorder, Relay],
    kafka: KafkaBroker,
    capsys: pytest.CaptureFixture[str],
) -> None:
    made, to_recorder = reports
    queue_ids = [f"q{n:04d}" for n in range(MESSAGES)]
    kafka_ids = [f"k{n:04d}" for n in range(MESSAGES)]
    # Produced before the Triggers exist: TRIM_HORIZON (the default for queues) reads them all.
    asyncio.run(produce_to_nats(nats_url(e2e_cluster), queue_ids))
    asyncio.run(produce_to_kafka(kafka.bootstrap, kafka_ids))
    began = time.monotonic()
    e2e_cluster.apply(manifests(to_recorder.url, e2e_cluster.node_ip, kafka.bootstrap))
    for name in ("orders-queue", "orders-kafka"):
        wait_function_ready(e2e_cluster, name)
    expected = {f"queue:{i}" for i in queue_ids} | {f"kafka:{i}" for i in kafka_ids}

    def seen() -> Counter[str]:
        return Counter(i for batch in made.ids() for i in batch.split(",") if i)

    deadline = time.monotonic() + HANDLED_TIMEOUT
    while not expected <= seen().keys() and time.monotonic() < deadline:
        fail_on_crash(e2e_cluster)
        time.sleep(0.5)  # polling the recorder until the deadline
    counts = seen()
    lost = expected - counts.keys()
    duplicates = sum(c - 1 for c in counts.values())
    with capsys.disabled():
        for source in ("queue", "kafka"):
            mine = {i for i in expected if i.startswith(source)}
            print(
                f"\nevent_sources {source}: produced {len(mine)} "
                f"handled {len(mine & counts.keys())} lost {len(mine - counts.keys())} "
                f"duplicates {sum(counts[i] - 1 for i in mine if i in counts)}"
            )
        print(f"  all handled {time.monotonic() - began:.0f} s after the Triggers were applied")
    assert not lost, (
        f"{len(lost)} messages never handled, e.g. {sorted(lost)[:5]}\n"
        f"{logs(e2e_cluster, ('dispatcher',))}"
    )
    assert duplicates == 0 or duplicates < MESSAGES, "at most the batches in flight come again"
