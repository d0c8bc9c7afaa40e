"""The patterns and value sets a spec's values must match, with the limits and defaults beside them.

schema.py puts them into the field tables; the models (function, trigger, meta, streams), the
SAM translator (sam/) and the gateway check values against them or take their defaults.
"""

from __future__ import annotations

from typing import Final

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
