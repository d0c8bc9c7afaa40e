"""Scenario: no bucket event is lost when the gateway is killed while uploads go on.

A real MinIO on loopback notifies the gateway's Service (with a queue directory, as the README
tells MinIO users to set up: MinIO keeps events while the endpoint is down and sends them
again). 200 objects are uploaded at a steady pace while the gateway's pods are force-deleted
(`--grace-period=0 --force`: a node failure, an OOM kill). The function reports each object
key it handled to a recorder on the node; every uploaded key must be among them. Duplicates
are allowed (MinIO and the broker deliver at least once) and counted.

It replaces the release's gateway pods, so it runs after the other scenarios.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from e2e.async_events.disruptions import force_delete, logs
from e2e.async_events.traffic import Recorder
from e2e.kit import (
    FUNCTIONS_NAMESPACE,
    S3_REGION,
    S3_TARGET_ID,
    Installed,
    fail_on_crash,
    notify_uploads,
    wait_for,
    wait_function_ready,
)
from harness.cluster import Cluster
from harness.minio import Minio, Webhook, minio_server
from harness.relay import Relay

pytestmark = pytest.mark.disrupts_release

NAME = "upload-tally"
BUCKET = "tally"
UPLOADS = 200
PACE = 0.1  # seconds between uploads: the gateway is killed with most of them still to come
KILL_AFTER = 50
HANDLED_TIMEOUT = 300.0  # after the last upload: MinIO sends its queued events again
CODE = """
import json
import os
import urllib.parse
import urllib.request


def handler(event, context):
    for record in event["Records"]:
        key = urllib.parse.unquote_plus(record["s3"]["object"]["key"])
        request = urllib.request.Request(
            os.environ["RECORDER_URL"],
            data=json.dumps({"id": key}).encode(),
            headers={"content-type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            answer.read()
    return {"handled": len(event["Records"])}
"""


@pytest.fixture
def storage(e2e_cluster: Cluster, installed: Installed, tmp_path: Path) -> Iterator[Minio]:
    """MinIO on loopback notifying the gateway's Service, which outlives the gateway's pods."""
    webhook = Webhook(
        endpoint=f"{installed.gateway_service_url}/_kubelambda/events/s3",
        auth_token=installed.s3_token(e2e_cluster),
        queue_dir=tmp_path / "minio-queue",
    )
    with minio_server(
        webhooks={S3_TARGET_ID: webhook}, region=S3_REGION, log_dir=tmp_path
    ) as minio:
        yield minio


def manifests(recorder_url: str, node_ip: str) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "kubelambda.dev/v1alpha1",
            "kind": "Function",
            "metadata": {"name": NAME, "namespace": FUNCTIONS_NAMESPACE},
            "spec": {
                "runtime": "python3.12",
                "handler": "app.handler",
                "concurrency": 4,
                "timeoutSeconds": 15,
                "scaling": {"minReplicas": 1, "maxReplicas": 1},
                "env": [{"name": "RECORDER_URL", "value": recorder_url}],
                "network": {"egress": [{"cidr": f"{node_ip}/32"}]},
                "code": {"inline": {"files": {"app.py": CODE}}},
            },
        },
        {
            # No `source`: the test subscribes the bucket itself (MinIO is on loopback).
            "apiVersion": "kubelambda.dev/v1alpha1",
            "kind": "Trigger",
            "metadata": {"name": f"{NAME}-bucket", "namespace": FUNCTIONS_NAMESPACE},
            "spec": {
                "function": NAME,
                "bucket": {"bucket": BUCKET, "events": ["s3:ObjectCreated:*"]},
                "delivery": {"retries": 2, "backoffSeconds": 1},
            },
        },
    ]


class Uploader(threading.Thread):
    """Puts `UPLOADS` objects at a steady pace; `uploaded` lists the keys MinIO stored."""

    def __init__(self, client: Any) -> None:
        super().__init__(name="uploader", daemon=True)
        self.client = client
        self.uploaded: list[str] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for n in range(UPLOADS):
                key = f"in/{n:04d}.txt"
                self.client.put_object(Bucket=BUCKET, Key=key, Body=f"object {n}".encode())
                self.uploaded.append(key)
                time.sleep(PACE)  # the pace of the uploads, not a wait for a state
        except BaseException as exc:  # reported by the test, whatever it is
            self.error = exc


def test_no_bucket_event_is_lost_across_a_gateway_kill(
    e2e_cluster: Cluster,
    installed: Installed,
    storage: Minio,
    reports: tuple[Recorder, Relay],
    capsys: pytest.CaptureFixture[str],
) -> None:
    made, to_recorder = reports
    s3 = storage.client()
    s3.create_bucket(Bucket=BUCKET)
    e2e_cluster.apply(manifests(to_recorder.url, e2e_cluster.node_ip))
    wait_function_ready(e2e_cluster, NAME)
    notify_uploads(s3, BUCKET, installed.s3_webhook_arn)
    # One upload first, through the whole path: MinIO's webhook, the broker, the dispatcher.
    s3.put_object(Bucket=BUCKET, Key="warmup.txt", Body=b"warm")
    wait_for(lambda: "warmup.txt" in made.ids(), what="the first upload handled", timeout=120)

    began = time.monotonic()
    uploader = Uploader(s3)
    uploader.start()
    wait_for(
        lambda: len(uploader.uploaded) >= KILL_AFTER or not uploader.is_alive(),
        what=f"{KILL_AFTER} uploads",
        timeout=120,
    )
    killed_at = len(uploader.uploaded)
    force_delete(e2e_cluster, ("gateway",))
    replaced_at = len(uploader.uploaded)
    uploader.join(timeout=UPLOADS * PACE + 300)
    assert not uploader.is_alive(), "the uploads did not finish"
    assert uploader.error is None, repr(uploader.error)
    assert len(uploader.uploaded) == UPLOADS

    uploaded = set(uploader.uploaded)

    def all_handled() -> bool:
        fail_on_crash(e2e_cluster)
        return uploaded <= set(made.ids())

    deadline = time.monotonic() + HANDLED_TIMEOUT
    while not all_handled() and time.monotonic() < deadline:
        time.sleep(0.5)  # polling the recorder until the deadline
    seen = Counter(made.ids())
    lost = uploaded - seen.keys()
    duplicates = sum(count - 1 for count in seen.values())
    with capsys.disabled():
        print(
            f"\nbucket uploads across a gateway kill: uploaded {len(uploaded)} "
            f"handled {len(uploaded & seen.keys())} lost {len(lost)} duplicates {duplicates}; "
            f"gateway killed after upload {killed_at}, new pod Ready after {replaced_at}, "
            f"all handled {time.monotonic() - began:.0f} s after the first upload"
        )
    assert not lost, (
        f"{len(lost)} uploads never handled, e.g. {sorted(lost)[:5]}\n"
        f"{logs(e2e_cluster, ('gateway', 'dispatcher'))}"
    )
