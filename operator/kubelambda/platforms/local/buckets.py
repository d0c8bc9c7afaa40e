"""Local mode's bucket subscriptions: each bucket Trigger with a `source` subscribes its bucket to
the S3 server's webhook target for this gateway, with the credentials of the environment.

`kubelambda local` calls `subscriptions` once, then `kubelambda.api.subscriptions`'
`subscribe` at start and `unsubscribe` at stop for each group. Local mode cannot read the
Trigger's credentials Secret, so boto3 finds credentials as it always does
(AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, ~/.aws).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from kubelambda.api import BucketSource, Trigger
from kubelambda.api.subscriptions import S3Server, Subscription, subscription_id

__all__ = ["DEFAULT_WEBHOOK_ARN", "LOCAL_OWNER", "BucketSubscriptions", "subscriptions"]

# MinIO's ARN for the webhook target `KUBELAMBDA` (MINIO_NOTIFY_WEBHOOK_*_KUBELAMBDA). An
# empty region is valid on every MinIO server: it fills in its own.
DEFAULT_WEBHOOK_ARN = "arn:minio:sqs::KUBELAMBDA:webhook"
# Not the operator's Id prefix: local mode and a cluster never take over each other's
# entries on a shared bucket.
LOCAL_OWNER = "kubelambda-local"


@dataclass(frozen=True)
class BucketSubscriptions:
    """The subscriptions of one bucket on one server: one read and one write however many
    Triggers it has. `triggers` names them (namespace/name) for messages."""

    server: S3Server
    bucket: str
    subscriptions: tuple[Subscription, ...]
    triggers: tuple[str, ...]


def subscriptions(
    triggers: Iterable[Trigger], *, region: str, queue_arn: str
) -> list[BucketSubscriptions]:
    """What local mode subscribes: one entry per bucket Trigger that names a `source`,
    grouped by server and bucket."""
    groups: dict[tuple[S3Server, str], list[tuple[Subscription, str]]] = {}
    for trigger in triggers:
        source = trigger.source
        if not isinstance(source, BucketSource) or source.source is None:
            continue
        server = S3Server(endpoint=source.source.endpoint, region=source.source.region or region)
        subscription = Subscription(
            id=subscription_id(namespace=trigger.namespace, name=trigger.name, owner=LOCAL_OWNER),
            queue_arn=queue_arn,
            events=source.events,
            prefix=source.prefix,
            suffix=source.suffix,
        )
        groups.setdefault((server, source.bucket), []).append(
            (subscription, f"{trigger.namespace}/{trigger.name}")
        )
    return [
        BucketSubscriptions(
            server=server,
            bucket=bucket,
            subscriptions=tuple(sub for sub, _ in group),
            triggers=tuple(name for _, name in group),
        )
        for (server, bucket), group in groups.items()
    ]
