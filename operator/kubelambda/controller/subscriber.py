"""A bucket Trigger's subscription on its S3 server: subscribed while the Trigger lives, held by
a finalizer, and unsubscribed when the Trigger is deleted. TriggerReconciler (triggers.py) calls
`BucketSubscriber` for the Triggers that `subscribes` picks out.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Final

from kubelambda.api import BucketSource, S3Source, Trigger
from kubelambda.api.subscriptions import (
    BucketError,
    BucketNotifications,
    S3Server,
    Subscription,
    subscribe,
    subscription_id,
    unsubscribe,
)
from kubelambda.controller.cluster import Cluster
from kubelambda.controller.config import FIELD_MANAGER, ControllerConfig
from kubelambda.controller.functions import RECHECK_SECONDS, Result
from kubelambda.controller.store import Store
from kubelambda.platforms.kubernetes.errors import ApiError
from kubelambda.platforms.kubernetes.kinds import SECRET, TRIGGER

__all__ = ["FINALIZER", "UNSUBSCRIBE_DEADLINE_SECONDS", "BucketSubscriber", "subscribes"]

logger = logging.getLogger(__name__)
FINALIZER: Final = "kubelambda.dev/bucket-subscription"
# A deleted Trigger whose S3 server stays unreachable is let go after this long (with a
# Warning), so that a namespace being deleted, Secrets and all, is never stuck on it.
UNSUBSCRIBE_DEADLINE_SECONDS: Final = 300.0


def subscribes(trigger: Trigger) -> tuple[BucketSource, S3Source] | None:
    """The bucket and its S3 server, for a bucket Trigger the operator subscribes."""
    source = trigger.source
    if isinstance(source, BucketSource) and source.source is not None:
        return source, source.source
    return None


def _parse_time(value: str) -> datetime | None:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


class BucketSubscriber:
    """Subscribes and unsubscribes the buckets of the Triggers that name an S3 server."""

    def __init__(
        self,
        *,
        cluster: Cluster,
        store: Store,
        config: ControllerConfig,
        notifications: BucketNotifications,
        clock: Callable[[], datetime],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cluster = cluster
        self.store = store
        self.config = config
        self.notifications = notifications
        self.clock = clock
        self.monotonic = monotonic
        # Subscriptions verified recently: (namespace, name) → (what was subscribed, when).
        self._verified: dict[tuple[str, str], tuple[object, float]] = {}

    def forget(self, namespace: str, name: str) -> None:
        """The Trigger is gone: its next subscription is checked on the server again."""
        self._verified.pop((namespace, name), None)

    async def _server(self, namespace: str, source: S3Source) -> S3Server:
        secret = await self.cluster.get(SECRET, namespace=namespace, name=source.credentials_secret)
        if secret is None:
            raise BucketError(
                f"Secret {source.credentials_secret} (spec.bucket.source.credentialsSecret)"
                f" does not exist in namespace {namespace}"
            )
        data = secret.get("data") or {}
        values: dict[str, str] = {}
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            if key not in data:
                raise BucketError(
                    f"Secret {source.credentials_secret} has no key {key}"
                    " (it needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
                )
            values[key] = base64.b64decode(data[key]).decode()
        return S3Server(
            endpoint=source.endpoint,
            region=source.region or self.config.region,
            access_key=values["AWS_ACCESS_KEY_ID"],
            secret_key=values["AWS_SECRET_ACCESS_KEY"],
        )

    def _subscription(self, trigger: Trigger, bucket: BucketSource) -> Subscription:
        return Subscription(
            id=subscription_id(namespace=trigger.namespace, name=trigger.name),
            queue_arn=self.config.s3_webhook_arn,
            events=bucket.events,
            prefix=bucket.prefix,
            suffix=bucket.suffix,
        )

    async def subscribe(
        self, body: Mapping[str, Any], trigger: Trigger, bucket: BucketSource, s3: S3Source
    ) -> None:
        """Hold the Trigger with the finalizer, then subscribe the bucket on its S3 server
        unless that was verified within the resync period; BucketError says why it failed."""
        if FINALIZER not in (body["metadata"].get("finalizers") or ()):
            await self._set_finalizer(body, present=True)
        key = (trigger.namespace, trigger.name)
        subscription = self._subscription(trigger, bucket)
        fingerprint = (bucket, subscription)
        seen = self._verified.get(key)
        recent = seen is not None and self.monotonic() - seen[1] < self.config.resync_seconds
        if seen is not None and seen[0] == fingerprint and recent:
            return  # checked on the server a moment ago; the resync checks again
        server = await self._server(trigger.namespace, s3)
        changed = await subscribe(
            self.notifications, server, bucket=bucket.bucket, subscriptions=[subscription]
        )
        self._verified[key] = (fingerprint, self.monotonic())
        if changed:
            await self.cluster.record_event(
                body,
                type="Normal",
                reason="Subscribed",
                message=f"subscribed bucket {bucket.bucket} on {server.endpoint}"
                f" to {subscription.queue_arn}",
            )

    async def finish_deletion(
        self,
        body: Mapping[str, Any],
        trigger: Trigger,
        subscribing: tuple[BucketSource, S3Source] | None,
    ) -> Result:
        """Unsubscribe the deleted Trigger's bucket, then drop the finalizer; an S3 server that
        stays unreachable is given up on after UNSUBSCRIBE_DEADLINE_SECONDS, with a Warning."""
        self._verified.pop((trigger.namespace, trigger.name), None)
        if FINALIZER not in (body["metadata"].get("finalizers") or ()):
            return Result()
        if subscribing is not None:
            bucket, s3 = subscribing
            try:
                server = await self._server(trigger.namespace, s3)
                changed = await unsubscribe(
                    self.notifications,
                    server,
                    bucket=bucket.bucket,
                    subscriptions=[self._subscription(trigger, bucket)],
                )
            except BucketError as exc:
                if not self._past_deadline(body):
                    logger.warning("unsubscribing %s failed, will retry: %s", trigger.name, exc)
                    return Result(requeue_after=min(RECHECK_SECONDS, 10.0))
                await self.cluster.record_event(
                    body,
                    type="Warning",
                    reason="UnsubscribeFailed",
                    message=f"gave up unsubscribing bucket {bucket.bucket}: {exc};"
                    " remove its notification entry by hand",
                )
            else:
                if changed:
                    await self.cluster.record_event(
                        body,
                        type="Normal",
                        reason="Unsubscribed",
                        message=f"unsubscribed bucket {bucket.bucket} on {server.endpoint}",
                    )
        await self.release(body)
        return Result()

    def _past_deadline(self, body: Mapping[str, Any]) -> bool:
        since = _parse_time(str(body["metadata"].get("deletionTimestamp")))
        if since is None:
            return True
        return (self.clock() - since).total_seconds() > UNSUBSCRIBE_DEADLINE_SECONDS

    async def release(self, body: Mapping[str, Any]) -> None:
        """Drop the finalizer, if the Trigger holds it."""
        if FINALIZER in (body["metadata"].get("finalizers") or ()):
            await self._set_finalizer(body, present=False)

    async def _set_finalizer(self, body: Mapping[str, Any], *, present: bool) -> None:
        """Add or drop only kubelambda's finalizer: server-side apply merges finalizers as a
        set, so others' entries (and everything users declared) stay untouched."""
        meta = body["metadata"]
        try:
            updated = await self.cluster.apply(
                {
                    "apiVersion": body["apiVersion"],
                    "kind": "Trigger",
                    "metadata": {
                        "name": meta["name"],
                        "namespace": meta["namespace"],
                        "finalizers": [FINALIZER] if present else [],
                    },
                },
                field_manager=FIELD_MANAGER,
            )
        except ApiError as exc:
            if exc.status == 404:
                return  # deleted meanwhile: nothing left to hold or release
            raise
        self.store.put(TRIGGER, updated)
