"""Scenario 5: an upload to a real MinIO -> its notification reaches the gateway -> a function in a
pod handles the S3 event (in AWS's shape) and writes a derived object back to the bucket."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from e2e.kit import (
    FUNCTIONS_NAMESPACE,
    S3_REGION,
    S3_TARGET_ID,
    Installed,
    wait_for,
    wait_function_ready,
)
from harness.cluster import Cluster
from harness.minio import Minio, Webhook, minio_server
from harness.relay import Relay, relay

NAME = "uploads"
BUCKET = "photos"
CODE = """
import json
import os
import urllib.parse

import boto3

s3 = boto3.client("s3", endpoint_url=os.environ["S3_ENDPOINT"])


def handler(event, context):
    for record in event["Records"]:
        key = urllib.parse.unquote_plus(record["s3"]["object"]["key"])
        seen = {
            "eventSource": record["eventSource"],
            "eventName": record["eventName"],
            "bucket": record["s3"]["bucket"]["name"],
            "key": key,
            "size": record["s3"]["object"]["size"],
        }
        s3.put_object(
            Bucket=record["s3"]["bucket"]["name"],
            Key="processed/" + key.rsplit("/", 1)[-1] + ".json",
            Body=json.dumps(seen).encode(),
        )
    return {"handled": len(event["Records"])}
"""


@pytest.fixture
def storage(
    e2e_cluster: Cluster, installed: Installed, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Minio, Relay]]:
    """MinIO on loopback notifying the gateway pod, reachable from pods through a relay on the
    node's address."""
    webhook = Webhook(
        endpoint=f"{installed.gateway_url}/_kubelambda/events/s3",
        auth_token=installed.s3_token(e2e_cluster),
    )
    with (
        minio_server(
            webhooks={S3_TARGET_ID: webhook},
            region=S3_REGION,
            log_dir=tmp_path_factory.mktemp("minio-logs"),
        ) as minio,
        relay(e2e_cluster.node_ip) as to_minio,
    ):
        host, port = minio.endpoint.removeprefix("http://").split(":")
        to_minio.target = (host, int(port))
        yield minio, to_minio


def test_upload_is_handled_by_a_function_in_a_pod(
    e2e_cluster: Cluster, installed: Installed, storage: tuple[Minio, Relay]
) -> None:
    minio, to_minio = storage
    s3 = minio.client()
    s3.create_bucket(Bucket=BUCKET)
    credentials = {"AWS_ACCESS_KEY_ID": minio.access_key, "AWS_SECRET_ACCESS_KEY": minio.secret_key}
    e2e_cluster.apply(
        [
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "minio-credentials", "namespace": FUNCTIONS_NAMESPACE},
                "stringData": credentials,
            },
            {
                "apiVersion": "kubelambda.dev/v1alpha1",
                "kind": "Function",
                "metadata": {"name": NAME, "namespace": FUNCTIONS_NAMESPACE},
                "spec": {
                    "runtime": "python3.12",
                    "handler": "app.handler",
                    "timeoutSeconds": 30,
                    "code": {"inline": {"files": {"app.py": CODE}}},
                    "env": [
                        {"name": "S3_ENDPOINT", "value": to_minio.url},
                        {"name": "AWS_DEFAULT_REGION", "value": S3_REGION},
                        *(
                            {
                                "name": key,
                                "valueFrom": {
                                    "secretKeyRef": {"name": "minio-credentials", "key": key}
                                },
                            }
                            for key in credentials
                        ),
                    ],
                },
            },
            {
                "apiVersion": "kubelambda.dev/v1alpha1",
                "kind": "Trigger",
                "metadata": {"name": f"{NAME}-bucket", "namespace": FUNCTIONS_NAMESPACE},
                "spec": {
                    "function": NAME,
                    "bucket": {
                        "bucket": BUCKET,
                        "events": ["s3:ObjectCreated:*"],
                        "prefix": "uploads/",
                        "source": {
                            "endpoint": to_minio.url,
                            "credentialsSecret": {"name": "minio-credentials"},
                        },
                    },
                },
            },
        ]
    )
    wait_function_ready(e2e_cluster, NAME)
    e2e_cluster.kubectl(
        "wait",
        f"trig/{NAME}-bucket",
        "-n",
        FUNCTIONS_NAMESPACE,
        "--for=condition=Ready",
        "--timeout=60s",
        timeout=70,
    )

    s3.put_object(Bucket=BUCKET, Key="uploads/cat photo.jpg", Body=b"\xff\xd8 not really a jpeg")

    def derived() -> dict[str, object] | None:
        found = s3.list_objects_v2(Bucket=BUCKET, Prefix="processed/")
        if not found.get("KeyCount"):
            return None
        body = s3.get_object(Bucket=BUCKET, Key="processed/cat photo.jpg.json")["Body"].read()
        parsed: dict[str, object] = json.loads(body)
        return parsed

    seen = wait_for(derived, what="the function's derived object in the bucket", timeout=120)
    assert seen == {
        "eventSource": "aws:s3",
        "eventName": "ObjectCreated:Put",
        "bucket": BUCKET,
        "key": "uploads/cat photo.jpg",
        "size": len(b"\xff\xd8 not really a jpeg"),
    }
