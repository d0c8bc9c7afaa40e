"""The models' copy of the CRD schemas in crds/: every field with its type, default and bounds.

The parsers read objects through these tables (see reader.py), so a field unknown here is
refused as kubectl refuses it. tests/unit/api checks that the tables equal the CRD files.
Paths join property names with '.', array items with '[]' and map values with '{}'.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

EMPTY_OBJECT: Final[Mapping[str, object]] = MappingProxyType({})

RUNTIMES: Final = ("python3.11", "python3.12", "python3.13")
# Lambda's OS-only runtimes: the code holds an executable bootstrap that speaks the Lambda
# Runtime API (the runtime's kubelambda_runtime/custom/); the handler is optional and free-form.
CUSTOM_RUNTIMES: Final = ("provided.al2023", "provided.al2")
CUSTOM_RUNTIME_PREFIX: Final = "provided"
HTTP_METHODS: Final = ("ANY", "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
AUTH_TYPES: Final = ("none", "apiKey", "jwt")

DNS_LABEL: Final = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
CONFIG_KEY: Final = r"^[-._a-zA-Z0-9]+$"
HANDLER: Final = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$"
# Lambda's own pattern for a handler; a Python runtime's must also match HANDLER.
ANY_HANDLER: Final = r"^[^\s]+$"
IMAGE: Final = r"^[A-Za-z0-9][A-Za-z0-9._/:@-]*$"
ENV_NAME: Final = r"^[A-Za-z_][A-Za-z0-9_]*$"
URL: Final = r"^https?://[A-Za-z0-9._~:/?#@!$&()*+,;=%-]+$"
HTTP_PATH: Final = r"^(/\.?[A-Za-z0-9_~!$&()*+,;=:@%-][A-Za-z0-9._~!$&()*+,;=:@%-]*)*/?$"
BUCKET: Final = r"^[a-z0-9][a-z0-9.-]*[a-z0-9]$"
S3_EVENT: Final = r"^s3:[A-Za-z]+(:(\*|[A-Za-z]+))?$"
REGION: Final = r"^[a-z0-9-]+$"
# An OAuth scope token (RFC 6749 3.3: printable ASCII but space, '"' and '\\').
SCOPE: Final = r"^[!#-\[\]-~]+$"
IDENTITY_SOURCE: Final = r"^\$request\.(header|querystring)\.[-A-Za-z0-9_.]+$"
DEFAULT_IDENTITY_SOURCE: Final = "$request.header.Authorization"
SUBJECT: Final = r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$"
SCHEDULE: Final = r"^(rate|cron)\(.+\)$"
CIDR: Final = r"^[0-9A-Fa-f.:]+/[0-9]{1,3}$"
# A SHA-256 in hex (sha256sum) or base64 (Lambda's CodeSha256, S3's ChecksumSHA256).
SHA256: Final = r"^([0-9a-fA-F]{64}|[A-Za-z0-9+/]{43}=)$"
STREAM: Final = r"^[A-Za-z0-9_-]+$"
# A subject filter: tokens or the wildcards * (one token) and > (the rest, last only).
SUBJECT_FILTER: Final = r"^(>|(\*|[A-Za-z0-9_-]+)(\.(\*|[A-Za-z0-9_-]+))*(\.>)?)$"
NATS_URL: Final = r"^(nats|tls|ws|wss)://[A-Za-z0-9._~:/?#@!$&()*+,;=%-]+$"
# Lambda's SelfManagedEventSource endpoint pattern, with the port held to 1-65535.
KAFKA_SERVER: Final = (
    r"^(([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])\.)*"
    r"([A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9])"
    r":([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])$"
)
KAFKA_TOPIC: Final = r"^[A-Za-z0-9_-][A-Za-z0-9._-]*$"
CONSUMER_GROUP: Final = r"^[a-zA-Z0-9/*:_+=.@-]+$"
# Only a first check, that kubectl can make: the models parse the pattern as JSON.
FILTER_PATTERN: Final = r"^\s*\{[\s\S]*\}\s*$"
STARTING_POSITIONS: Final = ("TRIM_HORIZON", "LATEST", "AT_TIMESTAMP")
RESPONSE_TYPES: Final = ("ReportBatchItemFailures",)
# Lambda: a queue mapping with a larger BatchSize needs a batching window of at least 1 s.
QUEUE_BATCH_WITHOUT_WINDOW: Final = 10
NAMESPACE: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# Checked by CEL in the CRD (map keys cannot carry a pattern), so not part of the tables.
FILE_NAME: Final = r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*(/[A-Za-z0-9_-][A-Za-z0-9_.-]*)*$"
FILE_NAME_MAX_LENGTH: Final = 253


@dataclass(frozen=True, kw_only=True)
class Field:
    """One node of a CRD schema: the keywords the models enforce, in the CRD's own vocabulary.

    ``hint`` says in words what ``pattern`` means, for error messages; it is not in the CRD.
    ``default`` is a JSON-like value (tuples for arrays); None means no default.
    """

    type: str
    required: bool = False
    default: object = None
    minimum: int | None = None
    maximum: int | None = None
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None
    enum: tuple[str, ...] | None = None
    min_items: int | None = None
    max_items: int | None = None
    min_properties: int | None = None
    max_properties: int | None = None
    list_type: str | None = None
    list_map_keys: tuple[str, ...] | None = None
    # The CRD's format (date-time); the models check it themselves.
    format: str | None = None
    hint: str = ""

    def crd_keywords(self) -> dict[str, object]:
        """This field as the CRD writes it (camelCase keywords, lists for tuples)."""
        names = {
            "minimum": self.minimum,
            "maximum": self.maximum,
            "minLength": self.min_length,
            "maxLength": self.max_length,
            "pattern": self.pattern,
            "format": self.format,
            "enum": list(self.enum) if self.enum is not None else None,
            "minItems": self.min_items,
            "maxItems": self.max_items,
            "minProperties": self.min_properties,
            "maxProperties": self.max_properties,
            "x-kubernetes-list-type": self.list_type,
            "x-kubernetes-list-map-keys": (
                list(self.list_map_keys) if self.list_map_keys is not None else None
            ),
            "default": _json(self.default),
        }
        keywords: dict[str, object] = {"type": self.type, "required": self.required}
        keywords.update({k: v for k, v in names.items() if v is not None})
        return keywords


def _json(value: object) -> object:
    if isinstance(value, tuple):
        return [_json(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _json(v) for k, v in value.items()}
    return value


def _string(
    *,
    required: bool = False,
    default: str | None = None,
    min_length: int | None = None,
    max_length: int | None = None,
    pattern: str | None = None,
    enum: tuple[str, ...] | None = None,
    hint: str = "",
) -> Field:
    return Field(
        type="string",
        required=required,
        default=default,
        min_length=min_length,
        max_length=max_length,
        pattern=pattern,
        enum=enum,
        hint=hint,
    )


def _integer(low: int, high: int, default: int | None = None) -> Field:
    return Field(type="integer", minimum=low, maximum=high, default=default)


def _object(*, required: bool = False, default: object = None) -> Field:
    return Field(type="object", required=required, default=default)


_LABEL_HINT = "a DNS-1035 label (lowercase letters, digits and '-', starting with a letter)"
_SUBDOMAIN_HINT = "a DNS subdomain (lowercase letters, digits, '-' and '.')"
_KEY_HINT = "a key of letters, digits, '-', '_' and '.'"


def _name(*, required: bool = True) -> Field:
    return _string(required=required, max_length=253, pattern=DNS_SUBDOMAIN, hint=_SUBDOMAIN_HINT)


def _function_name(*, required: bool) -> Field:
    return _string(required=required, max_length=63, pattern=DNS_LABEL, hint=_LABEL_HINT)


def _key_ref(prefix: str) -> dict[str, Field]:
    return {
        prefix: _object(),
        f"{prefix}.name": _name(),
        f"{prefix}.key": _string(required=True, max_length=253, pattern=CONFIG_KEY, hint=_KEY_HINT),
    }


def _delivery(*, default: object) -> dict[str, Field]:
    url_hint = "an http:// or https:// URL"
    return {
        "spec.delivery": _object(default=default),
        "spec.delivery.retries": _integer(0, 2, 2),
        "spec.delivery.backoffSeconds": _integer(1, 3600, 60),
        "spec.delivery.deadLetter": _object(),
        "spec.delivery.deadLetter.function": _function_name(required=False),
        "spec.delivery.deadLetter.url": _string(max_length=2048, pattern=URL, hint=url_hint),
        "spec.delivery.maxEventAgeSeconds": _integer(60, 21600, 21600),
        **_destination("spec.delivery.onSuccess"),
        **_destination("spec.delivery.onFailure"),
    }


def _destination(prefix: str) -> dict[str, Field]:
    return {
        prefix: _object(),
        f"{prefix}.function": _function_name(required=False),
        f"{prefix}.url": _string(max_length=2048, pattern=URL, hint="an http:// or https:// URL"),
        f"{prefix}.subject": _string(
            max_length=255,
            pattern=SUBJECT,
            hint="a NATS subject (tokens of letters, digits, '-', '_' between dots)",
        ),
    }


def _s3_zip(prefix: str, *, required: bool = False) -> dict[str, Field]:
    """A zip on an S3 server: a deployment package (spec.code.s3) or a layer."""
    return {
        prefix: _object(required=required),
        f"{prefix}.endpoint": _string(
            max_length=2048, pattern=URL, hint="an http:// or https:// URL"
        ),
        f"{prefix}.region": _string(
            max_length=64, pattern=REGION, hint="a region name (us-east-1)"
        ),
        f"{prefix}.bucket": _string(
            required=True,
            min_length=3,
            max_length=63,
            pattern=BUCKET,
            hint="an S3 bucket name (lowercase letters, digits, '.' and '-')",
        ),
        f"{prefix}.key": _string(required=True, min_length=1, max_length=1024),
        f"{prefix}.versionId": _string(min_length=1, max_length=1024),
        f"{prefix}.sha256": _string(
            max_length=64,
            pattern=SHA256,
            hint="a SHA-256 in hex (64 digits) or base64 (44 characters, as Lambda's CodeSha256)",
        ),
        f"{prefix}.credentialsSecret": _object(),
        f"{prefix}.credentialsSecret.name": _name(),
    }


def _jwt(prefix: str) -> dict[str, Field]:
    url_hint = "an http:// or https:// URL"
    return {
        prefix: _object(),
        f"{prefix}.issuer": _string(required=True, max_length=2048, pattern=URL, hint=url_hint),
        f"{prefix}.audience": Field(
            type="array", required=True, min_items=1, max_items=50, list_type="set"
        ),
        f"{prefix}.audience[]": _string(min_length=1, max_length=512),
        f"{prefix}.jwksUrl": _string(max_length=2048, pattern=URL, hint=url_hint),
        f"{prefix}.scopes": Field(type="array", min_items=1, max_items=50, list_type="set"),
        f"{prefix}.scopes[]": _string(
            max_length=256,
            pattern=SCOPE,
            hint="a scope (printable ASCII characters but space, '\"' and '\\')",
        ),
        f"{prefix}.identitySource": _string(
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
        f"{prefix}.batchSize": _integer(1, 10000, batch_size),
        f"{prefix}.maximumBatchingWindowSeconds": _integer(0, 300, window),
        f"{prefix}.startingPositionTimestamp": Field(
            type="string", max_length=64, format="date-time"
        ),
        f"{prefix}.maximumConcurrency": _integer(concurrency_min, 1000),
        f"{prefix}.functionResponseTypes": Field(type="array", max_items=1, list_type="set"),
        f"{prefix}.functionResponseTypes[]": _string(enum=RESPONSE_TYPES),
        f"{prefix}.filterCriteria": _object(),
        f"{prefix}.filterCriteria.filters": Field(type="array", required=True, max_items=5),
        f"{prefix}.filterCriteria.filters[]": _object(),
        f"{prefix}.filterCriteria.filters[].pattern": _string(
            required=True,
            max_length=4096,
            pattern=FILTER_PATTERN,
            hint='a JSON object, such as {"body": {"kind": ["order"]}}',
        ),
    }


def _queue(prefix: str) -> dict[str, Field]:
    return {
        prefix: _object(),
        f"{prefix}.stream": _string(
            required=True,
            max_length=255,
            pattern=STREAM,
            hint="a JetStream stream name (letters, digits, '-' and '_')",
        ),
        f"{prefix}.subject": _string(
            max_length=255,
            pattern=SUBJECT_FILTER,
            hint="a NATS subject (tokens of letters, digits, '-', '_' between dots;"
            " * for one token, > last for the rest)",
        ),
        f"{prefix}.nats": _object(),
        f"{prefix}.nats.url": _string(
            required=True,
            max_length=2048,
            pattern=NATS_URL,
            hint="a nats://, tls://, ws:// or wss:// URL",
        ),
        f"{prefix}.nats.credentialsSecret": _object(),
        f"{prefix}.nats.credentialsSecret.name": _name(),
        **_batching(prefix, batch_size=10, window=0, concurrency_min=2),
        f"{prefix}.startingPosition": _string(enum=STARTING_POSITIONS, default="TRIM_HORIZON"),
        f"{prefix}.maxReceiveCount": _integer(1, 1000, 3),
    }


def _kafka(prefix: str) -> dict[str, Field]:
    return {
        prefix: _object(),
        f"{prefix}.bootstrapServers": Field(
            type="array", required=True, min_items=1, max_items=10, list_type="set"
        ),
        f"{prefix}.bootstrapServers[]": _string(
            max_length=300, pattern=KAFKA_SERVER, hint="host:port, with a port from 1 to 65535"
        ),
        f"{prefix}.topics": Field(
            type="array", required=True, min_items=1, max_items=10, list_type="set"
        ),
        f"{prefix}.topics[]": _string(
            max_length=249,
            pattern=KAFKA_TOPIC,
            hint="a Kafka topic name (letters, digits, '.', '-' and '_', not starting with '.')",
        ),
        f"{prefix}.consumerGroup": _string(
            min_length=1,
            max_length=200,
            pattern=CONSUMER_GROUP,
            hint="a consumer group id (letters, digits and - / * : _ + = . @)",
        ),
        f"{prefix}.auth": _object(default=EMPTY_OBJECT),
        f"{prefix}.auth.secretRef": _object(),
        f"{prefix}.auth.secretRef.name": _name(),
        f"{prefix}.auth.tls": Field(type="boolean", default=False),
        # No default window: unset means Lambda's 500 ms, which whole seconds cannot say.
        **_batching(prefix, batch_size=100, window=None, concurrency_min=1),
        f"{prefix}.startingPosition": _string(required=True, enum=STARTING_POSITIONS),
        f"{prefix}.maximumRetryAttempts": _integer(-1, 10000, -1),
    }


_ROOT: Final = {
    "apiVersion": _string(),
    "kind": _string(),
    "metadata": _object(),
    "spec": _object(required=True),
    "status": _object(),
}

_ENV = "spec.env[].valueFrom"

FUNCTION_FIELDS: Final[Mapping[str, Field]] = MappingProxyType(
    {
        **_ROOT,
        "spec.runtime": _string(enum=(*RUNTIMES, *CUSTOM_RUNTIMES)),
        "spec.image": _string(
            min_length=1, max_length=512, pattern=IMAGE, hint="an image reference"
        ),
        "spec.handler": _string(
            max_length=128, pattern=ANY_HANDLER, hint="a handler name without spaces"
        ),
        "spec.code": _object(),
        "spec.code.inline": _object(),
        "spec.code.inline.files": Field(
            type="object", required=True, min_properties=1, max_properties=100
        ),
        "spec.code.inline.files{}": _string(max_length=1048576),
        "spec.code.configMapRef": _object(),
        "spec.code.configMapRef.name": _name(),
        "spec.code.path": _string(min_length=1, max_length=4096),
        **_s3_zip("spec.code.s3"),
        "spec.layers": Field(type="array", max_items=5),
        "spec.layers[]": _object(),
        **_s3_zip("spec.layers[].s3", required=True),
        "spec.env": Field(type="array", max_items=100, list_type="map", list_map_keys=("name",)),
        "spec.env[]": _object(),
        "spec.env[].name": _string(
            required=True,
            max_length=128,
            pattern=ENV_NAME,
            hint="a name of letters, digits and '_', not starting with a digit",
        ),
        "spec.env[].value": _string(max_length=32768),
        _ENV: _object(),
        **_key_ref(f"{_ENV}.configMapKeyRef"),
        f"{_ENV}.configMapKeyRef.optional": Field(type="boolean"),
        **_key_ref(f"{_ENV}.secretKeyRef"),
        f"{_ENV}.secretKeyRef.optional": Field(type="boolean"),
        f"{_ENV}.fieldRef": _object(),
        f"{_ENV}.fieldRef.apiVersion": _string(max_length=64),
        f"{_ENV}.fieldRef.fieldPath": _string(required=True, min_length=1, max_length=256),
        f"{_ENV}.resourceFieldRef": _object(),
        f"{_ENV}.resourceFieldRef.containerName": _string(max_length=63),
        f"{_ENV}.resourceFieldRef.resource": _string(required=True, min_length=1, max_length=64),
        f"{_ENV}.resourceFieldRef.divisor": Field(type="int-or-string"),
        "spec.memoryMB": _integer(128, 10240, 128),
        "spec.timeoutSeconds": _integer(1, 900, 3),
        "spec.concurrency": _integer(1, 1000, 1),
        "spec.reservedConcurrency": _integer(0, 1_000_000),
        "spec.throttling": _object(),
        "spec.throttling.rateLimit": Field(
            type="integer", required=True, minimum=1, maximum=1_000_000
        ),
        "spec.throttling.burstLimit": _integer(1, 1_000_000),
        "spec.invoke": _object(default=EMPTY_OBJECT),
        "spec.invoke.anonymous": Field(type="boolean", default=False),
        "spec.network": _object(),
        "spec.network.egress": Field(type="array", max_items=50),
        "spec.network.egress[]": _object(),
        "spec.network.egress[].cidr": _string(
            max_length=49, pattern=CIDR, hint="an IP block such as 10.0.0.0/8"
        ),
        "spec.network.egress[].namespace": _string(
            max_length=63, pattern=NAMESPACE, hint="a namespace name"
        ),
        "spec.network.egress[].podLabels": Field(type="object", max_properties=20),
        "spec.network.egress[].podLabels{}": _string(max_length=63),
        "spec.network.egress[].ports": Field(type="array", max_items=20, list_type="set"),
        "spec.network.egress[].ports[]": _integer(1, 65535),
        "spec.scaling": _object(default=EMPTY_OBJECT),
        "spec.scaling.minReplicas": _integer(0, 1000, 0),
        "spec.scaling.maxReplicas": _integer(1, 1000, 10),
        "spec.scaling.targetConcurrency": _integer(1, 1000),
        "spec.scaling.scaleToZeroAfterSeconds": _integer(0, 86400, 60),
        # A Function's delivery always applies, so it is defaulted as a whole.
        **_delivery(default=EMPTY_OBJECT),
    }
)

TRIGGER_FIELDS: Final[Mapping[str, Field]] = MappingProxyType(
    {
        **_ROOT,
        "spec.function": _function_name(required=True),
        "spec.http": _object(),
        "spec.http.path": _string(
            required=True,
            max_length=1024,
            pattern=HTTP_PATH,
            hint="a URL path starting with '/' (no '.' or '..' segments, no '//')",
        ),
        "spec.http.methods": Field(
            type="array", min_items=1, max_items=8, default=("ANY",), list_type="set"
        ),
        "spec.http.methods[]": _string(enum=HTTP_METHODS),
        "spec.http.host": _string(max_length=253, pattern=DNS_SUBDOMAIN, hint=_SUBDOMAIN_HINT),
        "spec.http.auth": _object(default=EMPTY_OBJECT),
        "spec.http.auth.type": _string(enum=AUTH_TYPES, default="none"),
        **_key_ref("spec.http.auth.secretRef"),
        **_jwt("spec.http.auth.jwt"),
        "spec.schedule": _object(),
        "spec.schedule.expression": _string(
            required=True,
            max_length=256,
            pattern=SCHEDULE,
            hint="rate(VALUE UNIT) or cron(MINUTES HOURS DAY-OF-MONTH MONTH DAY-OF-WEEK YEAR)",
        ),
        "spec.schedule.timezone": _string(default="UTC", max_length=64),
        "spec.schedule.start": Field(type="string", max_length=64, format="date-time"),
        "spec.schedule.end": Field(type="string", max_length=64, format="date-time"),
        "spec.bucket": _object(),
        "spec.bucket.bucket": _string(
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
        "spec.bucket.events[]": _string(
            max_length=128, pattern=S3_EVENT, hint="an S3 event name (s3:ObjectCreated:*)"
        ),
        "spec.bucket.prefix": _string(max_length=1024),
        "spec.bucket.suffix": _string(max_length=1024),
        "spec.bucket.source": _object(),
        "spec.bucket.source.endpoint": _string(
            required=True, max_length=2048, pattern=URL, hint="an http:// or https:// URL"
        ),
        "spec.bucket.source.credentialsSecret": _object(required=True),
        "spec.bucket.source.credentialsSecret.name": _name(),
        "spec.bucket.source.region": _string(
            max_length=64, pattern=REGION, hint="a region name (us-east-1)"
        ),
        **_queue("spec.queue"),
        **_kafka("spec.kafka"),
        # No default: a Trigger without delivery uses its Function's.
        **_delivery(default=None),
    }
)
