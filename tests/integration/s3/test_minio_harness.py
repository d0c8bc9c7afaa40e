"""The harness's MinIO: a real S3 server on loopback that boto3 can use, and that delivers bucket
notifications to a webhook target configured through its environment variables."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from harness.minio import Minio, Webhook, minio_for_pytest
from harness.procs import wait_until

TOKEN = "harness-test-token"


class Receiver:
    """A webhook endpoint on loopback that answers MinIO's probe and records each delivery."""

    def __init__(self) -> None:
        self.deliveries: list[tuple[str | None, dict[str, Any]]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_HEAD(self) -> None:  # MinIO probes the target before it uses it
                self.send_response(200)
                self.end_headers()

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.deliveries.append((self.headers.get("Authorization"), json.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: pytest shows failures, not every request

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/events"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


@pytest.fixture(scope="module")
def minio(tmp_path_factory: pytest.TempPathFactory, receiver: Receiver) -> Iterator[Minio]:
    hooks = {"HARNESS": Webhook(endpoint=receiver.url, auth_token=TOKEN)}
    yield from minio_for_pytest(tmp_path_factory, webhooks=hooks)


def test_bucket_put_and_get(minio: Minio) -> None:
    s3 = minio.client()
    bucket = f"smoke-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="dir/hello.txt", Body=b"hello from the harness")

    got = s3.get_object(Bucket=bucket, Key="dir/hello.txt")
    assert got["Body"].read() == b"hello from the harness"
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["dir/hello.txt"]


def test_upload_notifies_the_webhook_target(minio: Minio, receiver: Receiver) -> None:
    s3 = minio.client()
    bucket = f"events-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={
            "QueueConfigurations": [
                {"QueueArn": minio.webhook_arn("HARNESS"), "Events": ["s3:ObjectCreated:*"]}
            ]
        },
    )
    s3.put_object(Bucket=bucket, Key="in/a b.txt", Body=b"x")

    def delivered() -> bool:
        return any(body.get("Key") == f"{bucket}/in/a b.txt" for _, body in receiver.deliveries)

    wait_until(delivered, what="MinIO's webhook delivery", timeout=30, watch=[minio.server])
    auth, body = next(d for d in receiver.deliveries if d[1].get("Key") == f"{bucket}/in/a b.txt")
    assert auth == f"Bearer {TOKEN}"
    assert body["EventName"] == "s3:ObjectCreated:Put"
    (record,) = body["Records"]
    # MinIO's record, not AWS's: the gateway has to map these (issue 5).
    assert record["eventSource"] == "minio:s3"
    assert record["s3"]["bucket"]["name"] == bucket
    assert record["s3"]["object"]["key"] == "in%2Fa+b.txt"
