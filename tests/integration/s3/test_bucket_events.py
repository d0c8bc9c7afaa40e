"""Bucket events end to end: MinIO's webhook target posts to local mode's gateway, which invokes
the functions of the matching bucket Triggers; local mode subscribed the buckets itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

from integration.s3.events import (
    S3_PATH,
    TOKEN,
    Setup,
    bucket,
    bucket_trigger,
    example_manifests,
    metric,
    recorded,
    recorder,
    wait_for_keys,
    write_manifests,
)
from support.local import LocalMode


def test_an_upload_reaches_the_example_in_aws_shape_and_its_object_appears(
    setup: Setup, local_at: Callable[..., LocalMode], tmp_path: Path
) -> None:
    name = bucket(setup, "uploads")
    documents = [
        *example_manifests(setup, bucket_name=name),
        recorder(setup),
        bucket_trigger(setup, "recorder-bucket", "recorder", bucket=name, prefix="incoming/"),
    ]
    local = local_at(write_manifests(tmp_path / "uploads.yaml", documents), "--s3-token", TOKEN)
    local.wait_for_line(f"bucket {name} on {setup.minio.endpoint} notifies")
    s3 = setup.minio.client()
    configuration = s3.get_bucket_notification_configuration(Bucket=name)
    assert sorted(q["Id"] for q in configuration["QueueConfigurations"]) == [
        "kubelambda-local.default.recorder-bucket",
        "kubelambda-local.default.uploads-bucket",
    ]

    body = b"a day at the beach"
    put = s3.put_object(Bucket=name, Key="incoming/holiday photos/día 1.txt", Body=body)

    (processed,) = wait_for_keys(setup, name, "processed/", 1)
    assert processed == "processed/holiday photos/día 1.txt.json"
    summary = json.loads(s3.get_object(Bucket=name, Key=processed)["Body"].read())
    assert summary["source"] == "incoming/holiday photos/día 1.txt"
    assert summary["event"] == "ObjectCreated:Put"
    assert summary["size"] == len(body)
    assert summary["eTag"] == put["ETag"].strip('"')

    (event,) = recorded(setup, name, 1)
    (record,) = event["Records"]
    assert record["eventSource"] == "aws:s3"
    assert record["eventVersion"] == "2.1"
    assert record["eventName"] == "ObjectCreated:Put"
    assert record["awsRegion"] == setup.minio.region
    assert record["s3"]["bucket"]["name"] == name
    assert record["s3"]["bucket"]["arn"] == f"arn:aws:s3:::{name}"
    obj = record["s3"]["object"]
    assert obj["key"] == "incoming/holiday+photos/d%C3%ADa+1.txt"  # as AWS encodes it
    assert obj["size"] == len(body)
    assert obj["eTag"] == put["ETag"].strip('"')
    assert set(record) >= {"eventTime", "userIdentity", "requestParameters", "responseElements"}

    local.stop()  # no --state-dir: local mode takes its subscriptions away again
    assert (
        s3.get_bucket_notification_configuration(Bucket=name).get("QueueConfigurations", []) == []
    )


def test_objects_outside_the_filters_trigger_nothing(
    setup: Setup, local_at: Callable[..., LocalMode], tmp_path: Path
) -> None:
    name = bucket(setup, "filters")
    documents = [
        recorder(setup),
        bucket_trigger(
            setup,
            "csv",
            "recorder",
            bucket=name,
            prefix="in/",
            suffix=".csv",
            events=["s3:ObjectCreated:Put"],
        ),
        bucket_trigger(
            setup,
            "removed",
            "recorder",
            bucket=name,
            prefix="in/",
            events=["s3:ObjectRemoved:*"],
        ),
    ]
    local = local_at(write_manifests(tmp_path / "filters.yaml", documents), "--s3-token", TOKEN)
    s3 = setup.minio.client()
    for key in ("out/a.csv", "in/a.txt", "in/sub/b.csv", "in/c.csv.bak"):
        s3.put_object(Bucket=name, Key=key, Body=b"x")
    s3.delete_object(Bucket=name, Key="in/a.txt")  # the last event: it matches "removed"

    events = recorded(setup, name, 2)
    seen = sorted(
        (e["Records"][0]["eventName"], e["Records"][0]["s3"]["object"]["key"]) for e in events
    )
    assert seen == [("ObjectCreated:Put", "in/sub/b.csv"), ("ObjectRemoved:Delete", "in/a.txt")]
    # MinIO sends its queue in order, so by now every earlier event would have arrived:
    # the gateway got exactly these two notifications.
    assert metric(local, "kubelambda_gateway_s3_events_received_total", function="recorder") == 2
    posts = metric(local, "kubelambda_gateway_requests_total", function="", code="200")
    assert posts == 2


def test_the_probe_and_the_token(
    setup: Setup, local_at: Callable[..., LocalMode], tmp_path: Path
) -> None:
    name = bucket(setup, "token")
    documents = [recorder(setup), bucket_trigger(setup, "t", "recorder", bucket=name)]
    local = local_at(write_manifests(tmp_path / "token.yaml", documents), "--s3-token", TOKEN)
    assert local.client.head(S3_PATH).status_code == 200
    notification = {
        "Records": [
            {
                "eventName": "s3:ObjectCreated:Put",
                "eventSource": "minio:s3",
                "s3": {"bucket": {"name": name}, "object": {"key": "forged", "size": 1}},
            }
        ]
    }
    for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": TOKEN}):
        answer = local.client.post(S3_PATH, json=notification, headers=headers)
        assert answer.status_code == 401, headers
        assert answer.json()["errorType"] == "UnauthorizedException"
    answer = local.client.post(
        S3_PATH, json=notification, headers={"authorization": f"Bearer {TOKEN}"}
    )
    assert answer.status_code == 200
    assert answer.json() == {"records": 1, "deliveries": 1}
    (event,) = recorded(setup, name, 1)
    assert event["Records"][0]["s3"]["object"]["key"] == "forged"


FLAKY = textwrap.dedent(
    """\
    def handler(event, context):
        key = event["Records"][0]["s3"]["object"]["key"]
        print("attempt", key, context.aws_request_id)
        raise ValueError("cannot process " + key)
    """
)


def test_a_failing_function_is_retried_then_dead_lettered(
    setup: Setup, local_at: Callable[..., LocalMode], tmp_path: Path
) -> None:
    name = bucket(setup, "failing")
    flaky = {
        "apiVersion": "kubelambda.dev/v1alpha1",
        "kind": "Function",
        "metadata": {"name": "flaky"},
        "spec": {
            "runtime": "python3.12",
            "handler": "app.handler",
            "code": {"inline": {"files": {"app.py": FLAKY}}},
        },
    }
    trigger = bucket_trigger(setup, "flaky-bucket", "flaky", bucket=name, prefix="in/")
    trigger["spec"]["delivery"] = {
        "retries": 1,
        "backoffSeconds": 1,
        "deadLetter": {"function": "failures"},
    }
    documents = [flaky, recorder(setup, "failures"), trigger]
    local = local_at(write_manifests(tmp_path / "failing.yaml", documents), "--s3-token", TOKEN)
    setup.minio.client().put_object(Bucket=name, Key="in/broken.csv", Body=b"x")

    (letter,) = recorded(setup, name, 1)
    context = letter["requestContext"]
    assert context["condition"] == "RetriesExhausted"
    assert context["approximateInvokeCount"] == 2  # the Trigger's retries: 1
    assert context["functionArn"].endswith(":function:flaky:$LATEST")
    (record,) = letter["requestPayload"]["Records"]
    assert record["eventSource"] == "aws:s3"
    assert record["s3"]["object"]["key"] == "in/broken.csv"
    assert letter["responsePayload"]["errorMessage"] == "cannot process in/broken.csv"
    attempts = [line for line in local.lines if "attempt in/broken.csv" in line]
    assert len(attempts) == 2
    assert len({line.split()[-1] for line in attempts}) == 1  # one request id for all tries


def test_a_subscription_the_server_refuses_stops_local_mode(setup: Setup, tmp_path: Path) -> None:
    documents = [recorder(setup), bucket_trigger(setup, "t", "recorder", bucket="no-such-bucket")]
    manifest = write_manifests(tmp_path / "missing.yaml", documents)
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": setup.minio.access_key,
        "AWS_SECRET_ACCESS_KEY": setup.minio.secret_key,
    }
    done = subprocess.run(
        [sys.executable, "-m", "kubelambda.cli", "local", str(manifest), "--port", "0"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"bucket no-such-bucket on {setup.minio.endpoint}: NoSuchBucket" in done.stderr
