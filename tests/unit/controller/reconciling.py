"""Helpers for the reconciler tests: an Operator on a FakeCluster, run until its queue is empty,
a FakeCluster where someone deletes an object while the operator's write of it is answered, and
managedFields entries."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kubelambda.api.subscriptions import FakeNotifications
from kubelambda.controller.cluster import FakeCluster
from kubelambda.controller.config import ControllerConfig
from kubelambda.controller.functions import Result
from kubelambda.controller.observer import Probe
from kubelambda.controller.operator import Key, Operator
from kubelambda.delivery.observe import KafkaTarget, NotConsumed, Observation, QueueTarget
from kubelambda.platforms.kubernetes.kinds import FUNCTION, TRIGGER, Kind, kind_of
from unit.controller.conftest import clock


def make_operator(
    config: ControllerConfig,
    *objects: dict[str, Any],
    cluster: FakeCluster | None = None,
    notifications: FakeNotifications | None = None,
    probe: Probe | None = None,
    now: Callable[[], datetime] = clock,
) -> tuple[FakeCluster, Operator]:
    """An Operator whose store has seen ``objects`` (Functions, Triggers) being added."""
    fake = cluster if cluster is not None else FakeCluster()
    operator = Operator(
        cluster=fake,
        config=config,
        notifications=notifications or FakeNotifications(),
        clock=now,
        probe=probe,
    )
    for obj in objects:
        stored = fake.put(obj)
        if obj["kind"] == "Function":
            operator.function_event("ADDED", stored)
        else:
            operator.trigger_event("ADDED", stored)
    return fake, operator


def restart(config: ControllerConfig, cluster: FakeCluster, probe: Probe | None = None) -> Operator:
    """A new Operator over ``cluster``, as a restarted process starts: its watches list every
    object (Functions, Triggers and the objects the controller made)."""
    operator = Operator(
        cluster=cluster, config=config, notifications=FakeNotifications(), clock=clock, probe=probe
    )
    for obj in cluster.objects.values():
        kind = kind_of(obj)
        if kind == FUNCTION:
            operator.function_event(None, obj)
        elif kind == TRIGGER:
            operator.trigger_event(None, obj)
        else:
            operator.owned_event(kind, None, obj)
    return operator


def settle(operator: Operator, *, limit: int = 50) -> dict[Key, Result]:
    """Reconcile queued keys until none is left (delayed re-checks are not waited for)."""

    async def drain() -> dict[Key, Result]:
        results: dict[Key, Result] = {}
        for _ in range(limit):
            if not len(operator.queue):
                return results
            key = await operator.queue.get()
            try:
                results[key] = await operator.reconcile(key)
            finally:
                operator.queue.done(key)
        raise AssertionError(f"still reconciling after {limit} passes: a reconcile loop?")

    return asyncio.run(drain())


@dataclass
class DeletedInFlightCluster(FakeCluster):
    """FakeCluster where someone deletes a ``kind`` object right after the first write of it by
    ``write`` (a field manager, or "status") lands, and the operator's watch delivers the
    DELETED event, at the deletion's resourceVersion as the API server sends it, before the
    answer to that write comes back. Only armed once ``operator`` is set."""

    kind: Kind = FUNCTION
    write: str = "status"
    operator: Operator | None = None
    deleted: list[tuple[Kind, str]] = field(default_factory=list)

    def _delete(self, kind: Kind, namespace: str, name: str, write: str) -> None:
        if self.operator is None or self.deleted or (kind, write) != (self.kind, self.write):
            return
        gone = self.objects.pop(self._key(kind, namespace, name))
        gone["metadata"]["resourceVersion"] = str(next(self._versions))
        self.deleted.append((kind, name))
        if kind == FUNCTION:
            self.operator.function_event("DELETED", copy.deepcopy(gone))
        elif kind == TRIGGER:
            self.operator.trigger_event("DELETED", copy.deepcopy(gone))
        else:
            self.operator.owned_event(kind, "DELETED", copy.deepcopy(gone))

    async def apply(
        self, obj: Mapping[str, Any], *, field_manager: str, force: bool = True
    ) -> dict[str, Any]:
        answer = await super().apply(obj, field_manager=field_manager, force=force)
        meta = obj["metadata"]
        self._delete(kind_of(obj), meta["namespace"], meta["name"], field_manager)
        return answer

    async def create(self, obj: Mapping[str, Any], *, field_manager: str) -> dict[str, Any] | None:
        answer = await super().create(obj, field_manager=field_manager)
        meta = obj["metadata"]
        if answer is not None:
            self._delete(kind_of(obj), meta["namespace"], meta["name"], field_manager)
        return answer

    async def patch_status(
        self, kind: Kind, *, namespace: str, name: str, status: Mapping[str, Any]
    ) -> dict[str, Any]:
        answer = await super().patch_status(kind, namespace=namespace, name=name, status=status)
        self._delete(kind, namespace, name, "status")
        return answer


@dataclass
class FakeProbe:
    """Answers each look at a stream or at a first topic from ``answers`` (by default: there,
    with no consumer yet), and records every target it was shown."""

    answers: dict[str, Observation] = field(default_factory=dict)
    looked: list[QueueTarget | KafkaTarget] = field(default_factory=list)

    async def queue(self, target: QueueTarget) -> Observation:
        self.looked.append(target)
        return self.answers.get(target.stream, NotConsumed(f"{target.stream}: no consumer"))

    async def kafka(self, target: KafkaTarget) -> Observation:
        self.looked.append(target)
        topic = target.topics[0]
        return self.answers.get(topic, NotConsumed(f"{topic}: no offsets"))


def look(operator: Operator) -> dict[Key, Result]:
    """Settle the queue (a reconcile shows the observer a new source), let the observer look at
    every source that is due, and settle again; returns the second settling's reconciles."""
    assert operator.observer is not None
    settle(operator)
    asyncio.run(operator.observer.look_due())
    return settle(operator)


def managed_entry(
    manager: str, operation: str, fields: dict[str, Any], subresource: str | None = None
) -> dict[str, Any]:
    """One managedFields entry."""
    found: dict[str, Any] = {"manager": manager, "operation": operation, "fieldsV1": fields}
    if subresource:
        found["subresource"] = subresource
    return found


def with_managed_fields(*entries: dict[str, Any]) -> dict[str, Any]:
    """A Deployment at 3 replicas with these managedFields."""
    return {
        "metadata": {"name": "hello", "namespace": "ns", "managedFields": list(entries)},
        "spec": {"replicas": 3},
    }
