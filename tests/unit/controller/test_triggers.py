"""triggers.TriggerReconciler on FakeCluster and FakeNotifications: the Function check, bucket
subscriptions behind a finalizer, and unsubscribing on deletion."""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from kubelambda.api.subscriptions import BucketError, FakeNotifications
from kubelambda.controller.cluster import FakeCluster
from kubelambda.controller.config import FIELD_MANAGER, ControllerConfig
from kubelambda.controller.subscriber import FINALIZER, UNSUBSCRIBE_DEADLINE_SECONDS
from kubelambda.platforms.kubernetes.kinds import DEPLOYMENT, FUNCTION, TRIGGER
from unit.controller.conftest import NOW
from unit.controller.reconciling import DeletedInFlightCluster, make_operator, settle

MakeFunction = Callable[..., dict[str, Any]]
NS = "team-a"
ENDPOINT = "http://minio.storage:9000"


def trigger(name: str = "hello-http", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kubelambda.dev/v1alpha1",
        "kind": "Trigger",
        "metadata": {"name": name, "namespace": NS, "generation": 1},
        "spec": {"function": "hello", **(spec or {"http": {"path": "/hello"}})},
    }


def bucket_trigger() -> dict[str, Any]:
    return trigger(
        "thumbs",
        bucket={
            "bucket": "photos",
            "prefix": "in/",
            "source": {"endpoint": ENDPOINT, "credentialsSecret": {"name": "minio"}},
        },
    )


SECRET = {
    "apiVersion": "v1",
    "kind": "Secret",
    "metadata": {"name": "minio", "namespace": NS},
    "data": {
        "AWS_ACCESS_KEY_ID": base64.b64encode(b"key").decode(),
        "AWS_SECRET_ACCESS_KEY": base64.b64encode(b"secret").decode(),
    },
}


def ready(cluster: FakeCluster, name: str) -> dict[str, Any]:
    found = cluster.stored(TRIGGER, namespace=NS, name=name)
    assert found is not None
    return next(c for c in found["status"]["conditions"] if c["type"] == "Ready")


def test_an_http_trigger_is_published_with_its_url(
    make_function: MakeFunction, config: ControllerConfig
) -> None:
    cluster, operator = make_operator(config, make_function(), trigger())
    settle(operator)
    condition = ready(cluster, "hello-http")
    assert (condition["status"], condition["reason"]) == ("True", "Published")
    status = cluster.stored(TRIGGER, namespace=NS, name="hello-http")["status"]  # type: ignore[index]
    assert status["url"] == "http://gateway.kubelambda.svc/hello"
    assert status["source"] == "http ANY /hello"


def test_a_trigger_without_its_function_waits_for_it(
    make_function: MakeFunction, config: ControllerConfig
) -> None:
    cluster, operator = make_operator(config, trigger())
    settle(operator)
    condition = ready(cluster, "hello-http")
    assert (condition["status"], condition["reason"]) == ("False", "FunctionNotFound")
    assert condition["message"] == "Function hello does not exist in namespace team-a"
    assert ("Warning", "FunctionNotFound") in [(e.type, e.reason) for e in cluster.events]

    operator.function_event("ADDED", cluster.put(make_function()))
    settle(operator)
    assert ready(cluster, "hello-http")["reason"] == "Published"

    function = cluster.stored(FUNCTION, namespace=NS, name="hello")
    assert function is not None
    operator.function_event("DELETED", function)
    cluster.objects.pop(("functions.kubelambda.dev", NS, "hello"))
    settle(operator)
    assert ready(cluster, "hello-http")["reason"] == "FunctionNotFound"


def test_a_function_listed_after_its_trigger_is_still_reconciled(
    make_function: MakeFunction, config: ControllerConfig
) -> None:
    """The Trigger asks the API server for a Function its watch has not shown yet (after a
    restart, or when both are applied at once); the Function's event must still count."""
    cluster, operator = make_operator(config)
    function = cluster.put(make_function())
    operator.trigger_event(None, cluster.put(trigger()))
    settle(operator)
    assert ready(cluster, "hello-http")["reason"] == "Published"

    operator.function_event(None, function)
    settle(operator)
    assert cluster.stored(DEPLOYMENT, namespace=NS, name="hello") is not None


def test_a_bucket_with_a_source_is_subscribed_behind_a_finalizer(
    make_function: MakeFunction, config: ControllerConfig
) -> None:
    notifications = FakeNotifications()
    cluster = FakeCluster()
    cluster.put(SECRET)
    cluster, operator = make_operator(
        config, make_function(), bucket_trigger(), cluster=cluster, notifications=notifications
    )
    settle(operator)
    stored = cluster.stored(TRIGGER, namespace=NS, name="thumbs")
    assert stored is not None
    assert stored["metadata"]["finalizers"] == [FINALIZER]
    assert ready(cluster, "thumbs")["reason"] == "Subscribed"
    [entry] = notifications.configurations[(ENDPOINT, "photos")]["QueueConfigurations"]
    assert entry["Id"] == "kubelambda.team-a.thumbs"
    assert entry["QueueArn"] == config.s3_webhook_arn

    # Reconciling again does not go back to the S3 server (until the resync period passes).
    calls = len(notifications.calls)
    operator.resync()
    settle(operator)
    assert len(notifications.calls) == calls

    # Deletion: unsubscribe, then let the Trigger go.
    stored["metadata"]["deletionTimestamp"] = "2026-01-02T03:04:05Z"
    operator.trigger_event("MODIFIED", cluster.put(stored))
    settle(operator)
    assert notifications.configurations[(ENDPOINT, "photos")]["QueueConfigurations"] == []
    after = cluster.stored(TRIGGER, namespace=NS, name="thumbs")
    assert after is not None and after["metadata"]["finalizers"] == []
    assert ("Normal", "Unsubscribed") in [(e.type, e.reason) for e in cluster.events]


def test_a_trigger_let_go_before_the_answer_to_its_release_is_forgotten(
    make_function: MakeFunction, config: ControllerConfig
) -> None:
    cluster = DeletedInFlightCluster(kind=TRIGGER, write=FIELD_MANAGER)
    cluster.put(SECRET)
    cluster, operator = make_operator(
        config,
        make_function(),
        bucket_trigger(),
        cluster=cluster,
        notifications=FakeNotifications(),
    )
    settle(operator)
    stored = cluster.stored(TRIGGER, namespace=NS, name="thumbs")
    assert stored is not None and stored["metadata"]["finalizers"] == [FINALIZER]

    # The API server deletes the Trigger as its last finalizer goes; the watch says so first.
    cluster.operator = operator
    stored["metadata"]["deletionTimestamp"] = "2026-01-02T03:04:05Z"
    operator.trigger_event("MODIFIED", cluster.put(stored))
    settle(operator)

    assert cluster.deleted == [(TRIGGER, "thumbs")]
    assert operator.store.get(TRIGGER, namespace=NS, name="thumbs") is None


def test_an_http_trigger_gets_no_finalizer(
    make_function: MakeFunction, config: ControllerConfig
) -> None:
    cluster, operator = make_operator(config, make_function(), trigger())
    settle(operator)
    found = cluster.stored(TRIGGER, namespace=NS, name="hello-http")
    assert found is not None and "finalizers" not in found["metadata"]


def test_a_missing_secret_or_server_error_is_reported(
    make_function: MakeFunction, config: ControllerConfig
) -> None:
    notifications = FakeNotifications()
    cluster, operator = make_operator(
        config, make_function(), bucket_trigger(), notifications=notifications
    )
    results = settle(operator)
    condition = ready(cluster, "thumbs")
    assert (condition["status"], condition["reason"]) == ("False", "SubscribeFailed")
    assert "Secret minio" in condition["message"]
    assert results[("Trigger", NS, "thumbs")].requeue_after

    cluster.put(SECRET)
    notifications.error = BucketError("http://minio.storage:9000 bucket photos: NoSuchBucket: gone")
    operator.resync()
    settle(operator)
    assert "NoSuchBucket" in ready(cluster, "thumbs")["message"]


@pytest.mark.parametrize(
    ("age", "released"), [(10, False), (UNSUBSCRIBE_DEADLINE_SECONDS + 1, True)]
)
def test_an_unreachable_server_holds_deletion_only_for_a_while(
    make_function: MakeFunction, config: ControllerConfig, age: float, released: bool
) -> None:
    notifications = FakeNotifications()
    cluster = FakeCluster()
    cluster.put(SECRET)
    cluster, operator = make_operator(
        config, make_function(), bucket_trigger(), cluster=cluster, notifications=notifications
    )
    settle(operator)
    notifications.error = BucketError("connection refused")
    stored = cluster.stored(TRIGGER, namespace=NS, name="thumbs")
    assert stored is not None
    since = NOW - timedelta(seconds=age)
    stored["metadata"]["deletionTimestamp"] = since.strftime("%Y-%m-%dT%H:%M:%SZ")
    operator.trigger_event("MODIFIED", cluster.put(stored))
    settle(operator)
    after = cluster.stored(TRIGGER, namespace=NS, name="thumbs")
    assert after is not None
    assert (after["metadata"]["finalizers"] == []) is released
    assert (
        ("Warning", "UnsubscribeFailed") in [(e.type, e.reason) for e in cluster.events]
    ) is released


def test_an_invalid_trigger_is_reported(config: ControllerConfig) -> None:
    bad = trigger(http={"path": "/_kubelambda/x"})
    cluster, operator = make_operator(config, bad)
    settle(operator)
    condition = ready(cluster, "hello-http")
    assert condition["reason"] == "InvalidSpec" and "spec.http.path" in condition["message"]


def test_a_trigger_that_loses_its_path_says_so_and_is_routed_once_the_owner_goes(
    make_function: MakeFunction, config: ControllerConfig
) -> None:
    """The gateway leaves a Trigger out when another namespace holds its path (api.routes);
    the Trigger's status tells its owner why, and clears when the older claim is deleted."""
    other = make_function()
    other["metadata"]["namespace"] = "other-team"
    owner = trigger("charge", http={"path": "/payments"})
    owner["metadata"]["creationTimestamp"] = "2026-12-01T10:00:00Z"
    late = trigger("steal", http={"path": "/payments/charge"})
    late["metadata"].update(namespace="other-team", creationTimestamp="2026-12-02T10:00:00Z")
    cluster, operator = make_operator(config, make_function(), other, late, owner)
    settle(operator)
    assert ready(cluster, "charge")["reason"] == "Published"
    stolen = cluster.stored(TRIGGER, namespace="other-team", name="steal")
    assert stolen is not None
    [condition] = [c for c in stolen["status"]["conditions"] if c["type"] == "Ready"]
    assert (condition["status"], condition["reason"]) == ("False", "RouteConflict")
    assert "belongs to namespace team-a (Trigger team-a/charge" in condition["message"]
    assert "url" not in stolen["status"]
    assert ("Warning", "RouteConflict") in [(e.type, e.reason) for e in cluster.events]

    held = cluster.stored(TRIGGER, namespace=NS, name="charge")
    assert held is not None
    operator.trigger_event("DELETED", held)
    cluster.objects.pop(("triggers.kubelambda.dev", NS, "charge"))
    settle(operator)  # only the owner's deletion was queued: the loser is re-decided too
    stolen = cluster.stored(TRIGGER, namespace="other-team", name="steal")
    assert stolen is not None
    [condition] = [c for c in stolen["status"]["conditions"] if c["type"] == "Ready"]
    assert condition["reason"] == "Published"
