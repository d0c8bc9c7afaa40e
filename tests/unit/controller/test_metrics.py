"""controller.metrics and the Operator's use of it: reconciles counted by kind and outcome
(ok, invalid, error) with their durations, Functions and Triggers by Ready state, objects
waiting for a retry, and the text /metrics serves."""

from __future__ import annotations

import asyncio
import copy
import itertools
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from kubelambda.api.identity import FunctionKey
from kubelambda.controller.cluster import FakeCluster
from kubelambda.controller.config import ControllerConfig
from kubelambda.controller.metrics import OperatorMetrics, ready_of, scaling_direction
from kubelambda.platforms.kubernetes.errors import ApiError
from kubelambda.platforms.kubernetes.kinds import FUNCTION
from support.waiting import wait_for_async
from unit.controller.reconciling import make_operator, settle

MakeFunction = Callable[..., dict[str, Any]]
NS = "team-a"


def sample(metrics: OperatorMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def reconciles(metrics: OperatorMetrics, kind: str, outcome: str) -> float:
    labels = {"kind": kind, "namespace": NS, "outcome": outcome}
    return sample(metrics, "kubelambda_operator_reconciles_total", **labels) or 0.0


def invalid_function(make_function: MakeFunction, name: str) -> dict[str, Any]:
    manifest = copy.deepcopy(make_function(name))
    manifest["spec"]["memorySize"] = "lots"  # the models refuse it: status InvalidSpec
    return manifest


def trigger(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kubelambda.dev/v1alpha1",
        "kind": "Trigger",
        "metadata": {"name": name, "namespace": NS, "uid": f"uid-{name}"},
        "spec": spec,
    }


def test_reconciles_are_counted_by_kind_and_outcome(
    make_function: MakeFunction, config: ControllerConfig
) -> None:
    metrics = OperatorMetrics()
    ticks = itertools.count(step=0.25)  # every reconcile takes a quarter of a second
    _, operator = make_operator(
        config,
        make_function("good"),
        invalid_function(make_function, "bad"),
        trigger("route", function="good", http={"path": "/good"}),
        trigger("broken", function="good"),  # no source at all
    )
    operator.metrics, operator._monotonic = metrics, lambda: next(ticks)
    settle(operator)

    assert reconciles(metrics, "function", "ok") == 1
    assert reconciles(metrics, "function", "invalid") == 1
    assert reconciles(metrics, "trigger", "ok") == 1
    assert reconciles(metrics, "trigger", "invalid") == 1
    assert reconciles(metrics, "function", "error") == 0
    count = sample(metrics, "kubelambda_operator_reconcile_duration_seconds_count", kind="function")
    total = sample(metrics, "kubelambda_operator_reconcile_duration_seconds_sum", kind="function")
    assert (count, total) == (2, 0.5)


def test_objects_are_counted_by_ready_state_until_deleted(
    make_function: MakeFunction, config: ControllerConfig
) -> None:
    metrics = OperatorMetrics()
    cluster, operator = make_operator(
        config, make_function("good"), invalid_function(make_function, "bad")
    )
    operator.metrics = metrics
    settle(operator)

    def objects(ready: str) -> float | None:
        labels = {"kind": "function", "namespace": NS, "ready": ready}
        return sample(metrics, "kubelambda_operator_objects", **labels)

    assert (objects("true"), objects("false")) == (1, 1)  # scaled to zero; InvalidSpec
    bad = cluster.stored(FUNCTION, namespace=NS, name="bad")
    assert bad is not None
    operator.function_event("DELETED", bad)
    settle(operator)
    assert (objects("true"), objects("false")) == (1, None)  # no series left at zero


class BrokenCluster(FakeCluster):
    """Refuses every apply with a transient error while ``broken``."""

    broken = True

    async def apply(self, obj: Any, *, field_manager: str, force: bool = True) -> dict[str, Any]:
        if self.broken:
            raise ApiError(503, "ServiceUnavailable", "etcd is busy")
        return await super().apply(obj, field_manager=field_manager, force=force)


def test_failed_reconciles_count_as_errors_and_their_objects_as_retrying(
    make_function: MakeFunction, config: ControllerConfig
) -> None:
    metrics = OperatorMetrics()
    cluster = BrokenCluster()
    _, operator = make_operator(config, make_function("good"), cluster=cluster)
    operator.metrics = metrics
    operator.queue.base_delay = 0.01

    def retrying() -> float | None:
        return sample(metrics, "kubelambda_operator_retrying_objects", kind="function")

    async def until(condition: Callable[[], bool]) -> None:
        await wait_for_async(condition, seconds=10, what="the metrics to say so")

    async def scenario() -> None:
        workers = asyncio.create_task(operator.run())
        try:
            await until(lambda: reconciles(metrics, "function", "error") >= 2)
            assert retrying() == 1
            cluster.broken = False
            await until(lambda: reconciles(metrics, "function", "ok") == 1)
            await until(lambda: retrying() == 0)
        finally:
            workers.cancel()
            await asyncio.gather(workers, return_exceptions=True)

    assert retrying() == 0  # the series is there before any failure, for rate() and alerts
    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (None, "unknown"),
        ({"conditions": [{"type": "Progressing", "status": "True"}]}, "unknown"),
        ({"conditions": [{"type": "Ready", "status": "True"}]}, "true"),
        ({"conditions": [{"type": "Ready", "status": "False"}]}, "false"),
        ({"conditions": [{"type": "Ready", "status": "Unknown"}]}, "unknown"),
    ],
)
def test_ready_of_reads_the_ready_condition(status: Any, expected: str) -> None:
    assert ready_of({"status": status} if status is not None else {}) == expected


@pytest.mark.parametrize(
    ("current", "desired", "direction"),
    [(0, 1, "up"), (2, 5, "up"), (5, 2, "down"), (1, 0, "to_zero"), (3, 3, None)],
)
def test_scaling_direction(current: int, desired: int, direction: str | None) -> None:
    assert scaling_direction(current, desired) == direction


def test_the_exposition_names_every_family_with_its_help() -> None:
    metrics = OperatorMetrics()
    metrics.reconciled(kind="Function", namespace=NS, outcome="ok", seconds=0.01)
    metrics.ticked(0.002)
    metrics.scaled(FunctionKey(NS, "good"), current=1, desired=0)
    families = {f.name: f for f in text_string_to_metric_families(metrics.exposition().decode())}
    assert {
        "kubelambda_operator_reconciles",
        "kubelambda_operator_reconcile_duration_seconds",
        "kubelambda_operator_objects",
        "kubelambda_operator_retrying_objects",
        "kubelambda_autoscaler_tick_duration_seconds",
        "kubelambda_autoscaler_scalings",
    } <= set(families)
    assert all(family.documentation for family in families.values())
    [scaled] = [
        s for s in families["kubelambda_autoscaler_scalings"].samples if s.name.endswith("_total")
    ]
    assert scaled.labels == {"namespace": NS, "direction": "to_zero"} and scaled.value == 1


def test_two_operators_keep_separate_registries() -> None:
    first, second = OperatorMetrics(), OperatorMetrics()
    first.reconciled(kind="Trigger", namespace=NS, outcome="error", seconds=0.0)
    labels = {"kind": "trigger", "namespace": NS, "outcome": "error"}
    assert sample(second, "kubelambda_operator_reconciles_total", **labels) is None
