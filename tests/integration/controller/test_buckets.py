"""Bucket Triggers with a ``source`` on a real S3 server (the harness's MinIO): the operator
subscribes the bucket to the gateway's webhook target, keeps everyone else's notification
entries, and unsubscribes behind its finalizer when the Trigger is deleted."""

from __future__ import annotations

import base64
import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from harness.apiserver import ApiServer
from harness.minio import Minio, Webhook, minio_for_pytest
from integration.controller.operating import (
    WEBHOOK_ARN,
    WEBHOOK_TARGET,
    OperatorProcess,
    get,
    wait_condition,
)
from support.waiting import wait_for

FINALIZER = "kubelambda.dev/bucket-subscription"


class Receiver:
    """Stands in for the gateway's S3 endpoint: answers MinIO's probe, records deliveries."""

    def __init__(self) -> None:
        self.keys: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_HEAD(self) -> None:
                self.send_response(200)
                self.end_headers()

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
                receiver.keys.append(str(body.get("Key")))
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/_kubelambda/events/s3"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    yield running
    running.close()


@pytest.fixture(scope="module")
def minio(tmp_path_factory: pytest.TempPathFactory, receiver: Receiver) -> Iterator[Minio]:
    hooks = {
        WEBHOOK_TARGET: Webhook(endpoint=receiver.url),
        "other": Webhook(endpoint=receiver.url),
    }
    yield from minio_for_pytest(tmp_path_factory, webhooks=hooks, region="us-east-1")


def secret(minio: Minio) -> dict[str, Any]:
    def encode(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s3"},
        "data": {
            "AWS_ACCESS_KEY_ID": encode(minio.access_key),
            "AWS_SECRET_ACCESS_KEY": encode(minio.secret_key),
        },
    }


def objects(minio: Minio, bucket: str) -> list[dict[str, Any]]:
    return [
        secret(minio),
        {
            "apiVersion": "kubelambda.dev/v1alpha1",
            "kind": "Function",
            "metadata": {"name": "thumbs"},
            "spec": {
                "runtime": "python3.12",
                "handler": "app.handler",
                "code": {"inline": {"files": {"app.py": "def handler(e, c):\n    return e\n"}}},
            },
        },
        {
            "apiVersion": "kubelambda.dev/v1alpha1",
            "kind": "Trigger",
            "metadata": {"name": "uploads"},
            "spec": {
                "function": "thumbs",
                "bucket": {
                    "bucket": bucket,
                    "prefix": "in/",
                    "suffix": ".jpg",
                    "source": {"endpoint": minio.endpoint, "credentialsSecret": {"name": "s3"}},
                },
            },
        },
    ]


def queues(minio: Minio, bucket: str) -> list[dict[str, Any]]:
    found = minio.client().get_bucket_notification_configuration(Bucket=bucket)
    return list(found.get("QueueConfigurations") or [])


def test_a_bucket_is_subscribed_and_unsubscribed(
    kube_api: ApiServer, operator: OperatorProcess, namespace: str, minio: Minio, receiver: Receiver
) -> None:
    s3 = minio.client()
    bucket = f"photos-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    # Someone else's entry: it must survive both the subscription and its removal.
    theirs = {
        "Id": "audit",
        "QueueArn": "arn:minio:sqs:us-east-1:other:webhook",
        "Events": ["s3:ObjectRemoved:*"],
    }
    s3.put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={"QueueConfigurations": [theirs]},  # type: ignore[list-item]
    )

    documents = "\n---\n".join(json.dumps(obj) for obj in objects(minio, bucket))
    kube_api.kubectl("apply", "-n", namespace, "-f", "-", input=documents)
    body = wait_condition(
        kube_api, "trigger", "uploads", namespace, reason="Subscribed", status="True"
    )
    assert body["metadata"]["finalizers"] == [FINALIZER]
    entries = {entry["QueueArn"]: entry for entry in queues(minio, bucket)}
    assert set(entries) == {theirs["QueueArn"], WEBHOOK_ARN}
    ours = entries[WEBHOOK_ARN]
    assert ours["Events"] == ["s3:ObjectCreated:*"]
    rules = {r["Name"].lower(): r["Value"] for r in ours["Filter"]["Key"]["FilterRules"]}
    assert rules == {"prefix": "in/", "suffix": ".jpg"}

    # The subscription works: MinIO notifies the webhook target for a matching upload only.
    s3.put_object(Bucket=bucket, Key="in/cat.jpg", Body=b"jpg")
    s3.put_object(Bucket=bucket, Key="out/cat.jpg", Body=b"jpg")
    wait_for(lambda: f"{bucket}/in/cat.jpg" in receiver.keys, timeout=30, what="the notification")
    assert f"{bucket}/out/cat.jpg" not in receiver.keys

    kube_api.kubectl("delete", "trigger", "uploads", "-n", namespace, "--timeout=60s")
    assert get(kube_api, "trigger", "uploads", namespace) is None
    assert [entry["QueueArn"] for entry in queues(minio, bucket)] == [theirs["QueueArn"]]
    events = kube_api.kubectl(
        "get",
        "events",
        "-n",
        namespace,
        "--field-selector",
        "involvedObject.name=uploads",
        "-o",
        "json",
    )
    reasons = {event["reason"] for event in json.loads(events.stdout)["items"]}
    assert {"Subscribed", "Unsubscribed"} <= reasons


def test_a_missing_bucket_is_reported(
    kube_api: ApiServer, operator: OperatorProcess, namespace: str, minio: Minio
) -> None:
    documents = "\n---\n".join(json.dumps(obj) for obj in objects(minio, "no-such-bucket"))
    kube_api.kubectl("apply", "-n", namespace, "-f", "-", input=documents)
    body = wait_condition(
        kube_api, "trigger", "uploads", namespace, reason="SubscribeFailed", status="False"
    )
    ready = next(c for c in body["status"]["conditions"] if c["type"] == "Ready")
    assert "NoSuchBucket" in ready["message"]
    # Nothing was subscribed, but deleting still goes through (the server just has nothing).
    kube_api.kubectl("delete", "trigger", "uploads", "-n", namespace, "--timeout=60s")
