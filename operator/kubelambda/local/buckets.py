"""Local mode's bucket subscriptions: each bucket Trigger with a `source` gets an entry in its
bucket's notification configuration that sends the events to the gateway's webhook target.

The runner calls `subscribe` at start and `unsubscribe` at stop. Local mode cannot read
the Trigger's credentials Secret, so boto3 finds credentials as it always does
(AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, ~/.aws).
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from kubelambda.api import BucketSource, Trigger
from kubelambda.api.trigger import queue_configuration

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = [
    "DEFAULT_WEBHOOK_ARN",
    "Boto3Notifications",
    "FakeNotifications",
    "Notifications",
    "Subscription",
    "SubscriptionError",
    "reconfigured",
    "subscribe",
    "subscriptions",
    "unsubscribe",
]

# MinIO's ARN for the webhook target `KUBELAMBDA` (MINIO_NOTIFY_WEBHOOK_*_KUBELAMBDA). An
# empty region is valid on every MinIO server: it fills in its own.
DEFAULT_WEBHOOK_ARN = "arn:minio:sqs::KUBELAMBDA:webhook"

_CONFIGURATION_KEYS = (
    "TopicConfigurations",
    "QueueConfigurations",
    "LambdaFunctionConfigurations",
    "EventBridgeConfiguration",
)


class SubscriptionError(Exception):
    """The S3 server refused a subscription or could not be reached; the message says which
    Trigger, bucket and server, and why."""


@dataclass(frozen=True, kw_only=True)
class Subscription:
    """One bucket Trigger's entry in its bucket's QueueConfigurations."""

    trigger: str  # namespace/name, for messages
    id: str
    endpoint: str
    region: str
    bucket: str
    events: tuple[str, ...]
    prefix: str = ""
    suffix: str = ""

    def queue_configuration(self, queue_arn: str) -> dict[str, Any]:
        return queue_configuration(
            entry_id=self.id,
            queue_arn=queue_arn,
            events=self.events,
            prefix=self.prefix,
            suffix=self.suffix,
        )


def subscriptions(triggers: Iterable[Trigger], *, region: str) -> list[Subscription]:
    """The subscriptions local mode makes: one per bucket Trigger that names a `source`."""
    found = []
    for trigger in triggers:
        source = trigger.source
        if not isinstance(source, BucketSource) or source.source is None:
            continue
        found.append(
            Subscription(
                trigger=f"{trigger.namespace}/{trigger.name}",
                # Not the operator's Id: local mode and a cluster never take over each
                # other's entries on a shared bucket.
                id=f"kubelambda-local.{trigger.namespace}.{trigger.name}",
                endpoint=source.source.endpoint,
                region=source.source.region or region,
                bucket=source.bucket,
                events=source.events,
                prefix=source.prefix,
                suffix=source.suffix,
            )
        )
    return found


def reconfigured(
    current: Mapping[str, Any], *, ids: Iterable[str], entries: Sequence[Mapping[str, Any]] = ()
) -> dict[str, Any]:
    """The configuration `current` without the QueueConfigurations whose Id is in `ids`,
    plus `entries`; every other entry (ours or not) stays as it was."""
    drop = set(ids)
    updated = {key: copy.deepcopy(current[key]) for key in _CONFIGURATION_KEYS if key in current}
    queues = [q for q in current.get("QueueConfigurations") or [] if q.get("Id") not in drop]
    updated["QueueConfigurations"] = [*copy.deepcopy(queues), *map(dict, entries)]
    return updated


class Notifications(Protocol):
    """Reads and replaces one bucket's notification configuration; raises SubscriptionError."""

    async def get(self, *, endpoint: str, region: str, bucket: str) -> dict[str, Any]: ...

    async def put(
        self, *, endpoint: str, region: str, bucket: str, configuration: dict[str, Any]
    ) -> None: ...


def _groups(subs: Iterable[Subscription]) -> dict[tuple[str, str, str], list[Subscription]]:
    # One read and one write per bucket, however many Triggers it has.
    groups: dict[tuple[str, str, str], list[Subscription]] = {}
    for sub in subs:
        groups.setdefault((sub.endpoint, sub.region, sub.bucket), []).append(sub)
    return groups


async def subscribe(
    subs: Iterable[Subscription], *, notifications: Notifications, queue_arn: str
) -> None:
    """Put every subscription in its bucket's configuration (replacing an older entry of
    the same Trigger, as a restart finds it)."""
    for (endpoint, region, bucket), group in _groups(subs).items():
        current = await notifications.get(endpoint=endpoint, region=region, bucket=bucket)
        updated = reconfigured(
            current,
            ids=[s.id for s in group],
            entries=[s.queue_configuration(queue_arn) for s in group],
        )
        await notifications.put(
            endpoint=endpoint, region=region, bucket=bucket, configuration=updated
        )


async def unsubscribe(subs: Iterable[Subscription], *, notifications: Notifications) -> None:
    """Take the subscriptions out of their buckets' configurations."""
    for (endpoint, region, bucket), group in _groups(subs).items():
        current = await notifications.get(endpoint=endpoint, region=region, bucket=bucket)
        ids = {s.id for s in group}
        if not any(q.get("Id") in ids for q in current.get("QueueConfigurations") or []):
            continue
        updated = reconfigured(current, ids=ids)
        await notifications.put(
            endpoint=endpoint, region=region, bucket=bucket, configuration=updated
        )


class Boto3Notifications:
    """The S3 API through boto3 (imported on first use), on a worker thread."""

    def __init__(self) -> None:
        self._clients: dict[tuple[str, str], S3Client] = {}

    def _client(self, endpoint: str, region: str) -> S3Client:
        client = self._clients.get((endpoint, region))
        if client is None:
            import boto3  # ~30 MiB: loaded only when a Trigger asks for a subscription
            from botocore.config import Config

            client = boto3.client(
                "s3",
                endpoint_url=endpoint,
                region_name=region,
                config=Config(
                    s3={"addressing_style": "path"},
                    retries={"max_attempts": 2},
                    connect_timeout=5,
                    read_timeout=15,
                ),
            )
            self._clients[(endpoint, region)] = client
        return client

    def _call(self, endpoint: str, region: str, bucket: str, put: dict[str, Any] | None) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        where = f"bucket {bucket} on {endpoint}"
        try:
            client = self._client(endpoint, region)
            if put is None:
                answer = dict(client.get_bucket_notification_configuration(Bucket=bucket))
                answer.pop("ResponseMetadata", None)
                return answer
            client.put_bucket_notification_configuration(
                Bucket=bucket,
                NotificationConfiguration=put,  # type: ignore[arg-type]
            )
            return None
        except NoCredentialsError:
            raise SubscriptionError(
                f"{where}: no S3 credentials. Local mode cannot read the Trigger's "
                "credentialsSecret: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                "(or AWS_PROFILE) for kubelambda local"
            ) from None
        except ClientError as exc:
            error = exc.response.get("Error", {})
            raise SubscriptionError(
                f"{where}: {error.get('Code')}: {error.get('Message')}"
            ) from None
        except BotoCoreError as exc:
            raise SubscriptionError(f"{where}: {exc}") from None

    async def get(self, *, endpoint: str, region: str, bucket: str) -> dict[str, Any]:
        answer: dict[str, Any] = await asyncio.to_thread(self._call, endpoint, region, bucket, None)
        return answer

    async def put(
        self, *, endpoint: str, region: str, bucket: str, configuration: dict[str, Any]
    ) -> None:
        await asyncio.to_thread(self._call, endpoint, region, bucket, configuration)


@dataclass
class FakeNotifications:
    """Configurations per (endpoint, bucket) in memory; `error` fails every call."""

    configurations: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    error: SubscriptionError | None = None
    puts: int = 0

    async def get(self, *, endpoint: str, region: str, bucket: str) -> dict[str, Any]:
        if self.error is not None:
            raise self.error
        return copy.deepcopy(self.configurations.get((endpoint, bucket), {}))

    async def put(
        self, *, endpoint: str, region: str, bucket: str, configuration: dict[str, Any]
    ) -> None:
        if self.error is not None:
            raise self.error
        self.puts += 1
        self.configurations[(endpoint, bucket)] = copy.deepcopy(configuration)
