"""operator.Operator: watch events go into the store and queue the right keys; its workers
reconcile, retry failures with backoff, and stop when cancelled."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from kubelambda.controller.cluster import FakeCluster
from kubelambda.controller.config import ControllerConfig
from kubelambda.platforms.kubernetes.errors import ApiError
from kubelambda.platforms.kubernetes.kinds import DEPLOYMENT, FUNCTION
from support.waiting import wait_for_async
from unit.controller.reconciling import make_operator

MakeFunction = Callable[..., dict[str, Any]]


def queued(operator: Any) -> set[tuple[str, str, str]]:
    return set(operator.queue._ready)


def test_events_queue_what_they_affect(
    make_function: MakeFunction, config: ControllerConfig
) -> None:
    trigger = {
        "apiVersion": "kubelambda.dev/v1alpha1",
        "kind": "Trigger",
        "metadata": {"name": "t", "namespace": "team-a"},
        "spec": {"function": "hello", "http": {"path": "/"}},
    }
    other_namespace = dict(trigger, metadata={"name": "t", "namespace": "team-b"})

    async def scenario() -> None:
        _, operator = make_operator(config)
        operator.trigger_event(None, trigger)  # None: kopf's initial listing
        operator.trigger_event(None, other_namespace)
        operator.function_event("ADDED", make_function())
        assert queued(operator) == {
            ("Trigger", "team-a", "t"),
            ("Trigger", "team-b", "t"),
            ("Function", "team-a", "hello"),
        }
        while len(operator.queue):
            operator.queue.done(await operator.queue.get())

        operator.function_event("MODIFIED", make_function(timeoutSeconds=9))
        assert queued(operator) == {("Function", "team-a", "hello")}
        operator.queue.done(await operator.queue.get())

        owned = {
            "metadata": {
                "name": "hello",
                "namespace": "team-a",
                "labels": {"kubelambda.dev/function": "hello"},
            }
        }
        operator.owned_event(DEPLOYMENT, "DELETED", owned)
        assert queued(operator) == {("Function", "team-a", "hello")}
        assert operator.store.get(DEPLOYMENT, namespace="team-a", name="hello") is None

    asyncio.run(scenario())


def _autoscaler_record(body: dict[str, Any]) -> None:
    body["status"]["autoscaler"] = {"desiredReplicas": 2, "reason": "busy"}
    body["metadata"]["managedFields"] = [{"manager": "kubelambda-autoscaler"}]


def _hand_edit_of_conditions(body: dict[str, Any]) -> None:
    body["status"]["conditions"] = []


def _label(body: dict[str, Any]) -> None:
    body["metadata"]["labels"] = {"team": "a"}


def _spec(body: dict[str, Any]) -> None:
    body["spec"]["timeoutSeconds"] = 9


@pytest.mark.parametrize(
    ("change", "reconciled"),
    [
        (_autoscaler_record, False),
        (_hand_edit_of_conditions, True),
        (_label, True),
        (_spec, True),
    ],
    ids=["autoscaler-record", "own-status-edited", "label", "spec"],
)
def test_a_change_only_to_status_others_write_is_kept_but_not_reconciled(
    make_function: MakeFunction,
    config: ControllerConfig,
    change: Callable[[dict[str, Any]], None],
    reconciled: bool,
) -> None:
    """The autoscaler's record of a decision (status.autoscaler) asks nothing of the
    controller: at 15,000 Functions a new leader's records were 15,000 reconciles that changed
    nothing. Any other change is reconciled, the controller's own status edited by hand too."""
    function = make_function()
    function["metadata"]["resourceVersion"] = "1"
    function["status"] = {"conditions": [{"type": "Ready", "status": "False"}]}
    modified = copy.deepcopy(function)
    modified["metadata"]["resourceVersion"] = "2"
    change(modified)

    async def scenario() -> None:
        _, operator = make_operator(config)
        operator.function_event("ADDED", function)
        operator.queue.done(await operator.queue.get())
        operator.function_event("MODIFIED", modified)
        assert queued(operator) == ({("Function", "team-a", "hello")} if reconciled else set())
        kept = operator.store.get(FUNCTION, namespace="team-a", name="hello")
        assert kept is not None and kept["metadata"]["resourceVersion"] == "2"
        assert kept["status"] == modified["status"]

    asyncio.run(scenario())


class FlakyCluster(FakeCluster):
    """Refuses the first ``failures`` applies with a transient error."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures
        self.status_written = asyncio.Event()

    async def patch_status(self, kind: Any, **kwargs: Any) -> dict[str, Any]:
        written = await super().patch_status(kind, **kwargs)
        self.status_written.set()
        return written

    async def apply(self, obj: Any, *, field_manager: str, force: bool = True) -> dict[str, Any]:
        if self.failures:
            self.failures -= 1
            raise ApiError(503, "ServiceUnavailable", "etcd is busy")
        return await super().apply(obj, field_manager=field_manager, force=force)


def test_workers_retry_until_the_function_is_reconciled(
    make_function: MakeFunction, config: ControllerConfig
) -> None:
    async def scenario() -> dict[str, Any] | None:
        cluster = FlakyCluster(2)
        cluster, operator = make_operator(config, make_function(), cluster=cluster)
        operator.queue.base_delay = 0.01
        workers = asyncio.create_task(operator.run())
        try:
            await asyncio.wait_for(cluster.status_written.wait(), timeout=10)
        finally:
            workers.cancel()
            await asyncio.gather(workers, return_exceptions=True)
        assert cluster.failures == 0
        assert operator.reconciles >= 2  # a failed pass, then a retry that got through
        return cluster.stored(FUNCTION, namespace="team-a", name="hello")

    function = asyncio.run(scenario())
    assert function is not None
    assert function["status"]["conditions"][0]["reason"] == "ScaledToZero"


@pytest.mark.parametrize("drained", [True, False], ids=["worked-off", "never-worked-off"])
def test_the_resync_waits_for_a_backlog_to_be_worked_off_for_a_period_at_most(
    make_function: Callable[..., dict[str, Any]], config: ControllerConfig, drained: bool
) -> None:
    """Every object in a backlog is reconciled anyway: a resync in the middle of one would
    queue again those reconciled since (at 15,000 Functions, 1.9 reconciles each). A backlog
    that never ends puts the resync off by one period, not for ever."""
    period = 0.2
    fast = replace(config, resync_seconds=period)
    _, operator = make_operator(fast, make_function(name="first"), make_function(name="second"))

    async def body() -> None:
        first = await operator.queue.get()  # reconciled; "second" still waits for a worker
        operator.queue.done(first)
        resyncing = asyncio.create_task(operator._resync_loop())
        await asyncio.sleep(period * 1.5)  # the resync is due, the backlog is not worked off
        assert len(operator.queue) == 1, "resynced during the backlog"
        if drained:
            second = await operator.queue.get()
            operator.queue.done(second)  # the backlog is worked off: now the resync comes
        await wait_for_async(lambda: len(operator.queue) == 2, seconds=2, what="the resync")
        resyncing.cancel()

    asyncio.run(body())
