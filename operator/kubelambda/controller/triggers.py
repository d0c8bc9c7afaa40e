"""Reconciles one Trigger: checks it against its Function and its path's owner, has a bucket
with a ``source`` subscribed on its S3 server (and unsubscribed, behind a finalizer, when the
Trigger is deleted) by BucketSubscriber (subscriber.py), and writes the Trigger's status. The
dispatcher's pollers consume queue and kafka Triggers; their status says what the
SourceObserver last saw of the consumer.

The operator's workers call ``TriggerReconciler.reconcile``; the gateway reads Triggers itself,
so "published" means valid, with its Function present.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from kubelambda.api import (
    BucketSource,
    HttpSource,
    SpecError,
    Trigger,
    parse_trigger,
    schedule_of,
)
from kubelambda.api.streams import KafkaSource, QueueSource
from kubelambda.api.subscriptions import BucketError, BucketNotifications
from kubelambda.controller.claims import RouteClaims
from kubelambda.controller.cluster import Cluster
from kubelambda.controller.config import ControllerConfig
from kubelambda.controller.functions import RECHECK_SECONDS, Result
from kubelambda.controller.observer import SourceObserver
from kubelambda.controller.resources.conditions import Condition, find_condition
from kubelambda.controller.resources.consumer import (
    consumer_status,
    observed_already,
    stream_ready,
)
from kubelambda.controller.resources.status import (
    TRIGGER_STATUS_KEYS,
    trigger_source_summary,
    trigger_status,
)
from kubelambda.controller.statuswrite import status_patch
from kubelambda.controller.store import Store
from kubelambda.controller.subscriber import BucketSubscriber, subscribes
from kubelambda.platforms.kubernetes.errors import ApiError
from kubelambda.platforms.kubernetes.kinds import FUNCTION, TRIGGER

__all__ = ["TriggerReconciler"]


class TriggerReconciler:
    def __init__(
        self,
        *,
        cluster: Cluster,
        store: Store,
        config: ControllerConfig,
        notifications: BucketNotifications,
        clock: Callable[[], datetime],
        claims: RouteClaims,
        observer: SourceObserver | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cluster = cluster
        self.observer = observer
        self.store = store
        self.config = config
        self.clock = clock
        self.claims = claims
        self.buckets = BucketSubscriber(
            cluster=cluster,
            store=store,
            config=config,
            notifications=notifications,
            clock=clock,
            monotonic=monotonic,
        )

    async def reconcile(self, namespace: str, name: str) -> Result:
        body = self.store.get(TRIGGER, namespace=namespace, name=name)
        if body is None:
            self.buckets.forget(namespace, name)
            self._unobserve(namespace, name)
            return Result()
        meta = body["metadata"]
        try:
            trigger = parse_trigger(body)
        except SpecError as exc:
            self._unobserve(namespace, name)
            if meta.get("deletionTimestamp"):
                await self.buckets.release(body)
                return Result()
            await self._write(body, Condition("Ready", "False", "InvalidSpec", str(exc)), None)
            return Result()
        subscribing = subscribes(trigger)
        if meta.get("deletionTimestamp") or not isinstance(
            trigger.source, QueueSource | KafkaSource
        ):
            self._unobserve(namespace, name)
        if meta.get("deletionTimestamp"):
            return await self.buckets.finish_deletion(body, trigger, subscribing)
        summary = trigger_source_summary(trigger)
        conflict = self.claims.refusal(namespace, name)
        if conflict is not None:
            # The gateway leaves this route out (the same rules, api.routes).
            await self._write(
                body, Condition("Ready", "False", "RouteConflict", conflict.message), summary
            )
            return Result()
        function = await self._function(namespace, trigger.function)
        if function is None:
            self._unobserve(namespace, name)
            ready = Condition(
                "Ready",
                "False",
                "FunctionNotFound",
                f"Function {trigger.function} does not exist in namespace {namespace}",
            )
            await self._write(body, ready, summary)
            return Result()
        if isinstance(trigger.source, QueueSource | KafkaSource):
            await self._consumed(body, trigger, trigger.source, summary)
            return Result()
        if subscribing is None:
            schedule = schedule_of(trigger)
            if schedule is None:
                ready = Condition("Ready", "True", "Published", self._published(trigger))
                await self._write(body, ready, summary)
                return Result()
            now = self.clock()
            tick = schedule.next_after(now)
            ready = Condition("Ready", "True", "Scheduled", self._scheduled(trigger, tick))
            await self._write(body, ready, summary, next_tick=tick)
            # Back at the tick, to show the one after it.
            return Result(
                requeue_after=(tick - now).total_seconds() + 1.0 if tick is not None else None
            )
        bucket, s3 = subscribing
        try:
            await self.buckets.subscribe(body, trigger, bucket, s3)
        except BucketError as exc:
            ready = Condition("Ready", "False", "SubscribeFailed", str(exc))
            await self._write(body, ready, summary)
            return Result(requeue_after=RECHECK_SECONDS)
        ready = Condition(
            "Ready",
            "True",
            "Subscribed",
            f"bucket {bucket.bucket} on {s3.endpoint} notifies the gateway"
            f" for Function {trigger.function}",
        )
        await self._write(body, ready, summary)
        return Result()

    # --- the Function ----------------------------------------------------------------------

    async def _function(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        found = self.store.get(FUNCTION, namespace=namespace, name=name)
        if found is None:
            # Not seen by the watch (yet): ask, rather than report a Function missing that is
            # only still being listed after a restart. The answer is not stored: the store
            # would then hold the Function's coming event as an echo, and the Function
            # would never be reconciled.
            return await self.cluster.get(FUNCTION, namespace=namespace, name=name)
        return found

    def _scheduled(self, trigger: Trigger, tick: datetime | None) -> str:
        if tick is None:
            return f"the schedule has no tick left for Function {trigger.function} (its end passed)"
        return (
            f"the scheduler invokes Function {trigger.function} asynchronously at each tick;"
            f" the next at {tick.isoformat()}"
        )

    def _published(self, trigger: Trigger) -> str:
        source = trigger.source
        if isinstance(source, HttpSource):
            url = self.config.route_url(path=source.path, host=source.host)
            return f"the gateway routes {url} to Function {trigger.function}"
        assert isinstance(source, BucketSource)  # schedules are _scheduled's
        return (
            f"the gateway delivers notifications of bucket {source.bucket} to Function"
            f" {trigger.function} (configure the bucket's notifications on the S3 server)"
        )

    # --- a queue's or a Kafka cluster's consumer -------------------------------------------

    async def _consumed(
        self,
        body: Mapping[str, Any],
        trigger: Trigger,
        source: QueueSource | KafkaSource,
        summary: str,
    ) -> None:
        observed = None
        if self.observer is not None:
            observed = self.observer.observe(trigger, source)
            if observed is None and observed_already(body):
                return  # the observer queues the Trigger again once it has looked
        ready = stream_ready(
            function=trigger.function,
            source=source,
            observed=observed,
            observing=self.observer is not None,
        )
        await self._write(body, ready, summary, consumer=consumer_status(observed))

    def _unobserve(self, namespace: str, name: str) -> None:
        if self.observer is not None:
            self.observer.forget(namespace, name)

    # --- status ----------------------------------------------------------------------------

    async def _write(
        self,
        body: Mapping[str, Any],
        ready: Condition,
        source: str | None,
        *,
        next_tick: datetime | None = None,
        consumer: Mapping[str, Any] | None = None,
    ) -> None:
        meta = body["metadata"]
        old = body.get("status") or {}
        url = None
        spec = body.get("spec")  # what the models refused may not even be an object
        spec_http = spec.get("http") if isinstance(spec, Mapping) else None
        if ready.status == "True" and isinstance(spec_http, Mapping):
            url = self.config.route_url(path=str(spec_http.get("path")), host=spec_http.get("host"))
        status = trigger_status(
            old=old,
            generation=meta.get("generation"),
            ready=ready,
            source=source,
            url=url,
            now=self.clock(),
            next_tick=next_tick,
            consumer=consumer,
        )
        patch = status_patch(old, status, owned=TRIGGER_STATUS_KEYS)
        if not patch:
            return
        try:
            updated = await self.cluster.patch_status(
                TRIGGER, namespace=meta["namespace"], name=meta["name"], status=patch
            )
        except ApiError as exc:
            if exc.status == 404:
                return
            raise
        self.store.put(TRIGGER, updated)
        previous = find_condition(old.get("conditions"), "Ready") or {}
        # Unknown is no fault (a source not observed yet): only False warns.
        if ready.status == "False" and previous.get("reason") != ready.reason:
            await self.cluster.record_event(
                body, type="Warning", reason=ready.reason, message=ready.message
            )
