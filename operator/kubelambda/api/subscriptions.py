"""Bucket subscriptions, the same on every platform: a bucket Trigger's entry in its bucket's
notification configuration, which sends the events to the gateway's webhook target.

The controller (a Trigger with a `source`) and local mode (at start and stop) both call
`subscribe` and `unsubscribe` with the S3 server's `BucketNotifications`
(`kubelambda.platforms.s3` for real, `FakeNotifications` in tests). The configuration
changes themselves are pure (`with_subscriptions`, `without_subscriptions`): every
entry that is not ours stays as it was.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = [
    "BucketError",
    "BucketNotFound",
    "BucketNotifications",
    "FakeNotifications",
    "S3Server",
    "Subscription",
    "subscribe",
    "subscription_id",
    "unsubscribe",
    "with_subscriptions",
    "without_subscriptions",
]

_CONFIGURATION_KEYS = (
    "TopicConfigurations",
    "QueueConfigurations",
    "LambdaFunctionConfigurations",
    "EventBridgeConfiguration",
)


class BucketError(Exception):
    """The S3 server refused or could not be reached; the message says which server, bucket
    and why."""


class BucketNotFound(BucketError):
    """The bucket does not exist (S3's NoSuchBucket)."""


@dataclass(frozen=True)
class S3Server:
    """An S3 endpoint and its credentials: a Trigger's Secret on a cluster, or None for the
    default chain (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE) in local mode."""

    endpoint: str
    region: str
    access_key: str | None = None
    secret_key: str | None = field(default=None, repr=False)


@dataclass(frozen=True, kw_only=True)
class Subscription:
    """One entry of a bucket's QueueConfigurations, identified by `id`."""

    id: str
    queue_arn: str
    events: tuple[str, ...]
    prefix: str = ""
    suffix: str = ""

    def entry(self) -> dict[str, Any]:
        """The entry as PutBucketNotificationConfiguration takes it."""
        entry: dict[str, Any] = {
            "Id": self.id,
            "QueueArn": self.queue_arn,
            "Events": [*self.events],
        }
        rules = [
            {"Name": name, "Value": value}
            for name, value in (("prefix", self.prefix), ("suffix", self.suffix))
            if value
        ]
        if rules:
            entry["Filter"] = {"Key": {"FilterRules": rules}}
        return entry


def subscription_id(*, namespace: str, name: str, owner: str = "kubelambda") -> str:
    """The entry Id of a Trigger's subscription; namespaces hold no '.', so it is unambiguous.

    Local mode passes its own `owner`, so that it and a cluster never take over each
    other's entries on a shared bucket.
    """
    return f"{owner}.{namespace}.{name}"


def _same_entry(have: Mapping[str, Any], want: Mapping[str, Any]) -> bool:
    def rules(entry: Mapping[str, Any]) -> list[tuple[str, str]]:
        found = ((entry.get("Filter") or {}).get("Key") or {}).get("FilterRules") or []
        return sorted((str(r.get("Name", "")).lower(), str(r.get("Value", ""))) for r in found)

    return (
        have.get("QueueArn") == want.get("QueueArn")
        and sorted(have.get("Events") or []) == sorted(want.get("Events") or [])
        and rules(have) == rules(want)
    )


def _ours(entry: Mapping[str, Any], subscription: Subscription) -> bool:
    """Whether `entry` is `subscription`'s: the same Id, or no Id and the same content (some
    servers drop Ids)."""
    if entry.get("Id"):
        return bool(entry.get("Id") == subscription.id)
    return _same_entry(entry, subscription.entry())


def _configuration(current: Mapping[str, Any], queues: list[Any]) -> dict[str, Any]:
    updated = {key: copy.deepcopy(current[key]) for key in _CONFIGURATION_KEYS if key in current}
    updated["QueueConfigurations"] = copy.deepcopy(queues)
    return updated


def with_subscriptions(
    current: Mapping[str, Any], subscriptions: Sequence[Subscription]
) -> dict[str, Any] | None:
    """The configuration with each of `subscriptions` in it exactly once, or None when it
    holds them already. An entry of ours that differs is replaced."""
    queues = list(current.get("QueueConfigurations") or [])
    changed = False
    for subscription in subscriptions:
        wanted = subscription.entry()
        mine = [q for q in queues if _ours(q, subscription)]
        if len(mine) == 1 and _same_entry(mine[0], wanted):
            continue
        queues = [q for q in queues if not _ours(q, subscription)] + [wanted]
        changed = True
    return _configuration(current, queues) if changed else None


def without_subscriptions(
    current: Mapping[str, Any], subscriptions: Sequence[Subscription]
) -> dict[str, Any] | None:
    """The configuration without `subscriptions`, or None when none of them is there."""
    queues = list(current.get("QueueConfigurations") or [])
    kept = [q for q in queues if not any(_ours(q, s) for s in subscriptions)]
    if len(kept) == len(queues):
        return None
    return _configuration(current, kept)


class BucketNotifications(Protocol):
    """Reads and replaces one bucket's notification configuration on an S3 server.

    Both raise BucketError (BucketNotFound for a missing bucket)."""

    async def get(self, server: S3Server, *, bucket: str) -> dict[str, Any]: ...

    async def put(
        self, server: S3Server, *, bucket: str, configuration: dict[str, Any]
    ) -> None: ...


async def subscribe(
    notifications: BucketNotifications,
    server: S3Server,
    *,
    bucket: str,
    subscriptions: Sequence[Subscription],
) -> bool:
    """Make sure the bucket notifies every one of `subscriptions` (one read, at most one
    write); True when something changed."""
    current = await notifications.get(server, bucket=bucket)
    updated = with_subscriptions(current, subscriptions)
    if updated is None:
        return False
    await notifications.put(server, bucket=bucket, configuration=updated)
    return True


async def unsubscribe(
    notifications: BucketNotifications,
    server: S3Server,
    *,
    bucket: str,
    subscriptions: Sequence[Subscription],
) -> bool:
    """Take `subscriptions` out of the bucket's configuration; True when something changed.
    A bucket that is gone notifies no one: nothing to remove."""
    try:
        current = await notifications.get(server, bucket=bucket)
    except BucketNotFound:
        return False
    updated = without_subscriptions(current, subscriptions)
    if updated is None:
        return False
    await notifications.put(server, bucket=bucket, configuration=updated)
    return True


@dataclass
class FakeNotifications:
    """Configurations per (endpoint, bucket) in memory, for tests; `error` fails every call,
    and a bucket in `missing` answers BucketNotFound."""

    configurations: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    error: BucketError | None = None
    missing: set[str] = field(default_factory=set)
    calls: list[tuple[str, str]] = field(default_factory=list)

    def _check(self, verb: str, server: S3Server, bucket: str) -> None:
        self.calls.append((verb, bucket))
        if self.error is not None:
            raise self.error
        if bucket in self.missing:
            raise BucketNotFound(f"bucket {bucket} on {server.endpoint}: NoSuchBucket")

    @property
    def puts(self) -> int:
        return sum(1 for verb, _ in self.calls if verb == "put")

    async def get(self, server: S3Server, *, bucket: str) -> dict[str, Any]:
        self._check("get", server, bucket)
        return copy.deepcopy(self.configurations.get((server.endpoint, bucket), {}))

    async def put(self, server: S3Server, *, bucket: str, configuration: dict[str, Any]) -> None:
        self._check("put", server, bucket)
        self.configurations[(server.endpoint, bucket)] = copy.deepcopy(configuration)
