"""api/subscriptions.py: a Trigger's entry in a bucket's notification configuration, added and
removed with every other entry left as it was, the same for the controller and local mode."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from kubelambda.api import parse_trigger
from kubelambda.api.subscriptions import (
    BucketError,
    FakeNotifications,
    S3Server,
    Subscription,
    subscribe,
    subscription_id,
    unsubscribe,
    with_subscriptions,
    without_subscriptions,
)
from kubelambda.controller.config import ControllerConfig
from kubelambda.controller.subscriber import FINALIZER
from kubelambda.platforms.kubernetes.kinds import TRIGGER
from kubelambda.platforms.local.buckets import subscriptions
from unit.controller.conftest import HELLO
from unit.controller.reconciling import make_operator, settle
from unit.controller.test_triggers import ENDPOINT, SECRET, bucket_trigger

SUB = Subscription(
    id=subscription_id(namespace="team-a", name="thumbs"),
    queue_arn="arn:minio:sqs::kubelambda:webhook",
    events=("s3:ObjectCreated:*",),
    prefix="in/",
    suffix=".jpg",
)
OTHERS: dict[str, Any] = {
    "TopicConfigurations": [
        {"Id": "t", "TopicArn": "arn:aws:sns:x", "Events": ["s3:ObjectRemoved:*"]}
    ],
    "QueueConfigurations": [
        {"Id": "theirs", "QueueArn": "arn:other", "Events": ["s3:ObjectCreated:*"]}
    ],
    "ResponseMetadata": {"HTTPStatusCode": 200},
}
SERVER = S3Server(endpoint="http://127.0.0.1:9000", region="us-east-1")


def test_ids_name_the_owner_namespace_and_trigger() -> None:
    assert SUB.id == "kubelambda.team-a.thumbs"
    local = subscription_id(namespace="team-a", name="thumbs", owner="kubelambda-local")
    assert local == "kubelambda-local.team-a.thumbs"


def test_the_entry_is_added_next_to_everything_else() -> None:
    updated = with_subscriptions(OTHERS, [SUB])
    assert updated is not None
    assert "ResponseMetadata" not in updated
    assert updated["TopicConfigurations"] == OTHERS["TopicConfigurations"]
    assert updated["QueueConfigurations"] == [
        OTHERS["QueueConfigurations"][0],
        {
            "Id": "kubelambda.team-a.thumbs",
            "QueueArn": "arn:minio:sqs::kubelambda:webhook",
            "Events": ["s3:ObjectCreated:*"],
            "Filter": {
                "Key": {
                    "FilterRules": [
                        {"Name": "prefix", "Value": "in/"},
                        {"Name": "suffix", "Value": ".jpg"},
                    ]
                }
            },
        },
    ]


def test_an_unfiltered_subscription_has_no_filter() -> None:
    entry = Subscription(id="x", queue_arn="arn", events=("s3:*",)).entry()
    assert entry == {"Id": "x", "QueueArn": "arn", "Events": ["s3:*"]}


def test_an_entry_already_there_needs_no_write() -> None:
    once = with_subscriptions(OTHERS, [SUB])
    assert once is not None
    assert with_subscriptions(once, [SUB]) is None


def test_a_server_that_drops_ids_and_capitalises_rule_names_still_matches() -> None:
    entry = SUB.entry()
    del entry["Id"]
    entry["Filter"]["Key"]["FilterRules"] = [
        {"Name": "Suffix", "Value": ".jpg"},
        {"Name": "Prefix", "Value": "in/"},
    ]
    assert with_subscriptions({"QueueConfigurations": [entry]}, [SUB]) is None
    assert without_subscriptions({"QueueConfigurations": [entry]}, [SUB]) == {
        "QueueConfigurations": []
    }


def test_a_changed_filter_replaces_the_entry() -> None:
    once = with_subscriptions({}, [SUB])
    assert once is not None
    moved = Subscription(id=SUB.id, queue_arn=SUB.queue_arn, events=SUB.events, prefix="new/")
    updated = with_subscriptions(once, [moved])
    assert updated is not None
    assert [q["Filter"]["Key"]["FilterRules"] for q in updated["QueueConfigurations"]] == [
        [{"Name": "prefix", "Value": "new/"}]
    ]
    assert once["QueueConfigurations"][0]["Filter"]["Key"]["FilterRules"][0]["Value"] == "in/"


def test_removing_keeps_the_others_and_is_a_no_op_when_gone() -> None:
    once = with_subscriptions(OTHERS, [SUB])
    assert once is not None
    removed = without_subscriptions(once, [SUB])
    assert removed is not None
    assert removed["QueueConfigurations"] == OTHERS["QueueConfigurations"]
    assert removed["TopicConfigurations"] == OTHERS["TopicConfigurations"]
    assert without_subscriptions(removed, [SUB]) is None


def test_an_equal_entry_of_another_trigger_is_not_ours() -> None:
    other = SUB.entry() | {"Id": "kubelambda.team-b.thumbs"}
    assert without_subscriptions({"QueueConfigurations": [other]}, [SUB]) is None
    added = with_subscriptions({"QueueConfigurations": [other]}, [SUB])
    assert added is not None and len(added["QueueConfigurations"]) == 2


def test_many_subscriptions_of_one_bucket_are_one_write() -> None:
    second = Subscription(id="kubelambda.team-a.other", queue_arn=SUB.queue_arn, events=("s3:*",))
    fake = FakeNotifications()
    assert asyncio.run(subscribe(fake, SERVER, bucket="media", subscriptions=[SUB, second]))
    assert fake.puts == 1
    ids = [q["Id"] for q in fake.configurations[(SERVER.endpoint, "media")]["QueueConfigurations"]]
    assert ids == [SUB.id, second.id]
    # Subscribing again (a restart, a resync) writes nothing.
    assert not asyncio.run(subscribe(fake, SERVER, bucket="media", subscriptions=[SUB, second]))
    assert fake.puts == 1
    assert asyncio.run(unsubscribe(fake, SERVER, bucket="media", subscriptions=[SUB, second]))
    assert fake.configurations[(SERVER.endpoint, "media")]["QueueConfigurations"] == []
    assert not asyncio.run(unsubscribe(fake, SERVER, bucket="media", subscriptions=[SUB]))
    assert fake.puts == 2


def test_a_bucket_that_is_gone_has_nothing_to_unsubscribe() -> None:
    fake = FakeNotifications(missing={"gone"})
    assert not asyncio.run(unsubscribe(fake, SERVER, bucket="gone", subscriptions=[SUB]))
    # ...but subscribing to it is an error that names the bucket.
    with pytest.raises(BucketError, match="gone"):
        asyncio.run(subscribe(fake, SERVER, bucket="gone", subscriptions=[SUB]))


def test_a_refusing_server_fails_both_ways() -> None:
    fake = FakeNotifications(error=BucketError("AccessDenied"))
    for change in (subscribe, unsubscribe):
        with pytest.raises(BucketError, match="AccessDenied"):
            asyncio.run(change(fake, SERVER, bucket="media", subscriptions=[SUB]))


# --- both platforms, through the same assertions ----------------------------------------

ARN = "arn:minio:sqs::webhook:target"


def _on_a_cluster(fake: FakeNotifications, *, delete: bool) -> None:

    config = ControllerConfig(s3_webhook_arn=ARN)
    cluster, operator = make_operator(config, HELLO, bucket_trigger(), notifications=fake)
    cluster.put(SECRET)
    operator.resync()
    settle(operator)
    if delete:
        stored = cluster.stored(TRIGGER, namespace="team-a", name="thumbs")
        assert stored is not None and stored["metadata"]["finalizers"] == [FINALIZER]
        stored["metadata"]["deletionTimestamp"] = "2026-01-02T03:04:05Z"
        operator.trigger_event("MODIFIED", cluster.put(stored))
        settle(operator)
        after = cluster.stored(TRIGGER, namespace="team-a", name="thumbs")
        assert after is not None and after["metadata"]["finalizers"] == []  # let go
        assert "UnsubscribeFailed" not in [event.reason for event in cluster.events]


def _in_local_mode(fake: FakeNotifications, *, delete: bool) -> None:

    [group] = subscriptions([parse_trigger(bucket_trigger())], region="us-east-1", queue_arn=ARN)
    asyncio.run(
        subscribe(fake, group.server, bucket=group.bucket, subscriptions=group.subscriptions)
    )
    if delete:
        changed = asyncio.run(
            unsubscribe(fake, group.server, bucket=group.bucket, subscriptions=group.subscriptions)
        )
        assert not changed


PLATFORMS = {
    "cluster": (_on_a_cluster, "kubelambda"),
    "local": (_in_local_mode, "kubelambda-local"),
}


@pytest.mark.parametrize("platform", PLATFORMS)
def test_both_platforms_write_the_same_entry_keeping_the_others(platform: str) -> None:

    render, owner = PLATFORMS[platform]
    fake = FakeNotifications(configurations={(ENDPOINT, "photos"): dict(OTHERS)})
    render(fake, delete=False)
    configuration = fake.configurations[(ENDPOINT, "photos")]
    assert configuration["TopicConfigurations"] == OTHERS["TopicConfigurations"]
    theirs, ours = configuration["QueueConfigurations"]
    assert theirs == OTHERS["QueueConfigurations"][0]
    assert ours == {
        "Id": f"{owner}.team-a.thumbs",
        "QueueArn": ARN,
        "Events": ["s3:ObjectCreated:*"],
        "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "in/"}]}},
    }


@pytest.mark.parametrize("platform", PLATFORMS)
def test_both_platforms_let_go_of_a_bucket_that_is_gone(platform: str) -> None:
    render, _ = PLATFORMS[platform]
    fake = FakeNotifications()
    original_get = fake.get

    async def get_then_vanish(server: S3Server, *, bucket: str) -> dict[str, Any]:
        if fake.puts:  # subscribed once: the bucket is deleted afterwards
            fake.missing.add(bucket)
        return await original_get(server, bucket=bucket)

    fake.get = get_then_vanish  # type: ignore[method-assign]
    render(fake, delete=True)
