"""Helpers for the reconciler tests: an Operator on a FakeCluster, run until its queue is empty."""

from __future__ import annotations

import asyncio
from typing import Any

from kubelambda.controller.buckets import FakeBucketNotifier
from kubelambda.controller.cluster import FakeCluster
from kubelambda.controller.config import ControllerConfig
from kubelambda.controller.functions import Result
from kubelambda.controller.operator import Key, Operator
from kubelambda.kube.kinds import FUNCTION, TRIGGER, kind_of
from unit.controller.conftest import clock


def make_operator(
    config: ControllerConfig,
    *objects: dict[str, Any],
    cluster: FakeCluster | None = None,
    notifier: FakeBucketNotifier | None = None,
) -> tuple[FakeCluster, Operator]:
    """An Operator whose store has seen ``objects`` (Functions, Triggers) being added."""
    fake = cluster if cluster is not None else FakeCluster()
    operator = Operator(
        cluster=fake, config=config, notifier=notifier or FakeBucketNotifier(), clock=clock
    )
    for obj in objects:
        stored = fake.put(obj)
        if obj["kind"] == "Function":
            operator.function_event("ADDED", stored)
        else:
            operator.trigger_event("ADDED", stored)
    return fake, operator


def restart(config: ControllerConfig, cluster: FakeCluster) -> Operator:
    """A new Operator over ``cluster``, as a restarted process starts: its watches list every
    object (Functions, Triggers and the objects the controller made)."""
    operator = Operator(cluster=cluster, config=config, notifier=FakeBucketNotifier(), clock=clock)
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
