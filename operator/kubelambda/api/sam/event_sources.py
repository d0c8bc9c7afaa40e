"""SAM's SQS and SelfManagedKafka events as queue and kafka Triggers (Lambda's event source
mappings): an SQS queue becomes the JetStream stream named after it, with its redrive policy's
maxReceiveCount and dead-letter queue; Kafka's Secrets Manager secret becomes a Secret's name.

events.py calls ``queue_trigger`` and ``kafka_trigger``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Final

from kubelambda.api.patterns import (
    CONSUMER_GROUP,
    KAFKA_SERVER,
    KAFKA_TOPIC,
    RESPONSE_TYPES,
    STARTING_POSITIONS,
    STREAM,
)
from kubelambda.api.sam.destinations import destination, queue_stream
from kubelambda.api.sam.names import arn_resource, secret_name
from kubelambda.api.sam.resources import logical_ref
from kubelambda.api.sam.scope import Scope, mapping

# Kafka SourceAccessConfigurations → the keys the Trigger's Secret must hold.
_KAFKA_SECRETS: Final = {
    "BASIC_AUTH": "username, password (mechanism PLAIN)",
    "SASL_SCRAM_256_AUTH": "username, password and mechanism SCRAM-SHA-256",
    "SASL_SCRAM_512_AUTH": "username, password and mechanism SCRAM-SHA-512",
    "CLIENT_CERTIFICATE_TLS_AUTH": "tls.crt and tls.key (PEM)",
    "SERVER_ROOT_CA_CERTIFICATE": "ca.crt (PEM)",
}


def _batching(
    scope: Scope, resource: str, at: str, props: Mapping[str, object]
) -> dict[str, object]:
    """What queue and kafka share: batch size and window, filters, response types."""
    report = scope.report
    spec: dict[str, object] = {}
    size = scope.integer(resource, f"{at}.BatchSize", props.get("BatchSize"), low=1, high=10000)
    if size is not None:
        spec["batchSize"] = size
    window = scope.integer(
        resource,
        f"{at}.MaximumBatchingWindowInSeconds",
        props.get("MaximumBatchingWindowInSeconds"),
        low=0,
        high=300,
    )
    if window is not None:
        spec["maximumBatchingWindowSeconds"] = window
    filters = mapping(props.get("FilterCriteria")).get("Filters")
    if isinstance(filters, list) and scope.plain(resource, f"{at}.FilterCriteria", filters):
        patterns = []
        for item in filters:
            pattern = mapping(item).get("Pattern")
            patterns.append(
                {"pattern": pattern if isinstance(pattern, str) else json.dumps(pattern)}
            )
        spec["filterCriteria"] = {"filters": patterns}
    types = props.get("FunctionResponseTypes")
    if isinstance(types, list) and types:
        if all(t in RESPONSE_TYPES for t in types):
            spec["functionResponseTypes"] = types
        else:
            report.not_mapped(resource, f"{at}.FunctionResponseTypes", f"{types!r} not mapped")
    return spec


def queue_trigger(
    scope: Scope, resource: str, at: str, props: Mapping[str, object], raw: Mapping[str, object]
) -> dict[str, object] | None:
    report = scope.report
    arn = scope.text(resource, f"{at}.Queue", props.get("Queue"))
    if arn is None:
        return None
    queue = arn_resource(arn)
    stream = queue_stream(queue)
    if len(stream) > 255 or re.fullmatch(STREAM, stream) is None:
        report.not_mapped(resource, f"{at}.Queue", f"{queue!r} cannot name a JetStream stream")
        return None
    spec: dict[str, object] = {"stream": stream, **_batching(scope, resource, at, props)}
    most = mapping(props.get("ScalingConfig")).get("MaximumConcurrency")
    concurrency = scope.integer(
        resource, f"{at}.ScalingConfig.MaximumConcurrency", most, low=2, high=1000
    )
    if concurrency is not None:
        spec["maximumConcurrency"] = concurrency
    trigger: dict[str, object] = {"queue": spec}
    report.note(
        resource,
        f"{at}.Queue",
        f"SQS queue {queue}: the Trigger reads JetStream stream {stream}; create it (capturing"
        f" subject {stream}) and publish the queue's messages there",
    )
    queue_id = logical_ref(raw.get("Queue"))
    queue_resource = mapping(scope.resolver.resources.get(queue_id or ""))
    if queue_resource.get("Type") != "AWS::SQS::Queue":
        report.note(
            resource,
            f"{at}.Queue",
            "the queue is not in the template: its redrive"
            " policy is unknown, so spec.queue.maxReceiveCount keeps its default (3)",
        )
        return trigger
    scope.used.add(queue_id or queue)
    queue_props = scope.resolver.resolve(queue_resource.get("Properties"))
    redrive = _json_object(mapping(queue_props).get("RedrivePolicy"))
    if not redrive:
        spec["maxReceiveCount"] = 1000
        report.note(
            queue_id or queue,
            "RedrivePolicy",
            "none: a failing message is received up to 1000 times (a queue Trigger's most),"
            " where SQS keeps it until its retention period ends",
        )
        return trigger
    receives = scope.integer(
        queue_id or queue,
        "RedrivePolicy.maxReceiveCount",
        redrive.get("maxReceiveCount"),
        low=1,
        high=1000,
    )
    if receives is not None:
        spec["maxReceiveCount"] = receives
    raw_redrive = mapping(mapping(queue_resource.get("Properties")).get("RedrivePolicy"))
    target_id = logical_ref(raw_redrive.get("deadLetterTargetArn"))
    if target_id is not None and target_id in scope.resolver.resources:
        scope.used.add(target_id)
    if "deadLetterTargetArn" in redrive:
        target = destination(
            scope,
            queue_id or queue,
            "RedrivePolicy",
            {"Type": "SQS", "Destination": redrive["deadLetterTargetArn"]},
        )
        if target is not None:
            trigger["delivery"] = {"onFailure": target}
            report.note(
                queue_id or queue,
                "RedrivePolicy",
                "a message that fails for good goes"
                " to the Trigger's spec.delivery.onFailure as Lambda's invocation record,"
                " not as the message itself",
            )
    return trigger


def _json_object(value: object) -> Mapping[str, object]:
    """A CloudFormation Json property: an object, or an object written as a JSON string."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    return mapping(value)


def kafka_trigger(
    scope: Scope, resource: str, at: str, props: Mapping[str, object], raw: Mapping[str, object]
) -> dict[str, object] | None:
    report = scope.report
    servers = props.get("KafkaBootstrapServers")
    topics = props.get("Topics")
    if not scope.plain(resource, at, [servers, topics]):
        return None
    if not (
        isinstance(servers, list)
        and 1 <= len(servers) <= 10
        and all(isinstance(s, str) and re.fullmatch(KAFKA_SERVER, s) for s in servers)
    ):
        report.not_mapped(
            resource, f"{at}.KafkaBootstrapServers", f"{servers!r}: 1 to 10 host:port"
        )
        return None
    if not (
        isinstance(topics, list)
        and 1 <= len(topics) <= 10
        and all(isinstance(t, str) and re.fullmatch(KAFKA_TOPIC, t) for t in topics)
    ):
        report.not_mapped(resource, f"{at}.Topics", f"{topics!r}: 1 to 10 topic names")
        return None
    spec: dict[str, object] = {"bootstrapServers": servers, "topics": topics}
    group = scope.text(resource, f"{at}.ConsumerGroupId", props.get("ConsumerGroupId"))
    if group is not None and re.fullmatch(CONSUMER_GROUP, group):
        spec["consumerGroup"] = group
    elif group is not None:
        report.not_mapped(resource, f"{at}.ConsumerGroupId", f"{group!r} is not a group id")
    position = scope.text(resource, f"{at}.StartingPosition", props.get("StartingPosition"))
    if position is None:
        position = "TRIM_HORIZON"
        report.not_mapped(
            resource,
            f"{at}.StartingPosition",
            "not given, and a kafka Trigger needs one: TRIM_HORIZON (the oldest record) chosen",
        )
    if position not in STARTING_POSITIONS:
        report.not_mapped(resource, f"{at}.StartingPosition", f"{position!r} is not a position")
        return None
    spec["startingPosition"] = position
    if position == "AT_TIMESTAMP":
        seconds = props.get("StartingPositionTimestamp")
        if not isinstance(seconds, int | float) or isinstance(seconds, bool):
            report.not_mapped(resource, f"{at}.StartingPositionTimestamp", "needs Unix seconds")
            return None
        moment = datetime.fromtimestamp(seconds, UTC)
        spec["startingPositionTimestamp"] = moment.isoformat().replace("+00:00", "Z")
    spec.update(_batching(scope, resource, at, props))
    retries = scope.integer(
        resource,
        f"{at}.MaximumRetryAttempts",
        props.get("MaximumRetryAttempts"),
        low=-1,
        high=10000,
    )
    if retries is not None:
        spec["maximumRetryAttempts"] = retries
    auth = _kafka_auth(
        scope, resource, f"{at}.SourceAccessConfigurations", props.get("SourceAccessConfigurations")
    )
    if auth is None:
        return None
    if auth:
        spec["auth"] = auth
    trigger: dict[str, object] = {"kafka": spec}
    failure = mapping(mapping(props.get("DestinationConfig")).get("OnFailure"))
    if failure:
        target = destination(scope, resource, f"{at}.DestinationConfig.OnFailure", failure)
        if target is not None:
            trigger["delivery"] = {"onFailure": target}
    return trigger


def _kafka_auth(scope: Scope, resource: str, prop: str, value: object) -> dict[str, object] | None:
    """``auth`` for SourceAccessConfigurations ({} for none); None (reported) when they need
    more than the one Secret a kafka Trigger reads."""
    report = scope.report
    if value is None:
        return {}
    if not (isinstance(value, list) and scope.plain(resource, prop, value)):
        return None
    secrets: dict[str, str] = {}
    for item in value:
        kind, uri = str(mapping(item).get("Type", "")), str(mapping(item).get("URI", ""))
        if kind in ("VPC_SUBNET", "VPC_SECURITY_GROUP"):
            report.ignored(
                resource,
                f"{prop}.{kind}",
                "the dispatcher reaches the brokers from the cluster's network",
            )
        elif kind in _KAFKA_SECRETS:
            secrets[kind] = uri
        else:
            report.not_mapped(resource, f"{prop}.{kind}", "not mapped")
            return None
    if not secrets:
        return {}
    names = {secret_name(uri) for uri in secrets.values()}
    if len(names) > 1 or len(set(secrets) - {"SERVER_ROOT_CA_CERTIFICATE"}) > 1:
        report.not_mapped(
            resource,
            prop,
            f"{', '.join(sorted(secrets))} name {len(names)}"
            " secrets; a kafka Trigger reads one Secret with every key",
        )
        return None
    [name] = names
    keys = "; ".join(_KAFKA_SECRETS[kind] for kind in sorted(secrets))
    report.note(
        resource,
        prop,
        f"the Trigger reads Kubernetes Secret {name} (named after the"
        f" Secrets Manager secret): create it with {keys}; the brokers are reached over TLS",
    )
    return {"secretRef": {"name": name}, "tls": True}
