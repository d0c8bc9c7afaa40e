"""buckets.py: adding and removing kubelambda's entry of a bucket's notification configuration."""

from __future__ import annotations

from typing import Any

from kubelambda.controller.buckets import (
    Subscription,
    subscription_id,
    with_subscription,
    without_subscription,
)

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


def test_the_entry_is_added_next_to_everything_else() -> None:
    updated = with_subscription(OTHERS, SUB)
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


def test_an_entry_already_there_needs_no_write() -> None:
    once = with_subscription(OTHERS, SUB)
    assert once is not None
    assert with_subscription(once, SUB) is None


def test_a_server_that_drops_ids_and_capitalises_rule_names_still_matches() -> None:
    entry = SUB.queue_configuration()
    del entry["Id"]
    entry["Filter"]["Key"]["FilterRules"] = [
        {"Name": "Suffix", "Value": ".jpg"},
        {"Name": "Prefix", "Value": "in/"},
    ]
    assert with_subscription({"QueueConfigurations": [entry]}, SUB) is None
    assert without_subscription({"QueueConfigurations": [entry]}, SUB) == {
        "QueueConfigurations": []
    }


def test_a_changed_filter_replaces_the_entry() -> None:
    once = with_subscription({}, SUB)
    assert once is not None
    moved = Subscription(id=SUB.id, queue_arn=SUB.queue_arn, events=SUB.events, prefix="new/")
    updated = with_subscription(once, moved)
    assert updated is not None
    assert [q["Filter"]["Key"]["FilterRules"] for q in updated["QueueConfigurations"]] == [
        [{"Name": "prefix", "Value": "new/"}]
    ]


def test_removing_keeps_the_others_and_is_a_no_op_when_gone() -> None:
    once = with_subscription(OTHERS, SUB)
    assert once is not None
    removed = without_subscription(once, SUB)
    assert removed is not None
    assert removed["QueueConfigurations"] == OTHERS["QueueConfigurations"]
    assert removed["TopicConfigurations"] == OTHERS["TopicConfigurations"]
    assert without_subscription(removed, SUB) is None


def test_an_equal_entry_of_another_trigger_is_not_ours() -> None:
    other = SUB.queue_configuration() | {"Id": "kubelambda.team-b.thumbs"}
    assert without_subscription({"QueueConfigurations": [other]}, SUB) is None
    added = with_subscription({"QueueConfigurations": [other]}, SUB)
    assert added is not None and len(added["QueueConfigurations"]) == 2
