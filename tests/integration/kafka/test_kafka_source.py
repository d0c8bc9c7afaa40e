"""Kafka Triggers on a real Kafka broker, through `kubelambda local` (the same pollers as a
cluster's dispatcher), with aws-lambda-powertools' Kafka batch processor as the handler: records
reach the function once each in partition order and the group's offsets are committed; with
ReportBatchItemFailures only the failed record and those after it come again; a poison record
goes to the failure destination after its retries while the rest flow; filters drop what they
do not match; a process killed mid-batch loses nothing; a topic created later is consumed. The
dispatcher's own pollers, in this process: SASL credentials from a Secret, refused and mended."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest
from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped]
from aws_lambda_powertools.utilities.data_classes.kafka_event import KafkaEvent

from harness.kafka import KafkaBroker
from kubelambda.api.function import parse_function
from kubelambda.api.identity import FunctionKey
from kubelambda.api.trigger import Trigger, parse_trigger
from kubelambda.clock import SystemClock
from kubelambda.delivery.jobs import DeliveryJob
from kubelambda.dispatcher.function_call import Outcome
from kubelambda.dispatcher.sources import EventSources
from support.local import LocalMode, start_local
from support.manifests import FAILURE_DESTINATION
from support.processes import kill_tree
from support.waiting import wait_for, wait_for_async

FUNCTIONS = (
    """
apiVersion: kubelambda.dev/v1alpha1
kind: Function
metadata: {{name: orders}}
spec:
  runtime: python3.12
  handler: app.handler
  concurrency: 2
  timeoutSeconds: 10
  env: [{{name: SEEN, value: "{seen}"}}]
  code:
    inline:
      files:
        app.py: |
          import glob, json, os, time, uuid
          from aws_lambda_powertools.utilities.batch import (
              BatchProcessor, EventType, process_partial_response)

          processor = BatchProcessor(event_type=EventType.Kafka)
          event_source = None

          def record_handler(record):
              body = record.json_value
              time.sleep(body.get("sleep", 0))
              seen = os.environ["SEEN"]
              tries = len(glob.glob(os.path.join(seen, f"{{body['n']}}-*")))
              fails = body.get("fail", 0)  # -1: always
              ok = not (fails == -1 or tries < fails)
              path = os.path.join(seen, f"{{body['n']}}-{{uuid.uuid4().hex}}")
              with open(path + ".tmp", "w") as out:
                  json.dump({{"n": body["n"], "ok": ok, "partition": record.partition,
                             "offset": record.offset, "at": time.time_ns(),
                             "source": event_source}}, out)
              os.replace(path + ".tmp", path)
              if not ok:
                  raise RuntimeError(f"{{body['n']}} failed on try {{tries + 1}}")

          def handler(event, context):
              global event_source
              event_source = event["eventSource"]
              return process_partial_response(
                  event=event, record_handler=record_handler, processor=processor,
                  context=context)
"""
    + FAILURE_DESTINATION
    + """---
apiVersion: kubelambda.dev/v1alpha1
kind: Trigger
metadata: {{name: orders-kafka}}
spec:
  function: orders
  kafka:
    bootstrapServers: ["{bootstrap}"]
    topics: [{topic}]
    consumerGroup: {group}
    startingPosition: TRIM_HORIZON
    batchSize: 10
    maximumRetryAttempts: 2
    functionResponseTypes: [ReportBatchItemFailures]
    filterCriteria:
      filters:
        - pattern: '{{"value": {{"kind": ["order"]}}}}'
  delivery: {{onFailure: {{function: failures}}}}
"""
)

Entry = dict[str, Any]


class Setup:
    """A manifest with a topic and a consumer group of the test's own on the given broker."""

    def __init__(self, tmp_path: Path, broker: KafkaBroker) -> None:
        self.broker = broker
        tag = secrets.token_hex(3)
        self.topic, self.group = f"orders-{tag}", f"orders-{tag}"
        self.seen, self.letters = tmp_path / "seen", tmp_path / "letters"
        self.seen.mkdir()
        self.letters.mkdir()
        self.manifest = tmp_path / "functions.yaml"
        self.manifest.write_text(
            FUNCTIONS.format(
                seen=self.seen,
                letters=self.letters,
                bootstrap=broker.bootstrap,
                topic=self.topic,
                group=self.group,
            )
        )
        self.started: list[LocalMode] = []
        self.sent: list[tuple[int, int]] = []  # partition, offset of each record produced

    def local(self) -> LocalMode:
        local = start_local(self.manifest, "--hold-timeout", "5")
        self.started.append(local)
        return local

    def create_topic(self) -> None:
        asyncio.run(self.broker.create_topic(self.topic, partitions=3))

    def produce(self, bodies: list[tuple[int, Any]]) -> None:
        """Send each (partition, body) and wait for the broker's acknowledgement."""

        async def send() -> None:
            producer = AIOKafkaProducer(bootstrap_servers=self.broker.bootstrap, acks="all")
            await producer.start()
            try:
                for partition, body in bodies:
                    acked = await producer.send_and_wait(
                        self.topic, json.dumps(body).encode(), partition=partition
                    )
                    self.sent.append((acked.partition, acked.offset))
            finally:
                await producer.stop()

        asyncio.run(send())

    def entries(self) -> list[Entry]:
        """Every try of a record the function made, in the order it made them."""
        found = [
            json.loads(path.read_text())
            for path in self.seen.iterdir()
            if not path.name.endswith(".tmp")
        ]
        return sorted(found, key=lambda entry: entry["at"])

    def handled(self) -> list[Entry]:
        return [entry for entry in self.entries() if entry["ok"]]

    def letters_received(self) -> list[dict[str, Any]]:
        return [
            json.loads(path.read_text())
            for path in self.letters.iterdir()
            if not path.name.endswith(".tmp")
        ]

    def committed(self) -> dict[int, int]:
        async def ask() -> dict[int, int]:
            async with self.broker.admin() as admin:
                offsets = await admin.list_consumer_group_offsets(self.group)
            return {tp.partition: meta.offset for tp, meta in offsets.items()}

        return asyncio.run(ask())

    def lag_is_zero(self) -> bool:
        """The group committed one past the last record produced on every partition."""
        ends: dict[int, int] = {}
        for partition, offset in self.sent:
            ends[partition] = max(ends.get(partition, 0), offset + 1)
        committed = self.committed()
        return all(committed.get(partition) == end for partition, end in ends.items())


@pytest.fixture
def setup(tmp_path: Path, kafka_broker: KafkaBroker) -> Iterator[Setup]:
    made = Setup(tmp_path, kafka_broker)
    yield made
    for local in made.started:
        local.stop()


def orders(count: int, *, first: int = 0, **extra: Any) -> list[tuple[int, dict[str, Any]]]:
    """`count` orders spread over the 3 partitions."""
    return [(n % 3, {"kind": "order", "n": n, **extra}) for n in range(first, first + count)]


def offsets_by_partition(entries: list[Entry]) -> dict[int, list[int]]:
    """The offsets each partition's records were tried at, in the order they were."""
    found: dict[int, list[int]] = defaultdict(list)
    for entry in entries:
        found[entry["partition"]].append(entry["offset"])
    return found


def test_records_reach_the_function_once_each_in_partition_order(setup: Setup) -> None:
    setup.create_topic()
    local = setup.local()
    setup.produce(orders(60))
    wait_for(lambda: len(setup.handled()) >= 60, timeout=60, what="60 records handled")
    wait_for(setup.lag_is_zero, timeout=30, what="the group's offsets at the end of each partition")
    entries = setup.entries()
    assert sorted(e["n"] for e in entries) == list(range(60)), "each once, none lost"
    assert {e["source"] for e in entries} == {"SelfManagedKafka"}
    for partition, offsets in offsets_by_partition(entries).items():
        assert offsets == list(range(20)), f"partition {partition} in order"
    assert "Traceback" not in local.output()


def test_only_records_from_the_failed_one_come_again_and_a_poison_one_goes_to_the_destination(
    setup: Setup,
) -> None:
    setup.create_topic()
    setup.local()
    # Partition 0: a record that fails once among others; partition 1: one that always fails,
    # then more that must still flow; partition 2: nothing goes wrong.
    bodies = [
        *[(0, {"kind": "order", "n": n}) for n in range(4)],
        (0, {"kind": "order", "n": 100, "fail": 1}),
        *[(0, {"kind": "order", "n": n}) for n in range(4, 8)],
        *[(1, {"kind": "order", "n": n}) for n in range(10, 13)],
        (1, {"kind": "order", "n": 200, "fail": -1}),
        *[(2, {"kind": "order", "n": n}) for n in range(20, 25)],
    ]
    setup.produce(bodies)
    setup.produce([(1, {"kind": "order", "n": n}) for n in range(13, 16)])  # after the poison
    wait_for(
        lambda: setup.letters_received() and setup.lag_is_zero(),
        timeout=60,
        what="the poison record at the failure destination and every offset committed",
    )
    handled = Counter(e["n"] for e in setup.handled())
    assert set(handled) == {*range(8), 100, *range(10, 16), *range(20, 25)}, "the rest flowed"
    tries = offsets_by_partition(setup.entries())

    # Partition 0: the records before the flaky one once each; from it on, again, in order.
    flaky = 4
    zero = tries[0]
    back = next(n for n in range(1, len(zero)) if zero[n] <= zero[n - 1])
    assert zero[:back] == list(range(back)) and flaky < back
    assert zero[back:] == list(range(flaky, 9)), "again from the failed record, in order"
    assert all(handled[n] == 1 for n in range(4)), "records before the failure not sent again"
    assert tries[2] == list(range(5)), "another partition's records are not sent again"

    # Partition 1: the poison record (offset 3) was tried 3 times (2 retries), then given up.
    assert Counter(tries[1])[3] == 3
    [letter] = setup.letters_received()
    assert letter["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert letter["requestContext"]["approximateInvokeCount"] == 3
    event = KafkaEvent(letter["requestPayload"])
    assert event.event_source == "SelfManagedKafka"
    [poison] = list(event.records)
    assert (poison.topic, poison.partition, poison.offset) == (setup.topic, 1, 3)
    assert poison.json_value == {"kind": "order", "n": 200, "fail": -1}


def test_records_no_filter_matches_are_committed_unseen(setup: Setup) -> None:
    setup.create_topic()
    setup.local()
    setup.produce(
        [
            (0, {"kind": "refund", "n": 1}),
            (0, {"kind": "order", "n": 2}),
            (1, {"kind": "refund", "n": 3}),
            (2, "a JSON string, not an object"),
        ]
    )
    wait_for(setup.lag_is_zero, timeout=60, what="all four committed")
    assert [e["n"] for e in setup.entries()] == [2]


def test_a_process_killed_mid_batch_loses_nothing(setup: Setup) -> None:
    setup.create_topic()
    first = setup.local()
    setup.produce(orders(30, sleep=0.1))
    wait_for(lambda: len(setup.handled()) >= 2, timeout=60, what="the first batch under way")
    kill_tree(first.process.pid)
    first.process.wait(timeout=10)
    before = len(setup.handled())
    assert before < 30, "killed while records were left"
    committed = sum(setup.committed().values())
    setup.local()
    wait_for(
        lambda: {e["n"] for e in setup.handled()} == set(range(30)),
        timeout=60,
        what="all 30 handled after the restart",
    )
    wait_for(setup.lag_is_zero, timeout=30, what="every offset committed after the restart")
    # Only records handled but not committed before the kill come again.
    duplicates = len(setup.handled()) - 30
    assert duplicates <= before - committed
    for partition, offsets in offsets_by_partition(setup.entries()).items():
        assert sorted(set(offsets)) == list(range(10)), f"partition {partition} whole"


def test_a_topic_created_after_the_trigger_is_consumed_once_it_exists(setup: Setup) -> None:
    local = setup.local()
    local.wait_for_line(f"topic {setup.topic} does not exist", timeout=30)
    setup.create_topic()
    setup.produce(orders(3))
    wait_for(lambda: len(setup.handled()) == 3, timeout=60, what="the records handled")
    wait_for(setup.lag_is_zero, timeout=30, what="their offsets committed")


# --- the pollers in this process: credentials from a Secret -------------------------------

FUNCTION = {
    "apiVersion": "kubelambda.dev/v1alpha1",
    "kind": "Function",
    "metadata": {"name": "orders"},
    "spec": {
        "runtime": "python3.12",
        "handler": "app.handler",
        "code": {"inline": {"files": {"app.py": "def handler(event, context): pass"}}},
    },
}


class Recorder:
    """A FunctionCall that takes every batch, and the Secrets a cluster would hold."""

    def __init__(self) -> None:
        self.batches: list[dict[str, Any]] = []
        self.secrets: dict[str, dict[str, str]] = {}

    async def __call__(self, job: DeliveryJob) -> Outcome:
        self.batches.append(json.loads(job.payload))
        return Outcome(status=200, body=None)

    async def read_secret(self, namespace: str, name: str) -> dict[str, str] | None:
        return self.secrets.get(name)

    def values(self) -> list[bytes]:
        return [
            base64.b64decode(record["value"])
            for batch in self.batches
            for records in batch["records"].values()
            for record in records
        ]


def sources(recorder: Recorder, *, secrets: bool = True) -> EventSources:
    async def admit(jobs: Any) -> bool:
        return True

    return EventSources(
        call=recorder,
        admit=admit,
        clock=SystemClock(),
        broker=None,
        region="us-east-1",
        account_id="000000000000",
        secrets=recorder.read_secret if secrets else None,
    )


def kafka_trigger(
    name: str, *, bootstrap: str, topic: str, secret: str | None = None, **more: Any
) -> Trigger:
    return parse_trigger(
        {
            "apiVersion": "kubelambda.dev/v1alpha1",
            "kind": "Trigger",
            "metadata": {"name": name},
            "spec": {
                "function": "orders",
                "kafka": {
                    "bootstrapServers": [bootstrap],
                    "topics": [topic],
                    "consumerGroup": f"{topic}-{name}",
                    "startingPosition": "TRIM_HORIZON",
                    "auth": {"secretRef": {"name": secret}} if secret else {},
                    **more,
                },
            },
        }
    )


@pytest.mark.anyio
async def test_sasl_credentials_come_from_the_secret_and_refused_ones_are_a_clear_problem(
    kafka_broker: KafkaBroker,
) -> None:
    topic = f"sasl-{secrets.token_hex(3)}"
    await kafka_broker.create_topic(topic)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap, acks="all")
    await producer.start()
    try:
        for n in range(3):
            await producer.send_and_wait(topic, f"record-{n}".encode())
    finally:
        await producer.stop()
    ((user, password),) = kafka_broker.sasl_users.items()
    recorder = Recorder()
    recorder.secrets["login"] = {"username": user, "password": password + "-wrong"}
    trigger = kafka_trigger(
        "login", bootstrap=kafka_broker.sasl_bootstrap, topic=topic, secret="login"
    )
    functions = {FunctionKey("default", "orders"): parse_function(FUNCTION)}
    running, local = sources(recorder), sources(Recorder(), secrets=False)
    for made in (running, local):
        made.start()
        made.update(functions, [trigger])
    key = ("default", "login")
    try:
        await wait_for_async(
            lambda: "Authentication failed" in (running.problems.get(key) or ""),
            seconds=30,
            what="the refused password reported",
        )
        problem = running.problems[key] or ""
        assert f"cannot reach the Kafka cluster at {kafka_broker.sasl_bootstrap}" in problem
        assert "Invalid username or password" in problem
        assert local.problems[key] == (
            "auth.secretRef login: Secrets are read on a cluster only, and local mode has none"
        )
        assert recorder.batches == []

        recorder.secrets["login"]["password"] = password  # the Secret mended: read at reconnect
        await wait_for_async(
            lambda: len(recorder.values()) == 3, seconds=30, what="the records once mended"
        )
        assert sorted(recorder.values()) == [b"record-0", b"record-1", b"record-2"]
        assert running.problems[key] is None
    finally:
        await running.aclose()
        await local.aclose()


@pytest.mark.anyio
async def test_at_timestamp_starts_a_new_group_at_the_first_record_from_that_time(
    kafka_broker: KafkaBroker,
) -> None:
    topic = f"timed-{secrets.token_hex(3)}"
    await kafka_broker.create_topic(topic, partitions=2)
    now_ms = int(time.time() * 1000)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap, acks="all")
    await producer.start()
    try:
        for age, label in ((120_000, "old"), (0, "new")):
            for n in range(4):
                await producer.send_and_wait(
                    topic, f"{label}-{n}".encode(), partition=n % 2, timestamp_ms=now_ms - age
                )
    finally:
        await producer.stop()
    since = datetime.fromtimestamp(now_ms / 1000 - 60, UTC).isoformat()
    trigger = kafka_trigger(
        "timed",
        bootstrap=kafka_broker.bootstrap,
        topic=topic,
        startingPosition="AT_TIMESTAMP",
        startingPositionTimestamp=since,
    )
    recorder = Recorder()
    running = sources(recorder)
    running.start()
    running.update({FunctionKey("default", "orders"): parse_function(FUNCTION)}, [trigger])
    try:
        await wait_for_async(
            lambda: len(recorder.values()) >= 4, seconds=30, what="the records from that time"
        )
        # A partition's older records come before its newer ones: none came, none will.
        assert sorted(recorder.values()) == [f"new-{n}".encode() for n in range(4)]
    finally:
        await running.aclose()


@pytest.mark.anyio
async def test_a_cluster_that_is_down_is_a_problem_and_its_records_flow_once_it_is_back(
    own_kafka_broker: KafkaBroker,
) -> None:
    broker, topic = own_kafka_broker, "waiting"
    await broker.create_topic(topic, partitions=2)
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    await producer.start()
    try:
        for n in range(4):
            await producer.send_and_wait(topic, f"record-{n}".encode(), partition=n % 2)
    finally:
        await producer.stop()
    await anyio.to_thread.run_sync(broker.stop)
    recorder = Recorder()
    running = sources(recorder)
    trigger = kafka_trigger("waiting", bootstrap=broker.bootstrap, topic=topic)
    running.start()
    running.update({FunctionKey("default", "orders"): parse_function(FUNCTION)}, [trigger])
    key = ("default", "waiting")
    try:
        await wait_for_async(
            lambda: (running.problems.get(key) or "").startswith("cannot reach"),
            seconds=30,
            what="the cluster that is down reported",
        )
        assert f"cannot reach the Kafka cluster at {broker.bootstrap}: " in (
            running.problems[key] or ""
        )
        await anyio.to_thread.run_sync(broker.start)
        await wait_for_async(
            lambda: len(recorder.values()) == 4, seconds=60, what="the records once it is back"
        )
        assert sorted(recorder.values()) == [f"record-{n}".encode() for n in range(4)]
        assert running.problems[key] is None
    finally:
        await running.aclose()
