"""resources/consumer.py as data: Ready for every kind of observation, status.consumer (a
queue's position, Kafka's partitions, the first 100 of them), and which statuses a restarted
operator keeps until it has looked."""

from __future__ import annotations

from typing import Any

import pytest

from kubelambda.api import parse_trigger
from kubelambda.api.streams import KafkaSource, QueueSource
from kubelambda.controller.resources.consumer import (
    MAX_PARTITIONS,
    Observed,
    consumer_status,
    observed_already,
    stream_ready,
)
from kubelambda.delivery.observe import (
    BROKER_UNREACHABLE,
    OBSERVE_FAILED,
    Consuming,
    NotConsumed,
    Observation,
    PartitionLag,
    SourceProblem,
)
from unit.controller.conftest import NOW


def source(**spec: Any) -> QueueSource | KafkaSource:
    trigger = parse_trigger(
        {
            "apiVersion": "kubelambda.dev/v1alpha1",
            "kind": "Trigger",
            "metadata": {"name": "orders", "namespace": "team-a"},
            "spec": {"function": "hello", **spec},
        }
    )
    assert isinstance(trigger.source, QueueSource | KafkaSource)
    return trigger.source


QUEUE = source(queue={"stream": "ORDERS"})
KAFKA = source(
    kafka={"bootstrapServers": ["k:9092"], "topics": ["orders"], "startingPosition": "LATEST"}
)


@pytest.mark.parametrize(
    ("where", "observation", "expected"),
    [
        (
            QUEUE,
            None,
            ("Unknown", "Pending", "JetStream stream ORDERS for Function hello: not observed yet"),
        ),
        (
            QUEUE,
            Consuming(consumer="c", lag=1, position=2),
            ("True", "Consuming", "consumer c reads JetStream stream ORDERS for Function hello"),
        ),
        (
            KAFKA,
            Consuming(consumer="g", lag=1),
            ("True", "Consuming", "consumer group g reads Kafka topic orders for Function hello"),
        ),
        (QUEUE, NotConsumed("no consumer yet"), ("Unknown", "Pending", "no consumer yet")),
        (KAFKA, SourceProblem(BROKER_UNREACHABLE, "gone"), ("False", BROKER_UNREACHABLE, "gone")),
        (
            QUEUE,
            SourceProblem("SecretNotFound", "no Secret"),
            ("False", "SecretNotFound", "no Secret"),
        ),
        (QUEUE, SourceProblem(OBSERVE_FAILED, "oops"), ("Unknown", OBSERVE_FAILED, "oops")),
    ],
)
def test_ready_says_what_was_observed(
    where: QueueSource | KafkaSource, observation: Observation | None, expected: tuple[str, ...]
) -> None:
    observed = Observed(observation, NOW) if observation is not None else None
    ready = stream_ready(function="hello", source=where, observed=observed, observing=True)
    assert (ready.type, ready.status, ready.reason, ready.message) == ("Ready", *expected)


def test_the_consumer_status_of_a_queue_and_of_kafka() -> None:
    at = "2026-01-02T03:04:05Z"
    queue = Observed(Consuming(consumer="c", lag=4, position=9), NOW)
    assert consumer_status(queue) == {"name": "c", "lag": 4, "position": 9, "observedAt": at}

    rows = tuple(PartitionLag("t", n, n if n % 2 else None, 1) for n in range(MAX_PARTITIONS + 5))
    kafka = consumer_status(Observed(Consuming(consumer="g", lag=105, partitions=rows), NOW))
    assert kafka is not None
    assert (kafka["name"], kafka["lag"], "position" in kafka) == ("g", 105, False)
    assert len(kafka["partitions"]) == MAX_PARTITIONS  # the lag still counts every one
    assert kafka["partitions"][:2] == [
        {"topic": "t", "partition": 0, "lag": 1},  # no offset committed: none shown
        {"topic": "t", "partition": 1, "offset": 1, "lag": 1},
    ]
    for nothing in (None, Observed(NotConsumed("x"), NOW), Observed(SourceProblem("A", "b"), NOW)):
        assert consumer_status(nothing) is None


@pytest.mark.parametrize(
    ("reason", "condition_generation", "kept"),
    [
        ("Consuming", 2, True),
        (BROKER_UNREACHABLE, 2, True),
        ("Consuming", 1, False),  # of an older spec
        ("FunctionNotFound", 2, False),  # decided by no observation
        ("NotObserved", 2, False),
    ],
)
def test_a_status_is_kept_only_when_an_observation_of_this_spec_made_it(
    reason: str, condition_generation: int, kept: bool
) -> None:
    body = {
        "metadata": {"generation": 2},
        "status": {
            "conditions": [
                {"type": "Ready", "reason": reason, "observedGeneration": condition_generation}
            ]
        },
    }
    assert observed_already(body) is kept
    assert observed_already({"metadata": {"generation": 2}}) is False
