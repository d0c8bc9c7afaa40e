"""Queue Triggers on a real NATS JetStream stream, through `kubelambda local --nats` (the same
pollers as a cluster's dispatcher): messages reach the function in SQS batches; with
ReportBatchItemFailures only the failed items come again; a message received maxReceiveCount
times goes to the failure destination and the rest flow; filters drop what they do not match;
a poller killed mid-batch loses nothing; a stream that does not exist yet is waited for."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
from aws_lambda_powertools.utilities.data_classes import SQSEvent

from harness.nats import NatsServer
from support.local import LocalMode, start_local
from support.manifests import FAILURE_DESTINATION
from support.processes import kill_tree
from support.waiting import wait_for

FUNCTIONS = (
    """
apiVersion: kubelambda.dev/v1alpha1
kind: Function
metadata: {{name: orders}}
spec:
  runtime: python3.12
  handler: app.handler
  concurrency: 2
  timeoutSeconds: {timeout}
  env: [{{name: SEEN, value: "{seen}"}}]
  code:
    inline:
      files:
        app.py: |
          import json, os, time, uuid
          from aws_lambda_powertools.utilities.batch import (
              BatchProcessor, EventType, process_partial_response)

          processor = BatchProcessor(event_type=EventType.SQS)

          def record_handler(record):
              body = record.json_body
              time.sleep(body.get("sleep", 0))
              receives = int(record.attributes.approximate_receive_count)
              fails = body.get("fail", 0)  # -1: always
              if fails == -1 or receives <= fails:
                  raise RuntimeError(f"{{body['n']}} failed on receive {{receives}}")
              path = os.path.join(os.environ["SEEN"], uuid.uuid4().hex)
              with open(path + ".tmp", "w") as out:
                  json.dump({{"n": body["n"], "receives": receives,
                             "source": record.event_source, "id": record.message_id}}, out)
              os.replace(path + ".tmp", path)

          def handler(event, context):
              return process_partial_response(
                  event=event, record_handler=record_handler, processor=processor,
                  context=context)
"""
    + FAILURE_DESTINATION
    + """---
apiVersion: kubelambda.dev/v1alpha1
kind: Trigger
metadata: {{name: orders-queue}}
spec:
  function: orders
  queue:
    stream: {stream}
    subject: {subjects}.>
    batchSize: 10
    maximumBatchingWindowSeconds: 1
    maxReceiveCount: 2
    functionResponseTypes: [ReportBatchItemFailures]
    filterCriteria:
      filters:
        - pattern: '{{"body": {{"kind": ["order"]}}}}'
  delivery: {{onFailure: {{function: failures}}}}
"""
)


class Setup:
    def __init__(self, tmp_path: Path, broker: NatsServer, *, timeout: int = 10) -> None:
        self.broker = broker
        tag = uuid.uuid4().hex[:6]
        # The session's server is shared: a stream and subjects of this test's own.
        self.stream, self.subjects = f"ORDERS_{tag}", f"orders{tag}"
        self.seen = tmp_path / "seen"
        self.letters = tmp_path / "letters"
        self.seen.mkdir()
        self.letters.mkdir()
        self.manifest = tmp_path / "functions.yaml"
        self.manifest.write_text(
            FUNCTIONS.format(
                seen=self.seen,
                letters=self.letters,
                stream=self.stream,
                subjects=self.subjects,
                timeout=timeout,
            )
        )
        self.started: list[LocalMode] = []

    def local(self) -> LocalMode:
        # A short hold: a message of a killed poller comes back after the function's timeout
        # plus the hold plus a margin.
        local = start_local(self.manifest, "--nats", self.broker.url, "--hold-timeout", "5")
        self.started.append(local)
        return local

    def create_stream(self) -> None:
        async def create() -> None:
            client = await nats.connect(self.broker.url)
            try:
                await client.jetstream().add_stream(
                    name=self.stream, subjects=[f"{self.subjects}.>"]
                )
            finally:
                await client.close()

        asyncio.run(create())

    def publish(self, bodies: list[dict[str, Any]]) -> None:
        async def send() -> None:
            client = await nats.connect(self.broker.url)
            try:
                js = client.jetstream()
                for body in bodies:
                    await js.publish(
                        f"{self.subjects}.created",
                        json.dumps(body).encode(),
                        headers={"Shop": "north"},
                    )
            finally:
                await client.close()

        asyncio.run(send())

    def handled(self) -> list[dict[str, Any]]:
        return [
            json.loads(path.read_text())
            for path in self.seen.iterdir()
            if not path.name.endswith(".tmp")
        ]

    def letters_received(self) -> list[dict[str, Any]]:
        return [
            json.loads(path.read_text())
            for path in self.letters.iterdir()
            if not path.name.endswith(".tmp")
        ]

    def pending(self, consumer: str = "kubelambda_default_orders-queue") -> tuple[int, int]:
        """The consumer's messages not yet delivered, and delivered but not acknowledged."""

        async def ask() -> tuple[int, int]:
            client = await nats.connect(self.broker.url)
            try:
                info = await client.jetstream().consumer_info(self.stream, consumer)
                return info.num_pending or 0, info.num_ack_pending or 0
            finally:
                await client.close()

        return asyncio.run(ask())


@pytest.fixture
def setup(tmp_path: Path, nats_server: NatsServer) -> Iterator[Setup]:
    """Local mode on the session's NATS server, with a stream of the test's own."""
    made = Setup(tmp_path, nats_server)
    yield made
    for local in made.started:
        local.stop()


def orders(count: int, **extra: Any) -> list[dict[str, Any]]:
    return [{"kind": "order", "n": n, **extra} for n in range(count)]


def test_messages_reach_the_function_in_sqs_batches_once_each(setup: Setup) -> None:
    setup.create_stream()
    local = setup.local()
    setup.publish(orders(40))
    wait_for(lambda: len(setup.handled()) >= 40, timeout=60, what="40 messages handled")
    handled = setup.handled()
    assert sorted(h["n"] for h in handled) == list(range(40)), "each once, none lost"
    assert {h["source"] for h in handled} == {"aws:sqs"}
    assert {h["receives"] for h in handled} == {1}
    assert len({h["id"] for h in handled}) == 40
    wait_for(lambda: setup.pending() == (0, 0), timeout=30, what="every message acknowledged")
    assert "Traceback" not in "\n".join(local.lines)


def test_only_failed_items_come_again_and_exhausted_ones_go_to_the_failure_destination(
    setup: Setup,
) -> None:
    setup.create_stream()
    setup.local()
    bodies = [
        *orders(6),
        {"kind": "order", "n": 100, "fail": 1},
        {"kind": "order", "n": 200, "fail": -1},
    ]
    setup.publish(bodies)
    wait_for(
        lambda: len(setup.handled()) >= 7 and setup.letters_received(),
        timeout=60,
        what="the flaky message handled on its second receive, the poison one dead-lettered",
    )
    receives = Counter(h["n"] for h in setup.handled())
    assert receives == Counter([*range(6), 100]), "a batch's successes are not run again"
    assert [h["receives"] for h in setup.handled() if h["n"] == 100] == [2]
    [letter] = setup.letters_received()
    assert letter["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert letter["requestContext"]["approximateInvokeCount"] == 2
    event = SQSEvent(letter["requestPayload"])
    [poison] = list(event.records)
    assert poison.json_body == {"kind": "order", "n": 200, "fail": -1}
    assert poison.attributes.approximate_receive_count == "2"
    assert poison.message_attributes["Shop"].string_value == "north"
    wait_for(lambda: setup.pending() == (0, 0), timeout=30, what="every message settled")


def test_messages_no_filter_matches_are_dropped_unseen(setup: Setup) -> None:
    setup.create_stream()
    setup.local()
    setup.publish(
        [{"kind": "refund", "n": 1}, {"kind": "order", "n": 2}, {"kind": "refund", "n": 3}]
    )
    wait_for(lambda: setup.pending() == (0, 0), timeout=60, what="all three settled")
    assert [h["n"] for h in setup.handled()] == [2]


def test_a_stream_created_after_the_trigger_is_consumed_once_it_exists(setup: Setup) -> None:
    local = setup.local()
    wait_for(
        lambda: any(f"stream {setup.stream} does not exist" in line for line in local.lines),
        timeout=30,
        what="the poller saying the stream is missing",
    )
    setup.create_stream()
    setup.publish(orders(3))
    wait_for(lambda: len(setup.handled()) == 3, timeout=90, what="the messages handled")


def test_a_poller_killed_mid_batch_loses_nothing(tmp_path: Path, nats_server: NatsServer) -> None:
    # A batch of 10 takes 2 s, well within the timeout; its messages come back 15 s after the
    # kill (the queue poller's ack wait: nothing reports them in progress any more).
    setup = Setup(tmp_path, nats_server, timeout=5)
    setup.create_stream()
    first = setup.local()
    try:
        setup.publish(orders(20, sleep=0.2))
        wait_for(lambda: len(setup.handled()) >= 2, timeout=60, what="the first batch under way")
        kill_tree(first.process.pid)
        first.process.wait(timeout=10)
        setup.local()
        wait_for(
            lambda: {h["n"] for h in setup.handled()} == set(range(20)),
            timeout=120,
            what="all 20 handled after the restart",
        )
        duplicates = len(setup.handled()) - 20
        assert duplicates <= 20, "at most the batches in flight come again"
    finally:
        for local in setup.started:
            local.stop()


SCALING = """
apiVersion: kubelambda.dev/v1alpha1
kind: Function
metadata: {{name: slow}}
spec:
  runtime: python3.12
  handler: app.handler
  concurrency: 1
  timeoutSeconds: 10
  scaling: {{minReplicas: 0, maxReplicas: 3, scaleToZeroAfterSeconds: 3}}
  code:
    inline:
      files:
        app.py: |
          import time
          def handler(event, context):
              time.sleep(0.3 * len(event["Records"]))
---
apiVersion: kubelambda.dev/v1alpha1
kind: Trigger
metadata: {{name: slow-queue}}
spec:
  function: slow
  queue: {{stream: {stream}, batchSize: 1}}
"""


def test_a_backlog_scales_the_function_up_to_its_maximum_and_an_empty_queue_to_zero(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    setup = Setup(tmp_path, nats_server)
    setup.manifest.write_text(SCALING.format(stream=setup.stream))
    setup.create_stream()
    local = setup.local()
    try:
        setup.publish(orders(60))

        # One batch per instance slot at a time (maximumConcurrency defaults to maxReplicas x
        # concurrency): the backlog keeps 3 in flight, so the autoscaler goes to 3, no further.
        def scaled_to(replicas: int) -> bool:
            return any(
                "slow: " in line and f"-> {replicas} instances" in line for line in local.lines
            )

        wait_for(lambda: scaled_to(3), timeout=60, what="the function scaled to its maxReplicas, 3")
        wait_for(
            lambda: scaled_to(0), timeout=90, what="the function back at zero, the queue empty"
        )
        assert not any(scaled_to(n) for n in (4, 5, 6))
        assert setup.pending(consumer="kubelambda_default_slow-queue") == (0, 0)
    finally:
        local.stop()
