"""The running controller: takes watch events into its store and queue, and runs the workers that
reconcile each queued Function or Trigger, with retries and a periodic resync.

kopf's watches (platforms/kubernetes/watches.py) feed it in ``kubelambda operator``; the unit
tests feed it directly. It holds no kopf import, so it runs the same against FakeCluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from kubelambda.api import (
    Function,
    ScheduleSource,
    SpecError,
    Trigger,
    parse_function,
    parse_trigger,
)
from kubelambda.api.identity import FunctionKey
from kubelambda.api.labels import COMPONENT_LABEL, FUNCTION_LABEL
from kubelambda.api.subscriptions import BucketNotifications
from kubelambda.controller.claims import RouteClaims
from kubelambda.controller.cluster import Cluster
from kubelambda.controller.config import ControllerConfig
from kubelambda.controller.functions import FunctionReconciler, Result
from kubelambda.controller.metrics import OperatorMetrics, Outcome
from kubelambda.controller.observer import Probe, SourceObserver
from kubelambda.controller.pool import PoolManager, PoolPods
from kubelambda.controller.queue import WorkQueue
from kubelambda.controller.resources.networkpolicy import FUNCTIONS_POLICY_COMPONENT
from kubelambda.controller.resources.status import FUNCTION_STATUS_KEYS
from kubelambda.controller.store import Seen, Store
from kubelambda.controller.triggers import TriggerReconciler
from kubelambda.platforms.kubernetes.errors import ApiError
from kubelambda.platforms.kubernetes.kinds import FUNCTION, TRIGGER, Kind

__all__ = ["Key", "Operator"]

logger = logging.getLogger(__name__)

Key = tuple[Literal["Function", "Trigger"], str, str]
"""What the queue holds: the kind, namespace and name of an object to reconcile."""


def _now() -> datetime:
    return datetime.now(UTC)


def _where(body: Mapping[str, Any]) -> tuple[str, str]:
    meta = body.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


# What every write changes, and so no reason to reconcile.
_EVERY_WRITE = frozenset({"resourceVersion", "managedFields"})
_BODY = frozenset({"metadata", "status"})


def _differs(old: Mapping[str, Any], new: Mapping[str, Any], but: frozenset[str]) -> bool:
    return any(old.get(key) != new.get(key) for key in old.keys() | new.keys() if key not in but)


def _others_status_only(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> bool:
    """True when ``new`` differs from ``old`` only in status the controller does not write
    (the autoscaler's ``status.autoscaler``) and in what every write changes: nothing to
    reconcile. A change to the controller's own status (a hand edit) is not: it is put back."""
    if old is None or _differs(old, new, _BODY):
        return False
    if _differs(old.get("metadata") or {}, new.get("metadata") or {}, _EVERY_WRITE):
        return False
    old_status, new_status = old.get("status") or {}, new.get("status") or {}
    return all(old_status.get(key) == new_status.get(key) for key in FUNCTION_STATUS_KEYS)


def _function_of(trigger: Mapping[str, Any]) -> str | None:
    """The Function a Trigger names, if it names one (it may be invalid, even not an object)."""
    spec = trigger.get("spec")
    function = spec.get("function") if isinstance(spec, Mapping) else None
    return function if isinstance(function, str) else None


def _ready_reason(body: Mapping[str, Any] | None) -> str | None:
    for condition in ((body or {}).get("status") or {}).get("conditions") or ():
        if isinstance(condition, Mapping) and condition.get("type") == "Ready":
            return str(condition.get("reason"))
    return None


class Operator:
    def __init__(
        self,
        *,
        cluster: Cluster,
        config: ControllerConfig,
        notifications: BucketNotifications,
        clock: Callable[[], datetime] = _now,
        probe: Probe | None = None,
        metrics: OperatorMetrics | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        pool_pods: PoolPods | None = None,
        namespaces: tuple[str, ...] = (),
    ) -> None:
        self.config = config
        self.metrics = metrics if metrics is not None else OperatorMetrics()
        self._monotonic = monotonic
        self.store = Store(refers={TRIGGER: _function_of})
        self.queue: WorkQueue[Key] = WorkQueue()
        self.claims = RouteClaims()
        # Looks at queue and kafka Triggers' sources; without a probe their status says so.
        self.observer = (
            SourceObserver(
                probe=probe,
                cluster=cluster,
                clock=clock,
                changed=lambda namespace, name: self.queue.add(("Trigger", namespace, name)),
                interval_seconds=config.observe_seconds,
            )
            if probe is not None
            else None
        )
        # Valid schedule Triggers, for the scheduler (scheduler/ticks.py).
        self.schedules: dict[tuple[str, str], Trigger] = {}
        # The warm pool, when configured (--warm-pool-size) and given the pod calls it needs.
        self.pool = (
            PoolManager(
                cluster=cluster,
                pods=pool_pods,
                store=self.store,
                config=config,
                clock=clock,
                namespaces=namespaces,
            )
            if config.warm_pool.enabled and pool_pods is not None
            else None
        )
        self.functions = FunctionReconciler(
            cluster=cluster,
            store=self.store,
            config=config,
            clock=clock,
            fetch_image=config.fetch_image,
            pool=self.pool,
        )
        self.triggers = TriggerReconciler(
            cluster=cluster,
            store=self.store,
            config=config,
            notifications=notifications,
            clock=clock,
            claims=self.claims,
            observer=self.observer,
        )
        self.reconciles = 0  # how many reconciles ran, for tests and the benchmark
        # Events that came while their key's reconcile ran, as (kind, namespace, name,
        # version): _requeue.
        self._during: dict[Key, Seen] = {}

    # --- intake: every watch event updates the store and queues what it affects --------------

    def function_event(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        namespace, name = _where(body)
        if event_type != "DELETED" and self.store.holds(FUNCTION, body):
            return  # the echo of the operator's own status write
        if event_type == "MODIFIED" and _others_status_only(
            self.store.get(FUNCTION, namespace=namespace, name=name), body
        ):
            # The autoscaler's record of a decision: at 15,000 Functions a new leader's
            # records were 15,000 reconciles that changed nothing.
            self.store.put(FUNCTION, body)
            return
        if event_type == "DELETED":
            self.store.remove(FUNCTION, body)
        else:
            self.store.put(FUNCTION, body)
        self._requeue(("Function", namespace, name), FUNCTION, event_type, body)
        if event_type != "MODIFIED":
            # A Trigger only cares whether its Function exists. Looked up, not searched for:
            # decoding every stored Trigger for each Function of a first listing took minutes
            # at 15,000 of each.
            for trigger in self.store.referring(TRIGGER, namespace=namespace, name=name):
                self.queue.add(("Trigger", namespace, trigger))

    def trigger_event(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        namespace, name = _where(body)
        if event_type != "DELETED" and self.store.holds(TRIGGER, body):
            return
        if event_type == "DELETED":
            self.store.remove(TRIGGER, body)
            self.claims.remove((namespace, name))
            self.schedules.pop((namespace, name), None)
            if self.observer is not None:
                self.observer.forget(namespace, name)
        else:
            self.store.put(TRIGGER, body)
            try:
                trigger = parse_trigger(body)
            except SpecError:
                self.claims.remove((namespace, name))
                self.schedules.pop((namespace, name), None)
            else:
                self.claims.put(trigger)
                if isinstance(trigger.source, ScheduleSource):
                    self.schedules[(namespace, name)] = trigger
                else:
                    self.schedules.pop((namespace, name), None)
        self._requeue(("Trigger", namespace, name), TRIGGER, event_type, body)

    def owned_event(self, kind: Kind, event_type: str | None, body: Mapping[str, Any]) -> None:
        """An object the controller made changed (a hand edit, a deletion, a Deployment's
        status): its Function is reconciled, which puts it back or reports the change."""
        namespace, _ = _where(body)
        if event_type != "DELETED" and self.store.holds(kind, body):
            return  # the echo of the operator's own apply
        if event_type == "DELETED":
            self.store.remove(kind, body)
        else:
            self.store.put(kind, body)
        labels = (body.get("metadata") or {}).get("labels") or {}
        owner = labels.get(FUNCTION_LABEL)
        if owner:
            self._requeue(("Function", namespace, str(owner)), kind, event_type, body)
        elif labels.get(COMPONENT_LABEL) == FUNCTIONS_POLICY_COMPONENT:
            # The namespace's shared policy, edited or deleted by hand: every Function there
            # relies on it, and any of their reconciles puts it back (the rest change nothing).
            # By name: an operator's first listing brings each namespace's policy, and
            # decoding every stored Function for each would cost seconds at 15,000.
            for name in self.store.names(FUNCTION, namespace=namespace):
                self.queue.add(("Function", namespace, name))

    def _requeue(
        self, key: Key, kind: Kind, event_type: str | None, body: Mapping[str, Any]
    ) -> None:
        """Queue ``key`` for the change ``body`` shows. While ``key``'s reconcile runs, its own
        writes' events can come before their answers (half of the status writes did, at
        15,000 Functions: a reconcile more for nothing); such an event is only noted, and
        the reconcile's end queues ``key`` again unless that reconcile put the very same
        version in the store itself (``_work``). Deletions are queued at once."""
        version = (body.get("metadata") or {}).get("resourceVersion")
        if event_type != "DELETED" and version is not None and self.queue.handling(key):
            self._during.setdefault(key, set()).add((kind, *_where(body), str(version)))
        else:
            self.queue.add(key)

    def function(self, key: FunctionKey) -> Function | None:
        """A valid Function the watch has shown, or None."""
        body = self.store.get(FUNCTION, namespace=key.namespace, name=key.name)
        if body is None:
            return None
        try:
            return parse_function(body)
        except SpecError:
            return None

    def last_tick(self, trigger: Trigger) -> datetime | None:
        """The last tick the scheduler recorded in the Trigger's status."""
        body = self.store.get(TRIGGER, namespace=trigger.namespace, name=trigger.name)
        text = ((body or {}).get("status") or {}).get("lastTick")
        if not isinstance(text, str):
            return None
        try:
            return datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None

    def resync(self) -> None:
        """Queue every known object: catches what no event reported (a user's ConfigMap
        changed, an S3 subscription removed on the server) and writes the latest observation
        of each queue and kafka source, however little it changed."""
        for kind, tag in ((FUNCTION, "Function"), (TRIGGER, "Trigger")):
            for namespace, name in self.store.keys(kind):  # by name: none decoded
                self.queue.add((tag, namespace, name))  # type: ignore[arg-type]

    # --- the workers -------------------------------------------------------------------------

    async def reconcile(self, key: Key) -> Result:
        """Reconcile the object of ``key`` once, recording the outcome, the time it took and
        the Ready condition it left in the operator's metrics."""
        kind, namespace, name = key
        self.reconciles += 1
        started = self._monotonic()
        try:
            result = await self._reconcile(key)
        except asyncio.CancelledError:
            raise  # the process stops: no outcome to count
        except Exception:
            self._record(key, "error", started)
            raise
        stored = self.store.get(
            FUNCTION if kind == "Function" else TRIGGER, namespace=namespace, name=name
        )
        self._record(key, "invalid" if _ready_reason(stored) == "InvalidSpec" else "ok", started)
        self.metrics.state(kind=kind, namespace=namespace, name=name, body=stored)
        return result

    def _record(self, key: Key, outcome: Outcome, started: float) -> None:
        kind, namespace, _ = key
        seconds = max(self._monotonic() - started, 0.0)
        self.metrics.reconciled(kind=kind, namespace=namespace, outcome=outcome, seconds=seconds)

    async def _reconcile(self, key: Key) -> Result:
        kind, namespace, name = key
        if kind == "Function":
            return await self.functions.reconcile(namespace, name)
        # A claim that came or went may have decided other Triggers' routes too.
        for other in self.claims.settle() - {(namespace, name)}:
            self.queue.add(("Trigger", *other))
        return await self.triggers.reconcile(namespace, name)

    async def _work(self) -> None:
        while True:
            key = await self.queue.get()
            with self.store.recording() as seen:
                try:
                    result = await self.reconcile(key)
                except asyncio.CancelledError:
                    raise
                except ApiError as exc:
                    delay = self.queue.retry(key)
                    logger.warning("%s %s/%s: %s; retrying in %.1fs", *key, exc, delay)
                except Exception:
                    delay = self.queue.retry(key)
                    logger.exception("%s %s/%s failed; retrying in %.1fs", *key, delay)
                else:
                    self.queue.forget(key)
                    if result.requeue_after is not None:
                        self.queue.add_after(key, result.requeue_after)
                finally:
                    if not self._during.pop(key, set()) <= seen:
                        self.queue.add(key)  # a change this reconcile did not see or make
                    self.queue.done(key)
                self.metrics.backing_off(Counter(kind for kind, _, _ in self.queue.failing()))
                if not self.queue.busy():
                    # Tests and people debugging read this to know the operator caught up.
                    logger.debug("queue idle after %d reconciles", self.reconciles)

    async def _resync_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.resync_seconds)  # a period, not a wait for a state
            await self._caught_up(within=self.config.resync_seconds)
            self.resync()

    async def _caught_up(self, *, within: float) -> None:
        """Until no key waits for a worker, or ``within`` seconds. While a backlog is worked
        off (15,000 Functions applied at once take minutes), every object in it is reconciled
        anyway; resyncing in the middle queued again each one reconciled since, and the run
        made 1.9 reconciles per Function instead of 1."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                await self.queue.drained()

    async def run(self) -> None:
        """Run the workers and the resync timer until cancelled."""
        tasks = [asyncio.create_task(self._work()) for _ in range(self.config.workers)]
        tasks.append(asyncio.create_task(self._resync_loop()))
        if self.observer is not None:
            tasks.append(asyncio.create_task(self.observer.run()))
        if self.pool is not None:
            tasks.append(asyncio.create_task(self.pool.run()))
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.queue.close()

    def idle(self) -> bool:
        """Nothing queued or being reconciled (tests wait for this before asserting)."""
        return not self.queue.busy()
