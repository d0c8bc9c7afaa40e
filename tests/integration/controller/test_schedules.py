"""Schedule Triggers on a real API server, with the operator firing their ticks into a real
NATS JetStream: the Trigger shows its next tick, each tick is one message with EventBridge's
Scheduled Event, and two operators at once, or one restarted between ticks, fire no tick twice.
(The clock runs 60 times as fast: rate(1 minute) ticks every second; the same code as in
production.)"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import nats.js.errors
import pytest

from harness.apiserver import ApiServer
from harness.nats import NatsServer, nats_server
from integration.controller.operating import OperatorProcess, condition, get, wait_condition
from kubelambda.delivery.codec import decode_job
from support.manifests import inline_function
from support.waiting import wait_for

pytestmark = pytest.mark.own_operator

STREAM = "KUBELAMBDA_EVENTS"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[NatsServer]:
    with nats_server(store_dir=tmp_path / "jetstream", log_dir=tmp_path) as server:
        yield server


def scheduled_events(url: str, subject: str) -> list[dict[str, Any]]:
    """The events of every message the stream holds on `subject` (nothing consumes them)."""

    async def read() -> list[dict[str, Any]]:
        client = await nats.connect(url)
        try:
            js = client.jetstream()
            info = await js.stream_info(STREAM)
            found = []
            for sequence in range(info.state.first_seq, info.state.last_seq + 1):
                try:
                    message = await js.get_msg(STREAM, sequence)
                except nats.js.errors.NotFoundError:
                    continue
                if message.subject == subject and message.data is not None:
                    job, _ = decode_job(message.data)
                    found.append(json.loads(job.payload))
            return found
        finally:
            await client.close()

    return asyncio.run(read())


def test_ticks_fire_once_each_across_two_operators_and_a_restart(
    kube_api: ApiServer, crds: None, namespace: str, broker: NatsServer, tmp_path: Path
) -> None:
    args = ("--nats", broker.url, "--schedule-speed", "60", f"--namespace={namespace}")
    first = OperatorProcess(kube_api, tmp_path / "first", *args)
    second = OperatorProcess(kube_api, tmp_path / "second", *args)
    for running in (first, second):
        running.log.parent.mkdir()
        running.start()
    try:
        trigger = {
            "apiVersion": "kubelambda.dev/v1alpha1",
            "kind": "Trigger",
            "metadata": {"name": "every-minute", "namespace": namespace},
            "spec": {"function": "fn", "schedule": {"expression": "rate(1 minute)"}},
        }
        documents = [inline_function("fn", "def handler(e, c):\n    return 1\n"), trigger]
        for document in documents:
            document["metadata"]["namespace"] = namespace
        kube_api.kubectl("apply", "-f", "-", input="\n---\n".join(json.dumps(d) for d in documents))
        body = wait_condition(kube_api, "trigger", "every-minute", namespace, reason="Scheduled")
        assert "next at" in condition(body)["message"]  # type: ignore[index]
        assert body["status"]["source"] == "schedule rate(1 minute)"
        subject = f"kubelambda.events.{namespace}.fn"
        wait_for(
            lambda: len(scheduled_events(broker.url, subject)) >= 3,
            timeout=60,
            what="three ticks in the stream",
        )
        first.restart()  # between ticks: the Lease and the recorded last tick carry over
        second.restart()
        seen = wait_for(
            lambda: (found := scheduled_events(broker.url, subject)) and len(found) >= 8 and found,
            timeout=90,
            what="ticks after the restarts",
        )
        times = [event["time"] for event in seen]
        assert len(times) == len(set(times)), f"a tick fired twice: {sorted(times)}"
        assert {event["detail-type"] for event in seen} == {"Scheduled Event"}
        assert seen[0]["resources"] == [
            f"arn:aws:events:us-east-1:000000000000:rule/{namespace}.every-minute"
        ]
        # Ticks go on a second apart: the status is read first, then the stream again, since a
        # tick is published before it is recorded.
        status = get(kube_api, "trigger", "every-minute", namespace)["status"]
        assert status["lastTick"] in [e["time"] for e in scheduled_events(broker.url, subject)]
        # (The controller reads the real clock for nextTick; only the scheduler's runs fast.)
        assert status["nextTick"].endswith("Z")
    finally:
        first.stop()
        second.stop()
