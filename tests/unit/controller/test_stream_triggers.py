"""triggers.TriggerReconciler with queue and kafka Triggers: accepted (valid, with their Function)
but not reported as consumed, since the dispatcher's pollers consume them; no bucket
subscription, no finalizer, no Warning."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from kubelambda.api import parse_trigger
from kubelambda.controller.config import ControllerConfig
from kubelambda.controller.resources.status import trigger_source_summary
from kubelambda.platforms.kubernetes.kinds import TRIGGER
from unit.controller.reconciling import make_operator, settle

MakeFunction = Callable[..., dict[str, Any]]
NS = "team-a"
KAFKA = {"bootstrapServers": ["kafka:9092"], "topics": ["orders"], "startingPosition": "LATEST"}


def trigger(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kubelambda.dev/v1alpha1",
        "kind": "Trigger",
        "metadata": {"name": "orders", "namespace": NS, "generation": 1},
        "spec": {"function": "hello", **spec},
    }


@pytest.mark.parametrize(
    ("spec", "summary", "message"),
    [
        (
            {"queue": {"stream": "ORDERS", "subject": "orders.created"}},
            "queue ORDERS orders.created",
            "JetStream stream ORDERS, subject orders.created for Function hello: accepted,"
            " not consumed yet (no poller reports on it)",
        ),
        (
            {"kafka": {**KAFKA, "topics": ["orders", "refunds"]}},
            "kafka orders,refunds",
            "Kafka topics orders, refunds for Function hello: accepted, not consumed yet"
            " (no poller reports on it)",
        ),
    ],
    ids=["queue", "kafka"],
)
def test_a_pulled_source_is_accepted_without_a_claim_to_be_consumed(
    make_function: MakeFunction,
    config: ControllerConfig,
    spec: dict[str, Any],
    summary: str,
    message: str,
) -> None:
    cluster, operator = make_operator(config, make_function(), trigger(**spec))
    settle(operator)
    stored = cluster.stored(TRIGGER, namespace=NS, name="orders")
    assert stored is not None
    [ready] = stored["status"]["conditions"]
    assert (ready["type"], ready["status"], ready["reason"]) == ("Ready", "Unknown", "Accepted")
    assert ready["message"] == message
    assert stored["status"]["source"] == summary
    assert "url" not in stored["status"] and "nextTick" not in stored["status"]
    assert not stored["metadata"].get("finalizers")
    # Accepted is no fault: the Trigger gets no event (its Function's "Applied" is not its).
    assert [e for e in cluster.events if e.name == "orders"] == []


def test_a_pulled_source_without_its_function_waits_for_it(
    make_function: MakeFunction, config: ControllerConfig
) -> None:
    cluster, operator = make_operator(config, trigger(queue={"stream": "ORDERS"}))
    settle(operator)
    stored = cluster.stored(TRIGGER, namespace=NS, name="orders")
    assert stored is not None
    [ready] = stored["status"]["conditions"]
    assert (ready["status"], ready["reason"]) == ("False", "FunctionNotFound")
    assert [(e.type, e.reason) for e in cluster.events if e.name == "orders"] == [
        ("Warning", "FunctionNotFound")
    ]

    operator.function_event("ADDED", cluster.put(make_function()))
    settle(operator)
    stored = cluster.stored(TRIGGER, namespace=NS, name="orders")
    assert stored is not None
    assert stored["status"]["conditions"][0]["reason"] == "Accepted"


def test_an_invalid_pulled_source_says_why(
    make_function: MakeFunction, config: ControllerConfig
) -> None:
    """What the CRD cannot check (a filter pattern that is not JSON) reaches the status."""
    queue = {"stream": "ORDERS", "filterCriteria": {"filters": [{"pattern": "{kind: order}"}]}}
    cluster, operator = make_operator(config, make_function(), trigger(queue=queue))
    settle(operator)
    stored = cluster.stored(TRIGGER, namespace=NS, name="orders")
    assert stored is not None
    [ready] = stored["status"]["conditions"]
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
    assert ready["message"].startswith(
        "spec.queue.filterCriteria.filters[0].pattern: is not a filter pattern Lambda accepts"
    )


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
