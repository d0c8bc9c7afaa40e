"""Sets up the chaos load on an installed release and runs it until the block ends; the e2e
scenario (test_chaos.py) and benchmarks/chaos.py both use `chaos_load`.

One Function (one pod, as at minReplicas 1) serves it all: an HTTP Trigger route, Invoke API
calls (signed with its own access key), Event invocations, the notifications of uploads
to a bucket on a MinIO on loopback (with a queue directory, as the README sets MinIO up), the
batches of a queue Trigger on a JetStream stream of the release's NATS and of a kafka Trigger
on a topic of a Kafka broker on the node's address (tests/harness/kafka.py). It reports each
Event's request id, each object key and each message id to a recorder on loopback, reached
through a relay on the node's address. The gateway runs two replicas, the chart's default.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from functools import partial
from pathlib import Path
from typing import Any

from e2e.async_events.disruptions import component
from e2e.async_events.traffic import Sender, lambda_client, recorder
from e2e.chaos import sources
from e2e.chaos.faults import GATEWAYS
from e2e.chaos.load import (
    CLIENT_TIMEOUT,
    FUNCTION_TIMEOUT,
    OK,
    Call,
    Load,
    Pace,
    http_call,
    invoke_call,
)
from e2e.chaos.sources import Connect, Producer, publish_once
from e2e.kit import (
    FUNCTIONS_NAMESPACE,
    S3_REGION,
    S3_TARGET_ID,
    access_key,
    function_manifests,
    nats_url,
    notify_uploads,
    wait_for,
    wait_function_ready,
)
from harness.cluster import Cluster
from harness.kafka import kafka_broker
from harness.minio import Webhook, minio_server
from harness.relay import relay
from harness.release import RELEASE, SYSTEM_NAMESPACE, Release

NAME = "chaos"
BUCKET = "chaos"
ROUTE = "/chaos"
KEY, SECRET = "AKIAE2ECHAOSCALLER01", "e2e-chaos/secret+chars"
WARMUP_TIMEOUT = 120.0
# Batches of up to 10 messages gathered for at most 1 s; at most 2 in flight per source, so
# the synchronous calls keep most of the Function's concurrency.
BATCHING = {"batchSize": 10, "maximumBatchingWindowSeconds": 1, "maximumConcurrency": 2}
CODE = """
import base64
import json
import os
import time
import urllib.parse
import urllib.request


def report(ident):
    request = urllib.request.Request(
        os.environ["RECORDER_URL"],
        data=json.dumps({"id": ident}).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        answer.read()


def handler(event, context):
    # Asynchronous work takes half a second, so the dispatcher always has deliveries in flight
    # when it is killed; each is reported before answering (handled once it ran).
    if event.get("eventSource") == "SelfManagedKafka":  # kafka Trigger batches
        time.sleep(0.5)
        for records in event["records"].values():
            for record in records:
                report(json.loads(base64.b64decode(record["value"]))["id"])
    elif "Records" in event:  # bucket notifications, queue Trigger batches (SQS shape)
        time.sleep(0.5)
        for record in event["Records"]:
            if "s3" in record:
                report(urllib.parse.unquote_plus(record["s3"]["object"]["key"]))
            else:
                report(json.loads(record["body"])["id"])
    elif "n" in event:  # Event invocations (async_events.traffic.Sender)
        time.sleep(0.5)
        report(context.aws_request_id)
    # HTTP Trigger requests and RequestResponse calls: nothing to record.
    return {"statusCode": 200, "body": "ok"}
"""


def manifests(
    recorder_url: str, node_ip: str, *, kafka_bootstrap: str | None
) -> list[dict[str, Any]]:
    function, route = function_manifests(
        NAME, code=CODE, path=ROUTE, scaling={"minReplicas": 1, "maxReplicas": 1}
    )
    function["spec"].update(
        {
            "concurrency": 6,
            "timeoutSeconds": int(FUNCTION_TIMEOUT),
            "delivery": {"retries": 2, "backoffSeconds": 1},
            "env": [{"name": "RECORDER_URL", "value": recorder_url}],
            "network": {"egress": [{"cidr": f"{node_ip}/32"}]},
        }
    )
    bucket = {
        # No `source`: the scenario subscribes the bucket itself (MinIO is on loopback).
        "apiVersion": "kubelambda.dev/v1alpha1",
        "kind": "Trigger",
        "metadata": {"name": f"{NAME}-bucket", "namespace": FUNCTIONS_NAMESPACE},
        "spec": {
            "function": NAME,
            "bucket": {"bucket": BUCKET, "events": ["s3:ObjectCreated:*"]},
            "delivery": {"retries": 2, "backoffSeconds": 1},
        },
    }
    caller = access_key(
        "e2e-chaos-caller", key=KEY, secret=SECRET, functions=f"{FUNCTIONS_NAMESPACE}/{NAME}"
    )

    def trigger(source: str, spec: dict[str, Any]) -> dict[str, Any]:
        return {
            "apiVersion": "kubelambda.dev/v1alpha1",
            "kind": "Trigger",
            "metadata": {"name": f"{NAME}-{source}", "namespace": FUNCTIONS_NAMESPACE},
            "spec": {"function": NAME, source: {**spec, **BATCHING}},
        }

    made = [function, route, bucket, caller]
    made.append(trigger("queue", {"stream": sources.STREAM, "subject": sources.SUBJECT}))
    if kafka_bootstrap is not None:
        made.append(
            trigger(
                "kafka",
                {
                    "bootstrapServers": [kafka_bootstrap],
                    "topics": [sources.TOPIC],
                    "startingPosition": "TRIM_HORIZON",
                },
            )
        )
    return made


def scale_gateway(running: Cluster, replicas: int) -> None:
    running.kubectl(
        "scale", f"deployment/{RELEASE}-gateway", "-n", SYSTEM_NAMESPACE, f"--replicas={replicas}"
    )
    running.wait_ready_pods(SYSTEM_NAMESPACE, component("gateway"), timeout=120, count=replicas)


@contextmanager
def chaos_load(
    running: Cluster, installed: Release, *, workdir: Path, pace: Pace
) -> Iterator[Load]:
    """The Function, its triggers and MinIO set up, each way in tried once end to end, then the
    load running until the block ends (and the gateway back at the harness's one replica)."""
    with ExitStack() as stack:
        made = stack.enter_context(recorder())
        to_recorder = stack.enter_context(relay(running.node_ip, ("127.0.0.1", made.port)))
        webhook = Webhook(
            endpoint=f"{installed.gateway_service_url}/_kubelambda/events/s3",
            auth_token=installed.s3_token(running),
            queue_dir=workdir / "minio-queue",
        )
        storage = stack.enter_context(
            minio_server(webhooks={S3_TARGET_ID: webhook}, region=S3_REGION, log_dir=workdir)
        )
        stack.callback(scale_gateway, running, 1)
        scale_gateway(running, GATEWAYS)
        s3 = storage.client()
        s3.create_bucket(Bucket=BUCKET)
        # The stream and the topic exist before their Triggers; the Triggers read from the start.
        to_nats = nats_url(running)
        asyncio.run(sources.make_stream(to_nats))
        connects: dict[str, Connect] = {"queue": partial(sources.jetstream, to_nats)}
        bootstrap = None
        if pace.kafka > 0:
            broker = stack.enter_context(kafka_broker(log_dir=workdir, host=running.node_ip))
            asyncio.run(broker.create_topic(sources.TOPIC, partitions=3))
            bootstrap = broker.bootstrap
            connects["kafka"] = partial(sources.kafka, bootstrap)
        running.apply(manifests(to_recorder.url, running.node_ip, kafka_bootstrap=bootstrap))
        wait_function_ready(running, NAME)
        notify_uploads(s3, BUCKET, installed.s3_webhook_arn)
        url = installed.gateway_service_url
        rates = {"queue": pace.queue, "kafka": pace.kafka}
        load = Load(
            http_url=f"{url}{ROUTE}",
            invoke_client=lambda_client(
                url, key=KEY, secret=SECRET, retries=0, read_timeout=CLIENT_TIMEOUT
            ),
            function=NAME,
            sender=Sender(
                client=lambda_client(url, key=KEY, secret=SECRET),
                function=NAME,
                total=10**9,
                interval=1.0 / pace.events,
                allowed=10**9,
            ),
            s3=s3,
            bucket=BUCKET,
            recorder=made,
            pace=pace,
            producers=[
                Producer(source=source, connect=connect, rate=rates[source])
                for source, connect in connects.items()
                if rates[source] > 0
            ],
        )
        _warm_up(load, connects)
        load.start()
        stack.callback(load.stop)
        yield load


def _warm_up(load: Load, connects: dict[str, Connect]) -> None:
    """Each way in once, end to end, before the load: the route and the caller's key known to
    the gateway, the broker, the dispatcher, MinIO's webhook, the Triggers' pollers and the way
    to the recorder."""

    def answered_ok(kind: str) -> bool:
        call = Call(kind=kind, began=time.monotonic())
        if kind == "http":
            return http_call(load.http_url, call).outcome == OK
        return invoke_call(load.invoke_client, load.function, call).outcome == OK

    for kind in ("http", "invoke"):
        wait_for(partial(answered_ok, kind), what=f"a {kind} call answered", timeout=WARMUP_TIMEOUT)

    def event_accepted() -> str:
        event = load.invoke_client.invoke(
            FunctionName=load.function, InvocationType="Event", Payload=b'{"n": -1}'
        )
        return str(event["ResponseMetadata"]["RequestId"])

    request_id = wait_for(event_accepted, what="an Event accepted", timeout=WARMUP_TIMEOUT)
    load.s3.put_object(Bucket=load.bucket, Key="warmup.txt", Body=b"warm")
    messages = [f"warmup-{producer.source}" for producer in load.producers]
    for producer in load.producers:
        asyncio.run(publish_once(connects[producer.source], f"warmup-{producer.source}"))

    def handled(ident: str) -> bool:
        return ident in load.recorder.ids()

    for ident in (request_id, "warmup.txt", *messages):
        wait_for(partial(handled, ident), what=f"{ident} handled", timeout=WARMUP_TIMEOUT)
