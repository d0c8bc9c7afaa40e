"""triggers.TriggerReconciler with queue and kafka Triggers, and a fake probe: Pending until the
source is first observed, then Ready True (Consuming) with status.consumer, or False naming what
is wrong (a Warning each time it turns False), Unknown while the consumer does not exist yet;
a change of the source is looked at again at once; no bucket subscription, no finalizer."""

from __future__ import annotations

import base64
import copy
import dataclasses
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from kubelambda.api import parse_trigger
from kubelambda.controller.config import ControllerConfig
from kubelambda.controller.resources.status import trigger_source_summary
from kubelambda.delivery.observe import (
    AUTHENTICATION_FAILED,
    BROKER_UNREACHABLE,
    OBSERVE_FAILED,
    STREAM_NOT_FOUND,
    TOPIC_NOT_FOUND,
    Consuming,
    KafkaTarget,
    NotConsumed,
    PartitionLag,
    QueueTarget,
    SourceProblem,
)
from kubelambda.dispatcher.queue import consumer_name
from kubelambda.platforms.kubernetes.kinds import TRIGGER
from unit.controller.conftest import NOW
from unit.controller.reconciling import FakeProbe, look, make_operator, restart, settle

MakeFunction = Callable[..., dict[str, Any]]
NS = "team-a"
KAFKA = {"bootstrapServers": ["kafka:9092"], "topics": ["orders"], "startingPosition": "LATEST"}
QUEUE = {"stream": "ORDERS"}
OBSERVED_AT = NOW.strftime("%Y-%m-%dT%H:%M:%SZ")


def trigger(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kubelambda.dev/v1alpha1",
        "kind": "Trigger",
        "metadata": {"name": "orders", "namespace": NS, "generation": 1},
        "spec": {"function": "hello", **spec},
    }


def secret(name: str, **data: str) -> dict[str, Any]:
    encoded = {key: base64.b64encode(value.encode()).decode() for key, value in data.items()}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": NS},
        "data": encoded,
    }


def status(cluster: Any) -> dict[str, Any]:
    stored = cluster.stored(TRIGGER, namespace=NS, name="orders")
    assert stored is not None
    found: dict[str, Any] = stored["status"]
    return found


def ready(cluster: Any) -> tuple[str, str, str]:
    [condition] = status(cluster)["conditions"]
    return condition["status"], condition["reason"], condition["message"]


def warnings(cluster: Any) -> list[str]:
    return [e.reason for e in cluster.events if e.name == "orders" and e.type == "Warning"]


QUEUE_CONSUMING = Consuming(consumer="kubelambda_team-a_orders", lag=7, position=3)
KAFKA_CONSUMING = Consuming(
    consumer="kubelambda.team-a.orders",
    lag=5,
    partitions=(PartitionLag("orders", 0, 10, 5), PartitionLag("orders", 1, None, 0)),
)


@pytest.mark.parametrize(
    ("spec", "answer", "message", "consumer"),
    [
        (
            {"queue": {"stream": "ORDERS", "subject": "orders.created"}},
            QUEUE_CONSUMING,
            "consumer kubelambda_team-a_orders reads JetStream stream ORDERS, subject"
            " orders.created for Function hello",
            {"name": "kubelambda_team-a_orders", "lag": 7, "position": 3},
        ),
        (
            {"kafka": {**KAFKA, "topics": ["orders", "refunds"]}},
            KAFKA_CONSUMING,
            "consumer group kubelambda.team-a.orders reads Kafka topics orders, refunds for"
            " Function hello",
            {
                "name": "kubelambda.team-a.orders",
                "lag": 5,
                "partitions": [
                    {"topic": "orders", "partition": 0, "offset": 10, "lag": 5},
                    {"topic": "orders", "partition": 1, "lag": 0},
                ],
            },
        ),
    ],
    ids=["queue", "kafka"],
)
def test_a_pulled_source_is_pending_until_observed_then_consuming_with_its_position(
    make_function: MakeFunction,
    config: ControllerConfig,
    spec: dict[str, Any],
    answer: Consuming,
    message: str,
    consumer: dict[str, Any],
) -> None:
    probe = FakeProbe({"ORDERS": answer, "orders": answer})
    cluster, operator = make_operator(config, make_function(), trigger(**spec), probe=probe)
    settle(operator)
    where = message.split(" reads ")[1].removesuffix(" for Function hello")
    assert ready(cluster) == ("Unknown", "Pending", f"{where} for Function hello: not observed yet")
    assert "consumer" not in status(cluster)
    assert probe.looked == []  # the reconcile did not wait on a broker

    look(operator)
    assert ready(cluster) == ("True", "Consuming", message)
    assert status(cluster)["consumer"] == {**consumer, "observedAt": OBSERVED_AT}
    assert status(cluster)["source"] == trigger_source_summary(parse_trigger(trigger(**spec)))
    assert "url" not in status(cluster) and "nextTick" not in status(cluster)
    stored = cluster.stored(TRIGGER, namespace=NS, name="orders")
    assert stored is not None and not stored["metadata"].get("finalizers")
    assert warnings(cluster) == []


@pytest.mark.parametrize(
    ("spec", "reason", "message"),
    [
        (
            {"queue": QUEUE},
            STREAM_NOT_FOUND,
            "JetStream stream ORDERS does not exist on NATS at nats://x",
        ),
        ({"kafka": KAFKA}, TOPIC_NOT_FOUND, "Kafka topic orders does not exist on Kafka at k:9092"),
        (
            {"queue": QUEUE},
            BROKER_UNREACHABLE,
            "cannot reach NATS at nats://x: ConnectionRefusedError",
        ),
        ({"kafka": KAFKA}, AUTHENTICATION_FAILED, "Kafka at k:9092 refused the credentials"),
    ],
)
def test_a_problem_of_the_source_is_ready_false_with_a_warning(
    make_function: MakeFunction,
    config: ControllerConfig,
    spec: dict[str, Any],
    reason: str,
    message: str,
) -> None:
    probe = FakeProbe(
        {"ORDERS": SourceProblem(reason, message), "orders": SourceProblem(reason, message)}
    )
    cluster, operator = make_operator(config, make_function(), trigger(**spec), probe=probe)
    look(operator)
    assert ready(cluster) == ("False", reason, message)
    assert "consumer" not in status(cluster)
    assert [(e.type, e.reason, e.message) for e in cluster.events if e.name == "orders"] == [
        ("Warning", reason, message)
    ]


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (
            NotConsumed("ORDERS has no consumer yet"),
            ("Unknown", "Pending", "ORDERS has no consumer yet"),
        ),
        (SourceProblem(OBSERVE_FAILED, "it broke"), ("Unknown", OBSERVE_FAILED, "it broke")),
    ],
    ids=["no consumer yet", "the look failed"],
)
def test_what_says_nothing_wrong_of_the_source_is_unknown_without_a_warning(
    make_function: MakeFunction,
    config: ControllerConfig,
    answer: NotConsumed | SourceProblem,
    expected: tuple[str, str, str],
) -> None:
    cluster, operator = make_operator(
        config, make_function(), trigger(queue=QUEUE), probe=FakeProbe({"ORDERS": answer})
    )
    look(operator)
    assert ready(cluster) == expected
    assert warnings(cluster) == []


def test_each_turn_to_false_warns_once_and_the_consumer_comes_back(
    make_function: MakeFunction, config: ControllerConfig
) -> None:
    probe = FakeProbe({"ORDERS": QUEUE_CONSUMING})
    config = dataclasses.replace(config, observe_seconds=0.0)  # every look is due at once
    cluster, operator = make_operator(config, make_function(), trigger(queue=QUEUE), probe=probe)
    away = SourceProblem(BROKER_UNREACHABLE, "cannot reach NATS at nats://x: refused")
    seen = []
    for answer in (QUEUE_CONSUMING, away, away, QUEUE_CONSUMING, away):
        probe.answers["ORDERS"] = answer
        look(operator)
        seen.append((ready(cluster)[1], status(cluster).get("consumer", {}).get("lag")))
    assert seen == [
        ("Consuming", 7),
        (BROKER_UNREACHABLE, None),  # no numbers rather than stale ones
        (BROKER_UNREACHABLE, None),
        ("Consuming", 7),  # nothing lost: the consumer is where it was
        (BROKER_UNREACHABLE, None),
    ]
    assert warnings(cluster) == [BROKER_UNREACHABLE, BROKER_UNREACHABLE]


def test_an_unchanged_observation_queues_nothing_and_the_resync_writes_its_time(
    make_function: MakeFunction, config: ControllerConfig
) -> None:
    probe = FakeProbe({"ORDERS": QUEUE_CONSUMING})
    config = dataclasses.replace(config, observe_seconds=0.0)
    times = [NOW]
    cluster, operator = make_operator(
        config, make_function(), trigger(queue=QUEUE), probe=probe, now=lambda: times[-1]
    )
    look(operator)
    writes = len(cluster.writes)
    times.append(NOW + timedelta(seconds=30))
    assert look(operator) == {}  # looked again, saw the same: no reconcile, no write
    assert len(probe.looked) == 2 and len(cluster.writes) == writes
    assert status(cluster)["consumer"]["observedAt"] == OBSERVED_AT

    operator.resync()  # every resync writes the latest look's time, however little changed
    settle(operator)
    assert status(cluster)["consumer"]["observedAt"] == "2026-01-02T03:04:35Z"
    probe.answers["ORDERS"] = dataclasses.replace(QUEUE_CONSUMING, lag=0, position=10)
    assert list(look(operator)) == [("Trigger", NS, "orders")]
    assert status(cluster)["consumer"]["lag"] == 0


def test_the_probe_looks_at_the_consumer_the_dispatcher_reads_through(
    make_function: MakeFunction, config: ControllerConfig
) -> None:
    manifest = trigger(queue=QUEUE)
    manifest["metadata"]["name"] = "orders.v2"
    probe = FakeProbe()
    _, operator = make_operator(config, make_function(), manifest, probe=probe)
    look(operator)
    [target] = probe.looked
    assert isinstance(target, QueueTarget)
    assert target == QueueTarget(stream="ORDERS", consumer="kubelambda_team-a_orders_v2")
    assert target.consumer == consumer_name(parse_trigger(manifest))


def test_a_changed_source_is_looked_at_again_and_a_batch_size_is_no_change(
    make_function: MakeFunction, config: ControllerConfig
) -> None:
    probe = FakeProbe({"ORDERS": QUEUE_CONSUMING})
    cluster, operator = make_operator(config, make_function(), trigger(queue=QUEUE), probe=probe)
    look(operator)

    def edit(queue: dict[str, Any]) -> None:
        body = cluster.stored(TRIGGER, namespace=NS, name="orders")
        assert body is not None
        body["spec"]["queue"] = queue
        body["metadata"]["generation"] += 1
        operator.trigger_event("MODIFIED", cluster.put(body))
        settle(operator)

    edit({"stream": "ORDERS", "batchSize": 5})
    assert ready(cluster)[1] == "Consuming" and len(probe.looked) == 1
    edit({"stream": "REFUNDS"})
    assert ready(cluster)[:2] == ("Unknown", "Pending")
    assert "consumer" not in status(cluster)
    look(operator)  # at once: the new stream is due, whatever the interval
    assert [t.stream for t in probe.looked if isinstance(t, QueueTarget)] == ["ORDERS", "REFUNDS"]
    assert ready(cluster)[:2] == ("Unknown", "Pending")  # FakeProbe: no consumer on REFUNDS


def test_a_restarted_operator_keeps_the_last_observation_until_it_looks(
    make_function: MakeFunction, config: ControllerConfig
) -> None:
    probe = FakeProbe({"ORDERS": QUEUE_CONSUMING})
    cluster, operator = make_operator(config, make_function(), trigger(queue=QUEUE), probe=probe)
    look(operator)
    before = copy.deepcopy(status(cluster))
    writes = len(cluster.writes)

    again = restart(config, cluster, probe=probe)
    settle(again)
    assert status(cluster) == before and len(cluster.writes) == writes  # not Pending and back
    probe.answers["ORDERS"] = dataclasses.replace(QUEUE_CONSUMING, lag=1)
    look(again)
    assert status(cluster)["consumer"]["lag"] == 1


def test_secrets_are_read_for_the_probe_and_a_missing_or_wrong_one_is_named(
    make_function: MakeFunction, config: ControllerConfig
) -> None:
    kafka = {**KAFKA, "auth": {"secretRef": {"name": "kafka-login"}}}
    probe = FakeProbe()
    config = dataclasses.replace(config, observe_seconds=0.0)
    cluster, operator = make_operator(config, make_function(), trigger(kafka=kafka), probe=probe)
    look(operator)
    assert ready(cluster) == (
        "False",
        "SecretNotFound",
        "Secret kafka-login (spec.kafka.auth.secretRef) does not exist in namespace team-a",
    )
    assert probe.looked == []

    cluster.put(secret("kafka-login", username="lambda", mechanism="SCRAM-SHA-1"))
    look(operator)
    assert ready(cluster)[:2] == ("False", "InvalidSecret")
    assert "needs both username and password" in ready(cluster)[2]

    cluster.put(secret("kafka-login", username="lambda", password="pw", mechanism="SCRAM-SHA-512"))
    look(operator)
    [target] = probe.looked
    assert isinstance(target, KafkaTarget)
    endpoint = target.endpoint
    assert (endpoint.mechanism, endpoint.username, endpoint.password) == (
        "SCRAM-SHA-512",
        "lambda",
        "pw",
    )
    assert (target.group, target.topics, target.starting_position) == (
        "kubelambda.team-a.orders",
        ("orders",),
        "LATEST",
    )
    assert ready(cluster)[:2] == ("Unknown", "Pending")
    assert warnings(cluster) == ["SecretNotFound", "InvalidSecret"]


def test_a_queue_on_another_nats_gets_its_secrets_credentials(
    make_function: MakeFunction, config: ControllerConfig
) -> None:
    queue = {
        "stream": "ORDERS",
        "nats": {"url": "nats://other:4222", "credentialsSecret": {"name": "n"}},
    }
    probe = FakeProbe()
    cluster, operator = make_operator(config, make_function(), trigger(queue=queue), probe=probe)
    cluster.put(secret("n", token="s3cret"))
    look(operator)
    [target] = probe.looked
    assert isinstance(target, QueueTarget) and target.endpoint is not None
    assert (target.endpoint.url, target.endpoint.token) == ("nats://other:4222", "s3cret")
    assert "s3cret" not in repr(target)


def test_without_a_probe_the_status_says_the_source_is_not_observed(
    make_function: MakeFunction, config: ControllerConfig
) -> None:
    cluster, operator = make_operator(config, make_function(), trigger(queue=QUEUE))
    settle(operator)
    assert ready(cluster) == (
        "Unknown",
        "NotObserved",
        "JetStream stream ORDERS for Function hello: this operator does not observe sources",
    )
    assert warnings(cluster) == []


def test_a_pulled_source_without_its_function_waits_for_it_unobserved(
    make_function: MakeFunction, config: ControllerConfig
) -> None:
    probe = FakeProbe({"ORDERS": QUEUE_CONSUMING})
    cluster, operator = make_operator(config, trigger(queue=QUEUE), probe=probe)
    look(operator)
    assert ready(cluster)[:2] == ("False", "FunctionNotFound")
    assert warnings(cluster) == ["FunctionNotFound"]
    assert probe.looked == []

    operator.function_event("ADDED", cluster.put(make_function()))
    settle(operator)
    assert ready(cluster)[:2] == ("Unknown", "Pending")
    look(operator)
    assert ready(cluster)[:2] == ("True", "Consuming")


def test_a_deleted_trigger_is_no_longer_looked_at(
    make_function: MakeFunction, config: ControllerConfig
) -> None:
    probe = FakeProbe()
    cluster, operator = make_operator(config, make_function(), trigger(queue=QUEUE), probe=probe)
    look(operator)
    assert operator.observer is not None and len(operator.observer) == 1
    body = cluster.stored(TRIGGER, namespace=NS, name="orders")
    assert body is not None
    operator.trigger_event("DELETED", body)
    settle(operator)
    assert len(operator.observer) == 0


def test_an_invalid_pulled_source_says_why(
    make_function: MakeFunction, config: ControllerConfig
) -> None:
    """What the CRD cannot check (a filter pattern that is not JSON) reaches the status."""
    queue = {"stream": "ORDERS", "filterCriteria": {"filters": [{"pattern": "{kind: order}"}]}}
    probe = FakeProbe()
    cluster, operator = make_operator(config, make_function(), trigger(queue=queue), probe=probe)
    look(operator)
    status_, reason, message = ready(cluster)
    assert (status_, reason) == ("False", "InvalidSpec")
    assert message.startswith(
        "spec.queue.filterCriteria.filters[0].pattern: is not a filter pattern Lambda accepts"
    )
    assert probe.looked == []


@pytest.mark.parametrize(
    ("spec", "summary"),
    [
        ({"queue": {"stream": "ORDERS"}}, "queue ORDERS"),
        ({"queue": {"stream": "ORDERS", "subject": "orders.>"}}, "queue ORDERS orders.>"),
        ({"kafka": KAFKA}, "kafka orders"),
    ],
)
def test_pulled_source_summary(spec: dict[str, Any], summary: str) -> None:
    assert trigger_source_summary(parse_trigger(trigger(**spec))) == summary
