"""Queue Triggers on a real API server, with the operator looking at a real NATS JetStream: what
`kubectl get` and `kubectl describe` show. A stream without its consumer is Pending; once the
dispatcher's durable consumer has acknowledged some messages, Ready is True (Consuming) and
status.consumer holds its position and lag (the Lag column of `kubectl get trig -o wide`); a
stream that does not exist is Ready False, StreamNotFound, with a Warning event. (The consumer
here is made by the test as the dispatcher makes it; no dispatcher runs.)"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.js.api import AckPolicy, ConsumerConfig

from harness.apiserver import ApiServer
from harness.nats import NatsServer
from integration.controller.operating import OperatorProcess, condition, get, wait_condition
from kubelambda.api.streams import queue_consumer_name
from support.manifests import inline_function
from support.waiting import wait_for

pytestmark = pytest.mark.own_operator


@pytest.fixture
def observing(
    kube_api: ApiServer, crds: None, namespace: str, nats_server: NatsServer, tmp_path: Path
) -> Iterator[OperatorProcess]:
    """An operator of this namespace alone that looks at sources every half second."""
    running = OperatorProcess(
        kube_api,
        tmp_path,
        f"--nats={nats_server.url}",
        "--observe-seconds=0.5",
        f"--namespace={namespace}",
    )
    running.start()
    try:
        yield running
    finally:
        running.stop()


def queue_trigger(name: str, namespace: str, stream: str) -> dict[str, Any]:
    return {
        "apiVersion": "kubelambda.dev/v1alpha1",
        "kind": "Trigger",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"function": "fn", "queue": {"stream": stream}},
    }


async def make_stream(url: str, stream: str, subject: str, count: int) -> None:
    client = await nats.connect(url)
    try:
        js = client.jetstream()
        await js.add_stream(name=stream, subjects=[subject])
        for n in range(count):
            await js.publish(subject, f"{n}".encode())
    finally:
        await client.close()


async def consume(url: str, stream: str, consumer: str, *, take: int) -> None:
    """What the dispatcher's poller does first: make its durable consumer, take and ack."""
    client = await nats.connect(url)
    try:
        js = client.jetstream()
        await js.add_consumer(
            stream, ConsumerConfig(durable_name=consumer, ack_policy=AckPolicy.EXPLICIT)
        )
        pulled = await js.pull_subscribe_bind(consumer, stream=stream)
        for message in await pulled.fetch(take, timeout=5):
            await message.ack_sync()
    finally:
        await client.close()


def test_kubectl_shows_a_queue_triggers_consumer_and_what_is_wrong(
    kube_api: ApiServer, namespace: str, nats_server: NatsServer, observing: OperatorProcess
) -> None:
    tag = uuid.uuid4().hex[:8]
    stream, subject = f"ORDERS_{tag}", f"orders.{tag}"
    asyncio.run(make_stream(nats_server.url, stream, subject, 5))
    documents = [
        inline_function("fn", "def handler(e, c):\n    return 1\n"),
        queue_trigger("orders", namespace, stream),
        queue_trigger("typo", namespace, f"NO_SUCH_{tag}"),
    ]
    for document in documents:
        document["metadata"]["namespace"] = namespace
    kube_api.kubectl("apply", "-f", "-", input="\n---\n".join(json.dumps(d) for d in documents))

    consumer = queue_consumer_name(namespace, "orders")

    def looked_at() -> dict[str, Any] | None:
        # Pending at first (not observed yet), then Pending as the look found it.
        found = condition(get(kube_api, "trigger", "orders", namespace))
        return found if found and f"no consumer {consumer} yet" in found["message"] else None

    pending = wait_for(looked_at, timeout=60, what="Trigger orders observed without a consumer")
    assert (pending["status"], pending["reason"]) == ("Unknown", "Pending")
    missing = wait_condition(
        kube_api, "trigger", "typo", namespace, reason="StreamNotFound", status="False"
    )
    assert condition(missing)["message"] == (  # type: ignore[index]
        f"JetStream stream NO_SUCH_{tag} does not exist on NATS at {nats_server.url}"
    )

    asyncio.run(consume(nats_server.url, stream, consumer, take=2))
    expected = {"name": consumer, "position": 2, "lag": 3}

    def consuming() -> dict[str, Any] | None:
        # A look between the consumer's making and its acks sees it at 0: wait for the acks.
        body = get(kube_api, "trigger", "orders", namespace) or {}
        seen = dict((body.get("status") or {}).get("consumer") or {})
        return body if {k: seen.get(k) for k in expected} == expected else None

    body = wait_for(consuming, timeout=60, what=f"status.consumer {expected}")
    assert body["status"]["consumer"]["observedAt"].endswith("Z")
    ready = condition(body)
    assert ready is not None
    assert (ready["status"], ready["reason"], ready["message"]) == (
        "True",
        "Consuming",
        f"consumer {consumer} reads JetStream stream {stream} for Function fn",
    )

    def lag_column() -> str | None:
        """The LAG column of `kubectl get -o wide`, read at the header's offset (empty columns
        before it, NEXT and URL, leave no word to split on)."""
        wide = kube_api.kubectl("get", "trigger", "orders", "-n", namespace, "-o", "wide").stdout
        header, row = wide.splitlines()
        assert header.split()[-1] == "LAG", wide
        shown = row[header.index("LAG") :].strip()
        return shown if shown == "3" else None

    wait_for(lag_column, timeout=30, what="kubectl get -o wide showing LAG 3")
    described = kube_api.kubectl("describe", "trigger", "typo", "-n", namespace).stdout
    assert "StreamNotFound" in described and f"NO_SUCH_{tag} does not exist" in described

    def warned() -> bool:
        events = kube_api.kubectl(
            "get",
            "events",
            "-n",
            namespace,
            "--field-selector",
            "involvedObject.name=typo",
            "-o",
            "json",
        ).stdout
        return any(
            e["type"] == "Warning" and e["reason"] == "StreamNotFound"
            for e in json.loads(events)["items"]
        )

    wait_for(warned, timeout=30, what="a Warning event StreamNotFound on Trigger typo")
