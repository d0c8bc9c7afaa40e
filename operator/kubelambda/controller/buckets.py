"""Bucket subscriptions on an S3 server: the gateway's webhook target added to, or removed from,
a bucket's notification configuration, leaving every other entry of it as it was.

The Trigger reconciler calls a ``BucketNotifier``: ``S3BucketNotifier`` (boto3, imported only
when a Trigger needs it) or ``FakeBucketNotifier`` in tests.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from kubelambda.api.trigger import queue_configuration

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = [
    "BucketError",
    "BucketNotifier",
    "FakeBucketNotifier",
    "S3BucketNotifier",
    "S3Server",
    "Subscription",
    "subscription_id",
    "with_subscription",
    "without_subscription",
]

_CONFIGURATION_KEYS = (
    "TopicConfigurations",
    "QueueConfigurations",
    "LambdaFunctionConfigurations",
    "EventBridgeConfiguration",
)


class BucketError(Exception):
    """The S3 server refused or could not be reached; the message says which and why."""


@dataclass(frozen=True)
class S3Server:
    """An S3 endpoint and the credentials the Trigger's Secret holds."""

    endpoint: str
    region: str
    access_key: str
    secret_key: str = field(repr=False)


@dataclass(frozen=True, kw_only=True)
class Subscription:
    """One entry of a bucket's QueueConfigurations, identified by ``id``."""

    id: str
    queue_arn: str
    events: tuple[str, ...]
    prefix: str = ""
    suffix: str = ""

    def queue_configuration(self) -> dict[str, Any]:
        return queue_configuration(
            entry_id=self.id,
            queue_arn=self.queue_arn,
            events=self.events,
            prefix=self.prefix,
            suffix=self.suffix,
        )


def subscription_id(*, namespace: str, name: str) -> str:
    """The entry Id of a Trigger's subscription; namespaces hold no '.', so it is unambiguous."""
    return f"kubelambda.{namespace}.{name}"


def _same_entry(have: Mapping[str, Any], want: Mapping[str, Any]) -> bool:
    def rules(entry: Mapping[str, Any]) -> list[tuple[str, str]]:
        found = ((entry.get("Filter") or {}).get("Key") or {}).get("FilterRules") or []
        return sorted((str(r.get("Name", "")).lower(), str(r.get("Value", ""))) for r in found)

    return (
        have.get("QueueArn") == want.get("QueueArn")
        and sorted(have.get("Events") or []) == sorted(want.get("Events") or [])
        and rules(have) == rules(want)
    )


def _configuration(current: Mapping[str, Any]) -> dict[str, Any]:
    return {key: copy.deepcopy(current[key]) for key in _CONFIGURATION_KEYS if key in current}


def with_subscription(
    current: Mapping[str, Any], subscription: Subscription
) -> dict[str, Any] | None:
    """The configuration with ``subscription`` in it, or None when it is there already.

    An entry with the same Id is replaced; an equal entry without an Id counts as ours
    (some servers drop Ids).
    """
    wanted = subscription.queue_configuration()
    queues = list(current.get("QueueConfigurations") or [])
    mine = [q for q in queues if q.get("Id") == subscription.id]
    if len(mine) == 1 and _same_entry(mine[0], wanted):
        return None
    if not mine and any(not q.get("Id") and _same_entry(q, wanted) for q in queues):
        return None
    updated = _configuration(current)
    updated["QueueConfigurations"] = [q for q in queues if q.get("Id") != subscription.id]
    updated["QueueConfigurations"].append(wanted)
    return updated


def without_subscription(
    current: Mapping[str, Any], subscription: Subscription
) -> dict[str, Any] | None:
    """The configuration without ``subscription``, or None when it is not there."""
    wanted = subscription.queue_configuration()
    queues = list(current.get("QueueConfigurations") or [])
    kept = [
        q
        for q in queues
        if q.get("Id") != subscription.id and (q.get("Id") or not _same_entry(q, wanted))
    ]
    if len(kept) == len(queues):
        return None
    updated = _configuration(current)
    updated["QueueConfigurations"] = kept
    return updated


class BucketNotifier(Protocol):
    async def subscribe(self, server: S3Server, *, bucket: str, subscription: Subscription) -> bool:
        """Make sure the bucket notifies ``subscription``; True when something changed."""
        ...

    async def unsubscribe(
        self, server: S3Server, *, bucket: str, subscription: Subscription
    ) -> bool:
        """Remove ``subscription`` from the bucket; True when something changed."""
        ...


class S3BucketNotifier:
    """Reads and writes bucket notification configurations with boto3, on a worker thread."""

    def _client(self, server: S3Server) -> S3Client:
        try:
            import boto3  # ~30 MiB: loaded only once a Trigger needs a subscription
            from botocore.config import Config
        except ImportError:
            raise BucketError(
                "the operator cannot subscribe buckets: boto3 is not installed"
                " (pip install boto3, or the kubelambda control-plane image)"
            ) from None

        return boto3.client(
            "s3",
            endpoint_url=server.endpoint,
            region_name=server.region,
            aws_access_key_id=server.access_key,
            aws_secret_access_key=server.secret_key,
            config=Config(
                s3={"addressing_style": "path"},
                retries={"max_attempts": 2},
                connect_timeout=5,
                read_timeout=15,
            ),
        )

    def _change(
        self, server: S3Server, bucket: str, subscription: Subscription, *, add: bool
    ) -> bool:
        client = self._client(server)
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            current = client.get_bucket_notification_configuration(Bucket=bucket)
            change = (with_subscription if add else without_subscription)(
                dict(current), subscription
            )
            if change is None:
                return False
            client.put_bucket_notification_configuration(
                Bucket=bucket,
                NotificationConfiguration=change,  # type: ignore[arg-type]
            )
            return True
        except ClientError as exc:
            error = exc.response.get("Error", {})
            if not add and error.get("Code") == "NoSuchBucket":
                return False  # a bucket that is gone notifies no one: nothing to remove
            raise BucketError(
                f"{server.endpoint} bucket {bucket}: {error.get('Code')}: {error.get('Message')}"
            ) from None
        except BotoCoreError as exc:
            raise BucketError(f"{server.endpoint} bucket {bucket}: {exc}") from None

    async def subscribe(self, server: S3Server, *, bucket: str, subscription: Subscription) -> bool:
        return await asyncio.to_thread(self._change, server, bucket, subscription, add=True)

    async def unsubscribe(
        self, server: S3Server, *, bucket: str, subscription: Subscription
    ) -> bool:
        return await asyncio.to_thread(self._change, server, bucket, subscription, add=False)


@dataclass
class FakeBucketNotifier:
    """Notification configurations per (endpoint, bucket), in memory; ``error`` fails calls."""

    configurations: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    error: BucketError | None = None
    calls: list[tuple[str, str, str]] = field(default_factory=list)

    def _change(
        self, server: S3Server, bucket: str, subscription: Subscription, *, add: bool
    ) -> bool:
        self.calls.append(("subscribe" if add else "unsubscribe", bucket, subscription.id))
        if self.error is not None:
            raise self.error
        current = self.configurations.get((server.endpoint, bucket), {})
        change = (with_subscription if add else without_subscription)(current, subscription)
        if change is None:
            return False
        self.configurations[(server.endpoint, bucket)] = change
        return True

    async def subscribe(self, server: S3Server, *, bucket: str, subscription: Subscription) -> bool:
        return self._change(server, bucket, subscription, add=True)

    async def unsubscribe(
        self, server: S3Server, *, bucket: str, subscription: Subscription
    ) -> bool:
        return self._change(server, bucket, subscription, add=False)
