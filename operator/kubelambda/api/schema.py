"""The models' copy of the CRD schemas in crds/: every field of a Function and a Trigger, by path.

The parsers read objects through these tables (see reader.py), so a field unknown here is
refused as kubectl refuses it. tests/unit/api checks that the tables equal the CRD files.
Paths join property names with '.', array items with '[]' and map values with '{}'.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from kubelambda.api.field import Field, integer, object_, string
from kubelambda.api.patterns import (
    ANY_HANDLER,
    AUTH_TYPES,
    BUCKET,
    CIDR,
    CONFIG_KEY,
    CONSUMER_GROUP,
    CUSTOM_RUNTIMES,
    DEFAULT_IDENTITY_SOURCE,
    DNS_LABEL,
    DNS_SUBDOMAIN,
    ENV_NAME,
    FILTER_PATTERN,
    HTTP_METHODS,
    HTTP_PATH,
    IDENTITY_SOURCE,
    IMAGE,
    KAFKA_SERVER,
    KAFKA_TOPIC,
    NAMESPACE,
    NATS_URL,
    REGION,
    RESPONSE_TYPES,
    RUNTIMES,
    S3_EVENT,
    SCHEDULE,
    SCOPE,
    SHA256,
    STARTING_POSITIONS,
    STREAM,
    SUBJECT,
    SUBJECT_FILTER,
    URL,
)

EMPTY_OBJECT: Final[Mapping[str, object]] = MappingProxyType({})

_LABEL_HINT = "a DNS-1035 label (lowercase letters, digits and '-', starting with a letter)"
_SUBDOMAIN_HINT = "a DNS subdomain (lowercase letters, digits, '-' and '.')"
_KEY_HINT = "a key of letters, digits, '-', '_' and '.'"


def _name(*, required: bool = True) -> Field:
    return string(required=required, max_length=253, pattern=DNS_SUBDOMAIN, hint=_SUBDOMAIN_HINT)


def _function_name(*, required: bool) -> Field:
    return string(required=required, max_length=63, pattern=DNS_LABEL, hint=_LABEL_HINT)


def _key_ref(prefix: str) -> dict[str, Field]:
    return {
        prefix: object_(),
        f"{prefix}.name": _name(),
        f"{prefix}.key": string(required=True, max_length=253, pattern=CONFIG_KEY, hint=_KEY_HINT),
    }


def _delivery(*, default: object) -> dict[str, Field]:
    url_hint = "an http:// or https:// URL"
    return {
        "spec.delivery": object_(default=default),
        "spec.delivery.retries": integer(0, 2, 2),
        "spec.delivery.backoffSeconds": integer(1, 3600, 60),
        "spec.delivery.deadLetter": object_(),
        "spec.delivery.deadLetter.function": _function_name(required=False),
        "spec.delivery.deadLetter.url": string(max_length=2048, pattern=URL, hint=url_hint),
        "spec.delivery.maxEventAgeSeconds": integer(60, 21600, 21600),
        **_destination("spec.delivery.onSuccess"),
        **_destination("spec.delivery.onFailure"),
    }


def _destination(prefix: str) -> dict[str, Field]:
    return {
        prefix: object_(),
        f"{prefix}.function": _function_name(required=False),
        f"{prefix}.url": string(max_length=2048, pattern=URL, hint="an http:// or https:// URL"),
        f"{prefix}.subject": string(
            max_length=255,
            pattern=SUBJECT,
            hint="a NATS subject (tokens of letters, digits, '-', '_' between dots)",
        ),
    }


def _s3_zip(prefix: str, *, required: bool = False) -> dict[str, Field]:
    """A zip on an S3 server: a deployment package (spec.code.s3) or a layer."""
    return {
        prefix: object_(required=required),
        f"{prefix}.endpoint": string(
            max_length=2048, pattern=URL, hint="an http:// or https:// URL"
        ),
        f"{prefix}.region": string(max_length=64, pattern=REGION, hint="a region name (us-east-1)"),
        f"{prefix}.bucket": string(
            required=True,
            min_length=3,
            max_length=63,
            pattern=BUCKET,
            hint="an S3 bucket name (lowercase letters, digits, '.' and '-')",
        ),
        f"{prefix}.key": string(required=True, min_length=1, max_length=1024),
        f"{prefix}.versionId": string(min_length=1, max_length=1024),
        f"{prefix}.sha256": string(
            max_length=64,
            pattern=SHA256,
            hint="a SHA-256 in hex (64 digits) or base64 (44 characters, as Lambda's CodeSha256)",
        ),
        f"{prefix}.credentialsSecret": object_(),
        f"{prefix}.credentialsSecret.name": _name(),
    }


def _jwt(prefix: str) -> dict[str, Field]:
    url_hint = "an http:// or https:// URL"
    return {
        prefix: object_(),
        f"{prefix}.issuer": string(required=True, max_length=2048, pattern=URL, hint=url_hint),
        f"{prefix}.audience": Field(
            type="array", required=True, min_items=1, max_items=50, list_type="set"
        ),
        f"{prefix}.audience[]": string(min_length=1, max_length=512),
        f"{prefix}.jwksUrl": string(max_length=2048, pattern=URL, hint=url_hint),
        f"{prefix}.scopes": Field(type="array", min_items=1, max_items=50, list_type="set"),
        f"{prefix}.scopes[]": string(
            max_length=256,
            pattern=SCOPE,
            hint="a scope (printable ASCII characters but space, '\"' and '\\')",
        ),
        f"{prefix}.identitySource": string(
            default=DEFAULT_IDENTITY_SOURCE,
            max_length=256,
            pattern=IDENTITY_SOURCE,
            hint="$request.header.NAME or $request.querystring.NAME",
        ),
    }


def _batching(
    prefix: str, *, batch_size: int, window: int | None, concurrency_min: int
) -> dict[str, Field]:
    """The event source mapping settings a queue and a kafka source share."""
    return {
        f"{prefix}.batchSize": integer(1, 10000, batch_size),
        f"{prefix}.maximumBatchingWindowSeconds": integer(0, 300, window),
        f"{prefix}.startingPositionTimestamp": Field(
            type="string", max_length=64, format="date-time"
        ),
        f"{prefix}.maximumConcurrency": integer(concurrency_min, 1000),
        f"{prefix}.functionResponseTypes": Field(type="array", max_items=1, list_type="set"),
        f"{prefix}.functionResponseTypes[]": string(enum=RESPONSE_TYPES),
        f"{prefix}.filterCriteria": object_(),
        f"{prefix}.filterCriteria.filters": Field(type="array", required=True, max_items=5),
        f"{prefix}.filterCriteria.filters[]": object_(),
        f"{prefix}.filterCriteria.filters[].pattern": string(
            required=True,
            max_length=4096,
            pattern=FILTER_PATTERN,
            hint='a JSON object, such as {"body": {"kind": ["order"]}}',
        ),
    }


def _queue(prefix: str) -> dict[str, Field]:
    return {
        prefix: object_(),
        f"{prefix}.stream": string(
            required=True,
            max_length=255,
            pattern=STREAM,
            hint="a JetStream stream name (letters, digits, '-' and '_')",
        ),
        f"{prefix}.subject": string(
            max_length=255,
            pattern=SUBJECT_FILTER,
            hint="a NATS subject (tokens of letters, digits, '-', '_' between dots;"
            " * for one token, > last for the rest)",
        ),
        f"{prefix}.nats": object_(),
        f"{prefix}.nats.url": string(
            required=True,
            max_length=2048,
            pattern=NATS_URL,
            hint="a nats://, tls://, ws:// or wss:// URL",
        ),
        f"{prefix}.nats.credentialsSecret": object_(),
        f"{prefix}.nats.credentialsSecret.name": _name(),
        **_batching(prefix, batch_size=10, window=0, concurrency_min=2),
        f"{prefix}.startingPosition": string(enum=STARTING_POSITIONS, default="TRIM_HORIZON"),
        f"{prefix}.maxReceiveCount": integer(1, 1000, 3),
    }


def _kafka(prefix: str) -> dict[str, Field]:
    return {
        prefix: object_(),
        f"{prefix}.bootstrapServers": Field(
            type="array", required=True, min_items=1, max_items=10, list_type="set"
        ),
        f"{prefix}.bootstrapServers[]": string(
            max_length=300, pattern=KAFKA_SERVER, hint="host:port, with a port from 1 to 65535"
        ),
        f"{prefix}.topics": Field(
            type="array", required=True, min_items=1, max_items=10, list_type="set"
        ),
        f"{prefix}.topics[]": string(
            max_length=249,
            pattern=KAFKA_TOPIC,
            hint="a Kafka topic name (letters, digits, '.', '-' and '_', not starting with '.')",
        ),
        f"{prefix}.consumerGroup": string(
            min_length=1,
            max_length=200,
            pattern=CONSUMER_GROUP,
            hint="a consumer group id (letters, digits and - / * : _ + = . @)",
        ),
        f"{prefix}.auth": object_(default=EMPTY_OBJECT),
        f"{prefix}.auth.secretRef": object_(),
        f"{prefix}.auth.secretRef.name": _name(),
        f"{prefix}.auth.tls": Field(type="boolean", default=False),
        # No default window: unset means Lambda's 500 ms, which whole seconds cannot say.
        **_batching(prefix, batch_size=100, window=None, concurrency_min=1),
        f"{prefix}.startingPosition": string(required=True, enum=STARTING_POSITIONS),
        f"{prefix}.maximumRetryAttempts": integer(-1, 10000, -1),
    }


_ROOT: Final = {
    "apiVersion": string(),
    "kind": string(),
    "metadata": object_(),
    "spec": object_(required=True),
    "status": object_(),
}

_ENV = "spec.env[].valueFrom"

FUNCTION_FIELDS: Final[Mapping[str, Field]] = MappingProxyType(
    {
        **_ROOT,
        "spec.runtime": string(enum=(*RUNTIMES, *CUSTOM_RUNTIMES)),
        "spec.image": string(
            min_length=1, max_length=512, pattern=IMAGE, hint="an image reference"
        ),
        "spec.handler": string(
            max_length=128, pattern=ANY_HANDLER, hint="a handler name without spaces"
        ),
        "spec.code": object_(),
        "spec.code.inline": object_(),
        "spec.code.inline.files": Field(
            type="object", required=True, min_properties=1, max_properties=100
        ),
        "spec.code.inline.files{}": string(max_length=1048576),
        "spec.code.configMapRef": object_(),
        "spec.code.configMapRef.name": _name(),
        "spec.code.path": string(min_length=1, max_length=4096),
        **_s3_zip("spec.code.s3"),
        "spec.layers": Field(type="array", max_items=5),
        "spec.layers[]": object_(),
        **_s3_zip("spec.layers[].s3", required=True),
        "spec.env": Field(type="array", max_items=100, list_type="map", list_map_keys=("name",)),
        "spec.env[]": object_(),
        "spec.env[].name": string(
            required=True,
            max_length=128,
            pattern=ENV_NAME,
            hint="a name of letters, digits and '_', not starting with a digit",
        ),
        "spec.env[].value": string(max_length=32768),
        _ENV: object_(),
        **_key_ref(f"{_ENV}.configMapKeyRef"),
        f"{_ENV}.configMapKeyRef.optional": Field(type="boolean"),
        **_key_ref(f"{_ENV}.secretKeyRef"),
        f"{_ENV}.secretKeyRef.optional": Field(type="boolean"),
        f"{_ENV}.fieldRef": object_(),
        f"{_ENV}.fieldRef.apiVersion": string(max_length=64),
        f"{_ENV}.fieldRef.fieldPath": string(required=True, min_length=1, max_length=256),
        f"{_ENV}.resourceFieldRef": object_(),
        f"{_ENV}.resourceFieldRef.containerName": string(max_length=63),
        f"{_ENV}.resourceFieldRef.resource": string(required=True, min_length=1, max_length=64),
        f"{_ENV}.resourceFieldRef.divisor": Field(type="int-or-string"),
        "spec.memoryMB": integer(128, 10240, 128),
        "spec.timeoutSeconds": integer(1, 900, 3),
        "spec.concurrency": integer(1, 1000, 1),
        "spec.reservedConcurrency": integer(0, 1_000_000),
        "spec.throttling": object_(),
        "spec.throttling.rateLimit": Field(
            type="integer", required=True, minimum=1, maximum=1_000_000
        ),
        "spec.throttling.burstLimit": integer(1, 1_000_000),
        "spec.invoke": object_(default=EMPTY_OBJECT),
        "spec.invoke.anonymous": Field(type="boolean", default=False),
        "spec.network": object_(),
        "spec.network.egress": Field(type="array", max_items=50),
        "spec.network.egress[]": object_(),
        "spec.network.egress[].cidr": string(
            max_length=49, pattern=CIDR, hint="an IP block such as 10.0.0.0/8"
        ),
        "spec.network.egress[].namespace": string(
            max_length=63, pattern=NAMESPACE, hint="a namespace name"
        ),
        "spec.network.egress[].podLabels": Field(type="object", max_properties=20),
        "spec.network.egress[].podLabels{}": string(max_length=63),
        "spec.network.egress[].ports": Field(type="array", max_items=20, list_type="set"),
        "spec.network.egress[].ports[]": integer(1, 65535),
        "spec.scaling": object_(default=EMPTY_OBJECT),
        "spec.scaling.minReplicas": integer(0, 1000, 0),
        "spec.scaling.maxReplicas": integer(1, 1000, 10),
        "spec.scaling.targetConcurrency": integer(1, 1000),
        "spec.scaling.scaleToZeroAfterSeconds": integer(0, 86400, 60),
        # A Function's delivery always applies, so it is defaulted as a whole.
        **_delivery(default=EMPTY_OBJECT),
    }
)

TRIGGER_FIELDS: Final[Mapping[str, Field]] = MappingProxyType(
    {
        **_ROOT,
        "spec.function": _function_name(required=True),
        "spec.http": object_(),
        "spec.http.path": string(
            required=True,
            max_length=1024,
            pattern=HTTP_PATH,
            hint="a URL path starting with '/' (no '.' or '..' segments, no '//')",
        ),
        "spec.http.methods": Field(
            type="array", min_items=1, max_items=8, default=("ANY",), list_type="set"
        ),
        "spec.http.methods[]": string(enum=HTTP_METHODS),
        "spec.http.host": string(max_length=253, pattern=DNS_SUBDOMAIN, hint=_SUBDOMAIN_HINT),
        "spec.http.auth": object_(default=EMPTY_OBJECT),
        "spec.http.auth.type": string(enum=AUTH_TYPES, default="none"),
        **_key_ref("spec.http.auth.secretRef"),
        **_jwt("spec.http.auth.jwt"),
        "spec.schedule": object_(),
        "spec.schedule.expression": string(
            required=True,
            max_length=256,
            pattern=SCHEDULE,
            hint="rate(VALUE UNIT) or cron(MINUTES HOURS DAY-OF-MONTH MONTH DAY-OF-WEEK YEAR)",
        ),
        "spec.schedule.timezone": string(default="UTC", max_length=64),
        "spec.schedule.start": Field(type="string", max_length=64, format="date-time"),
        "spec.schedule.end": Field(type="string", max_length=64, format="date-time"),
        "spec.bucket": object_(),
        "spec.bucket.bucket": string(
            required=True,
            min_length=3,
            max_length=63,
            pattern=BUCKET,
            hint="an S3 bucket name (lowercase letters, digits, '.' and '-')",
        ),
        "spec.bucket.events": Field(
            type="array",
            min_items=1,
            max_items=32,
            default=("s3:ObjectCreated:*",),
            list_type="set",
        ),
        "spec.bucket.events[]": string(
            max_length=128, pattern=S3_EVENT, hint="an S3 event name (s3:ObjectCreated:*)"
        ),
        "spec.bucket.prefix": string(max_length=1024),
        "spec.bucket.suffix": string(max_length=1024),
        "spec.bucket.source": object_(),
        "spec.bucket.source.endpoint": string(
            required=True, max_length=2048, pattern=URL, hint="an http:// or https:// URL"
        ),
        "spec.bucket.source.credentialsSecret": object_(required=True),
        "spec.bucket.source.credentialsSecret.name": _name(),
        "spec.bucket.source.region": string(
            max_length=64, pattern=REGION, hint="a region name (us-east-1)"
        ),
        **_queue("spec.queue"),
        **_kafka("spec.kafka"),
        # No default: a Trigger without delivery uses its Function's.
        **_delivery(default=None),
    }
)
