"""What a queue or kafka Trigger's status says about its consumer: the Ready condition from the
latest observation of its source, and ``status.consumer`` (where the consumer stands and how far
behind it is). TriggerReconciler calls them with what the SourceObserver saw.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from kubelambda.api.streams import KafkaSource, QueueSource
from kubelambda.controller.resources.conditions import Condition, find_condition, timestamp
from kubelambda.delivery.endpoints import INVALID_SECRET
from kubelambda.delivery.observe import (
    AUTHENTICATION_FAILED,
    BROKER_UNREACHABLE,
    OBSERVE_FAILED,
    STREAM_NOT_FOUND,
    TOPIC_NOT_FOUND,
    Consuming,
    NotConsumed,
    Observation,
)

__all__ = [
    "CONSUMING",
    "MAX_PARTITIONS",
    "NOT_OBSERVED",
    "OBSERVED_REASONS",
    "PENDING",
    "SECRET_NOT_FOUND",
    "Observed",
    "consumer_status",
    "observed_already",
    "source_words",
    "stream_ready",
]

CONSUMING: Final = "Consuming"
# Unknown: not observed yet, or the source is there but its consumer is not (yet).
PENDING: Final = "Pending"
# Unknown: this operator has no probe (it observes no source).
NOT_OBSERVED: Final = "NotObserved"
# False: the Trigger's Secret (nats.credentialsSecret, kafka.auth.secretRef) is not there.
SECRET_NOT_FOUND: Final = "SecretNotFound"
# The reasons of a Ready condition that an observation of the source decided.
OBSERVED_REASONS: Final = frozenset(
    {
        CONSUMING,
        PENDING,
        STREAM_NOT_FOUND,
        TOPIC_NOT_FOUND,
        BROKER_UNREACHABLE,
        AUTHENTICATION_FAILED,
        SECRET_NOT_FOUND,
        INVALID_SECRET,
        OBSERVE_FAILED,
    }
)
# status.consumer.partitions lists the first of a Kafka Trigger's partitions, by topic and
# partition; the lag counts them all.
MAX_PARTITIONS: Final = 100


@dataclass(frozen=True)
class Observed:
    """An observation of a Trigger's source, and when it was made."""

    observation: Observation
    at: datetime


def source_words(source: QueueSource | KafkaSource) -> str:
    """The source as a message names it: "JetStream stream ORDERS, subject orders.new" or
    "Kafka topics orders, refunds"."""
    if isinstance(source, QueueSource):
        subject = f", subject {source.subject}" if source.subject else ""
        return f"JetStream stream {source.stream}{subject}"
    return f"Kafka topic{'s' if len(source.topics) > 1 else ''} {', '.join(source.topics)}"


def stream_ready(
    *, function: str, source: QueueSource | KafkaSource, observed: Observed | None, observing: bool
) -> Condition:
    """Ready for a valid queue or kafka Trigger whose Function exists: True (Consuming) while
    its consumer reads a reachable source; False with the problem's reason (StreamNotFound,
    TopicNotFound, BrokerUnreachable, AuthenticationFailed, SecretNotFound, InvalidSecret);
    Unknown until the first observation, while the consumer does not exist yet (Pending), or
    when the look itself failed (ObserveFailed)."""
    where = source_words(source)
    if not observing:
        return Condition(
            "Ready",
            "Unknown",
            NOT_OBSERVED,
            f"{where} for Function {function}: this operator does not observe sources",
        )
    if observed is None:
        return Condition(
            "Ready", "Unknown", PENDING, f"{where} for Function {function}: not observed yet"
        )
    found = observed.observation
    if isinstance(found, Consuming):
        kind = "consumer" if isinstance(source, QueueSource) else "consumer group"
        return Condition(
            "Ready",
            "True",
            CONSUMING,
            f"{kind} {found.consumer} reads {where} for Function {function}",
        )
    if isinstance(found, NotConsumed):
        return Condition("Ready", "Unknown", PENDING, found.message)
    return Condition(
        "Ready",
        "Unknown" if found.reason == OBSERVE_FAILED else "False",
        found.reason,
        found.message,
    )


def consumer_status(observed: Observed | None) -> dict[str, Any] | None:
    """status.consumer while the consumer is observed reading its source, else None (no
    numbers are better than stale ones; the Ready condition says why)."""
    if observed is None or not isinstance(observed.observation, Consuming):
        return None
    found = observed.observation
    status: dict[str, Any] = {"name": found.consumer, "lag": found.lag}
    if found.position is not None:
        status["position"] = found.position
    if found.partitions:
        status["partitions"] = [
            {
                "topic": row.topic,
                "partition": row.partition,
                **({"offset": row.offset} if row.offset is not None else {}),
                "lag": row.lag,
            }
            for row in found.partitions[:MAX_PARTITIONS]
        ]
    status["observedAt"] = timestamp(observed.at)
    return status


def observed_already(body: Mapping[str, Any]) -> bool:
    """Whether the Trigger's status holds an observation of its current spec (a previous
    operator process made it): kept until this process has looked, rather than turned Pending
    and back at every restart."""
    ready = find_condition((body.get("status") or {}).get("conditions"), "Ready") or {}
    generation = (body.get("metadata") or {}).get("generation")
    return ready.get("observedGeneration") == generation and ready.get("reason") in OBSERVED_REASONS
