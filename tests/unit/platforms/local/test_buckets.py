"""Local mode's bucket subscriptions: which Triggers subscribe, grouped by server and bucket."""

from __future__ import annotations

from typing import Any

import pytest

from kubelambda.api import BucketSource, S3Source, Trigger
from kubelambda.commands.local_options import build_parser
from kubelambda.platforms.local.buckets import DEFAULT_WEBHOOK_ARN, subscriptions

MINIO = "http://127.0.0.1:9000"
ARN = "arn:minio:sqs::KUBELAMBDA:webhook"


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


def test_only_bucket_triggers_with_a_source_subscribe_grouped_by_bucket() -> None:
    groups = subscriptions(
        [
            trigger("uploads", "media", prefix="in/", suffix=".jpg"),
            trigger("no-source", "media", source=False),
            trigger("more", "media"),
            trigger("docs", "docs"),
        ],
        region="eu-west-1",
        queue_arn=ARN,
    )
    media, docs = groups
    assert (media.bucket, media.server.endpoint, media.server.region) == (
        "media",
        MINIO,
        "eu-west-1",  # the Trigger's source names no region: local mode's
    )
    # No keys: boto3's default chain (the environment) is local mode's credentials.
    assert (media.server.access_key, media.server.secret_key) == (None, None)
    assert media.triggers == ("default/uploads", "default/more")
    assert [s.id for s in media.subscriptions] == [
        "kubelambda-local.default.uploads",
        "kubelambda-local.default.more",
    ]
    assert media.subscriptions[0].entry()["QueueArn"] == ARN
    assert (media.subscriptions[0].prefix, media.subscriptions[0].suffix) == ("in/", ".jpg")
    assert docs.triggers == ("default/docs",)


def test_the_help_names_the_default_webhook_arn(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    assert DEFAULT_WEBHOOK_ARN in "".join(capsys.readouterr().out.split())
