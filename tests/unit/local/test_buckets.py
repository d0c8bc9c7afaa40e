"""Local mode's bucket subscriptions: which Triggers subscribe, how the bucket's configuration
changes (other entries kept), and the errors that name what to fix."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from kubelambda.api import BucketSource, S3Source, Trigger
from kubelambda.cli import build_parser
from kubelambda.local.buckets import (
    DEFAULT_WEBHOOK_ARN,
    Boto3Notifications,
    FakeNotifications,
    SubscriptionError,
    reconfigured,
    subscribe,
    subscriptions,
    unsubscribe,
)

pytestmark = pytest.mark.anyio

MINIO = "http://127.0.0.1:9000"
ARN = "arn:minio:sqs::KUBELAMBDA:webhook"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def trigger(name: str, bucket: str, *, source: bool = True, **filters: Any) -> Trigger:
    return Trigger(
        name=name,
        namespace="default",
        function="fn",
        source=BucketSource(
            bucket=bucket,
            source=S3Source(endpoint=MINIO, credentials_secret="s3-creds") if source else None,
            **filters,
        ),
        delivery=None,
    )


FOREIGN = {"Id": "someone-else", "QueueArn": "arn:minio:sqs::OTHER:webhook", "Events": ["s3:*"]}


def test_only_bucket_triggers_with_a_source_subscribe() -> None:
    found = subscriptions(
        [
            trigger("uploads", "media", prefix="in/", suffix=".jpg"),
            trigger("no-source", "media", source=False),
        ],
        region="eu-west-1",
    )
    (sub,) = found
    assert (sub.id, sub.bucket, sub.endpoint, sub.region) == (
        "kubelambda-local.default.uploads",
        "media",
        MINIO,
        "eu-west-1",  # the Trigger's source names no region: local mode's
    )
    assert sub.queue_configuration(ARN) == {
        "Id": "kubelambda-local.default.uploads",
        "QueueArn": ARN,
        "Events": ["s3:ObjectCreated:*"],
        "Filter": {
            "Key": {
                "FilterRules": [
                    {"Name": "prefix", "Value": "in/"},
                    {"Name": "suffix", "Value": ".jpg"},
                ]
            }
        },
    }


def test_an_unfiltered_subscription_has_no_filter() -> None:
    (sub,) = subscriptions([trigger("all", "media")], region="us-east-1")
    assert "Filter" not in sub.queue_configuration(ARN)


def test_reconfigured_replaces_ours_and_keeps_the_rest() -> None:
    ours_before = {"Id": "kubelambda-local.default.a", "QueueArn": ARN, "Events": ["s3:Old"]}
    topic = {"TopicArn": "arn:aws:sns:x", "Events": ["s3:ObjectRemoved:*"]}
    current = {"QueueConfigurations": [FOREIGN, ours_before], "TopicConfigurations": [topic]}
    ours_now = {"Id": "kubelambda-local.default.a", "QueueArn": ARN, "Events": ["s3:New"]}
    updated = reconfigured(current, ids=["kubelambda-local.default.a"], entries=[ours_now])
    assert updated == {"QueueConfigurations": [FOREIGN, ours_now], "TopicConfigurations": [topic]}
    assert current["QueueConfigurations"][1] is ours_before  # the input is left alone
    removed = reconfigured(updated, ids=["kubelambda-local.default.a"])
    assert removed["QueueConfigurations"] == [FOREIGN]


async def test_subscribe_twice_leaves_one_entry_per_trigger_and_one_write_per_bucket() -> None:
    fake = FakeNotifications(configurations={(MINIO, "media"): {"QueueConfigurations": [FOREIGN]}})
    subs = subscriptions(
        [
            trigger("a", "media", prefix="a/"),
            trigger("b", "media", prefix="b/"),
            trigger("c", "docs"),
        ],
        region="us-east-1",
    )
    await subscribe(subs, notifications=fake, queue_arn=ARN)
    await subscribe(subs, notifications=fake, queue_arn=ARN)  # a restart
    assert fake.puts == 4  # two buckets, twice
    media = fake.configurations[(MINIO, "media")]["QueueConfigurations"]
    assert [q["Id"] for q in media] == [
        "someone-else",
        "kubelambda-local.default.a",
        "kubelambda-local.default.b",
    ]
    await unsubscribe(subs, notifications=fake)
    assert fake.configurations[(MINIO, "media")]["QueueConfigurations"] == [FOREIGN]
    assert fake.configurations[(MINIO, "docs")]["QueueConfigurations"] == []
    await unsubscribe(subs, notifications=fake)
    assert fake.puts == 6  # nothing of ours left: nothing written


def test_the_help_names_the_default_webhook_arn(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["local", "--help"])
    assert DEFAULT_WEBHOOK_ARN in "".join(capsys.readouterr().out.split())


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_without_credentials_the_error_says_what_to_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/config")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    with pytest.raises(SubscriptionError, match="set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"):
        await Boto3Notifications().get(endpoint=endpoint, region="us-east-1", bucket="media")


async def test_an_unreachable_server_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    with pytest.raises(SubscriptionError, match=f"bucket media on {endpoint}: .*Could not connect"):
        await Boto3Notifications().get(endpoint=endpoint, region="us-east-1", bucket="media")
