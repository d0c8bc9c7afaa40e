"""kube/events.py: an Event names its object, and long messages are cut to what the server takes."""

from __future__ import annotations

from datetime import UTC, datetime

from kubelambda.platforms.kubernetes.events import MAX_MESSAGE, event_manifest

FUNCTION = {
    "apiVersion": "kubelambda.dev/v1alpha1",
    "kind": "Function",
    "metadata": {"name": "hello", "namespace": "team-a", "uid": "u-1"},
}


def test_event_about_a_function() -> None:
    event = event_manifest(
        FUNCTION,
        type="Warning",
        reason="InvalidSpec",
        message="spec.handler: bad",
        component="kubelambda-controller",
        now=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    )
    assert event["metadata"] == {"generateName": "hello.", "namespace": "team-a"}
    assert event["involvedObject"] == {
        "apiVersion": "kubelambda.dev/v1alpha1",
        "kind": "Function",
        "name": "hello",
        "namespace": "team-a",
        "uid": "u-1",
    }
    assert (event["type"], event["reason"], event["message"]) == (
        "Warning",
        "InvalidSpec",
        "spec.handler: bad",
    )
    assert event["firstTimestamp"] == event["lastTimestamp"] == "2026-01-02T03:04:05Z"


def test_long_messages_are_cut() -> None:
    event = event_manifest(
        FUNCTION,
        type="Normal",
        reason="Applied",
        message="x" * 5000,
        component="c",
        now=datetime.now(UTC),
    )
    assert len(event["message"]) == MAX_MESSAGE
    assert event["message"].endswith("…")
