"""What the bucket-event tests share: the MinIO + gateway port set-up, buckets, manifests
(the real examples/uploads.yaml, a recorder function, bucket Triggers) and waits on objects.

The fixtures that start MinIO and local mode live in conftest.py.
"""

from __future__ import annotations

import json
import re
import textwrap
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from harness.minio import Minio
from support.local import LocalMode
from support.manifests import inline_function
from support.waiting import wait_for

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
TOKEN = "s3-notification-token-for-tests"
# local mode's default ARN names this target: arn:minio:sqs::KUBELAMBDA:webhook
TARGET = "KUBELAMBDA"
S3_PATH = "/_kubelambda/events/s3"


@dataclass(frozen=True)
class Setup:
    minio: Minio
    port: int  # local mode's gateway port, where MinIO's webhook target points

    @property
    def gateway(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def bucket(setup: Setup, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    setup.minio.client().create_bucket(Bucket=name)
    return name


def example_manifests(setup: Setup, *, bucket_name: str) -> list[dict[str, Any]]:
    """examples/uploads.yaml as it is, but its S3 endpoint and credentials those of the
    test's MinIO, and its Trigger subscribing the bucket there."""
    documents = list(yaml.safe_load_all((EXAMPLES / "uploads.yaml").read_text()))
    values = {
        "S3_ENDPOINT_URL": setup.minio.endpoint,
        "AWS_ACCESS_KEY_ID": setup.minio.access_key,
        "AWS_SECRET_ACCESS_KEY": setup.minio.secret_key,
    }
    for document in documents:
        spec = document["spec"]
        if document["kind"] == "Function":
            for variable in spec["env"]:
                variable["value"] = values.get(variable["name"], variable["value"])
        else:
            spec["bucket"]["bucket"] = bucket_name
            spec["bucket"]["source"] = {
                "endpoint": setup.minio.endpoint,
                "credentialsSecret": {"name": "minio-credentials"},
            }
    return documents


def write_manifests(path: Path, documents: list[dict[str, Any]]) -> Path:
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    return path


def keys_under(setup: Setup, bucket_name: str, prefix: str) -> list[str]:
    s3 = setup.minio.client()
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket_name, Prefix=prefix):
        keys.extend(item["Key"] for item in page.get("Contents", []))
    return keys


def wait_for_keys(
    setup: Setup, bucket_name: str, prefix: str, count: int, *, timeout: float = 60
) -> list[str]:
    def enough() -> list[str] | None:
        keys = keys_under(setup, bucket_name, prefix)
        return keys if len(keys) >= count else None

    return wait_for(
        enough,
        timeout=timeout,
        interval=0.1,
        what=f"{count} objects under {bucket_name}/{prefix}",
    )


# Writes each event it gets, whole, to events/<request id>.json in the event's bucket.
RECORDER = textwrap.dedent(
    """\
    import json, os
    import boto3

    s3 = boto3.client("s3", endpoint_url=os.environ["S3_ENDPOINT_URL"])

    def handler(event, context):
        # a bucket event, or the record of one that went to the dead letter
        records = event.get("Records") or event["requestPayload"]["Records"]
        bucket = records[0]["s3"]["bucket"]["name"]
        key = "events/" + context.aws_request_id + ".json"
        s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(event).encode())
    """
)


def recorder(setup: Setup, name: str = "recorder") -> dict[str, Any]:
    return inline_function(
        name,
        RECORDER,
        timeoutSeconds=30,
        env=[{"name": "S3_ENDPOINT_URL", "value": setup.minio.endpoint}],
    )


def bucket_trigger(setup: Setup, name: str, function: str, **bucket_spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kubelambda.dev/v1alpha1",
        "kind": "Trigger",
        "metadata": {"name": name},
        "spec": {
            "function": function,
            "bucket": {
                **bucket_spec,
                "source": {
                    "endpoint": setup.minio.endpoint,
                    "credentialsSecret": {"name": "minio-credentials"},
                },
            },
        },
    }


def recorded(setup: Setup, bucket_name: str, count: int) -> list[dict[str, Any]]:
    s3 = setup.minio.client()
    keys = wait_for_keys(setup, bucket_name, "events/", count)
    return [json.loads(s3.get_object(Bucket=bucket_name, Key=k)["Body"].read()) for k in keys]


def metric(local: LocalMode, name: str, **labels: str) -> float:
    text = httpx.get(f"{local.admin_url}/metrics", timeout=10).text
    wanted = {f'{k}="{v}"' for k, v in labels.items()}
    for line in text.splitlines():
        match = re.match(r"^(\w+)\{(.*)\} (\S+)$", line)
        if match and match[1] == name and wanted <= set(match[2].split(",")):
            return float(match[3])
    return 0.0
