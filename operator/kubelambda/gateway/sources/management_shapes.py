"""Lambda's management API answers, built from the spec models: `FunctionConfiguration`
(ListFunctions, GetFunction, GetFunctionConfiguration), GetFunction's whole answer, and
`EventSourceMappingConfiguration` (queue and kafka Triggers). Pure functions, which
`management.py` serves; field names and types are those of AWS's API reference.
"""

from __future__ import annotations

import base64
import hashlib
import platform
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubelambda.api.function import ConfigMapCode, FolderCode, Function, InlineCode
from kubelambda.api.identity import FunctionKey, function_arn
from kubelambda.api.streams import Batching, KafkaSource, QueueSource
from kubelambda.api.trigger import Trigger
from kubelambda.gateway.routing import FunctionEntry

__all__ = [
    "ROLE",
    "CodeFacts",
    "Identity",
    "code_facts",
    "event_source_arn",
    "event_source_mapping",
    "function_configuration",
    "get_function",
    "last_modified",
    "mapping_uuid",
]

JSON = dict[str, Any]

# Functions run as their pods' ServiceAccount, not an IAM role: Lambda's required Role field
# holds this fixed placeholder (its account is the gateway's).
ROLE = "arn:aws:iam::{account}:role/kubelambda-function"
# UUIDs of event source mappings are derived from the Trigger's namespace and name, so every
# gateway replica gives the same one, and a Trigger keeps it as long as it exists.
_MAPPINGS = uuid.UUID("6b1f0d52-8f1e-4d0a-9c36-6a3f5e0c2b71")
# The functions run on the cluster's nodes; the gateway's own machine is the best guess it has.
_ARCHITECTURE = "arm64" if platform.machine().lower() in ("aarch64", "arm64") else "x86_64"


@dataclass(frozen=True, slots=True)
class Identity:
    """Where ARNs say the functions live, and the namespace whose functions go by bare names."""

    region: str
    account_id: str
    default_namespace: str

    def function_name(self, key: FunctionKey) -> str:
        """The FunctionName the Invoke API takes: NAME in the default namespace, else NS.NAME."""
        return (
            key.name if key.namespace == self.default_namespace else f"{key.namespace}.{key.name}"
        )

    def function_arn(self, key: FunctionKey) -> str:
        return function_arn(
            key,
            region=self.region,
            account_id=self.account_id,
            default_namespace=self.default_namespace,
        )

    def mapping_arn(self, mapping: str) -> str:
        return f"arn:aws:lambda:{self.region}:{self.account_id}:event-source-mapping:{mapping}"


@dataclass(frozen=True, slots=True)
class CodeFacts:
    """CodeSize (bytes of the files) and CodeSha256 (base64, as Lambda gives it; None when the
    gateway cannot know it: code in a ConfigMap or a folder, or an image)."""

    size: int = 0
    sha256: str | None = None


def code_facts(function: Function | None) -> CodeFacts:
    """The size and hash of inline code. The hash is the controller's `status.codeHash`
    (sha256 over names and contents, independent of order), in base64 rather than hex."""
    if function is None or not isinstance(function.code, InlineCode):
        return CodeFacts()
    digest = hashlib.sha256()
    size = 0
    for name in sorted(function.code.files):
        data = function.code.files[name].encode()
        size += len(data)
        # The same framing as controller/resources/code.py's code_hash (a test holds them equal).
        digest.update(f"{len(name)}:{name}:{len(data)}:".encode())
        digest.update(data)
    return CodeFacts(size=size, sha256=base64.b64encode(digest.digest()).decode("ascii"))


def last_modified(moment: float) -> str:
    """FunctionConfiguration's LastModified: ISO 8601 with milliseconds, as Lambda writes it."""
    text = datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
    return f"{text[:-3]}+0000"


def function_configuration(
    entry: FunctionEntry,
    *,
    identity: Identity,
    modified: float,
    code: CodeFacts,
    listed: bool = False,
) -> JSON:
    """Lambda's FunctionConfiguration of one Function; `listed` leaves out what ListFunctions
    leaves out (State, LastUpdateStatus). Environment holds literal values only: a variable
    whose value comes from a Secret or ConfigMap (`valueFrom`) is left out, never resolved."""
    spec = entry.spec
    answer: JSON = {
        "FunctionName": identity.function_name(entry.key),
        "FunctionArn": identity.function_arn(entry.key),
        "Role": ROLE.format(account=identity.account_id),
        "CodeSize": code.size,
        "Description": "",
        "Timeout": int(entry.timeout_seconds),
        "LastModified": last_modified(modified),
        "Version": "$LATEST",
        "TracingConfig": {"Mode": "PassThrough"},
        "Architectures": [_ARCHITECTURE],
    }
    if code.sha256 is not None:
        answer["CodeSha256"] = code.sha256
    if spec is not None:
        answer["PackageType"] = "Image" if spec.image is not None else "Zip"
        answer["MemorySize"] = spec.memory_mb
        if spec.runtime is not None:
            answer["Runtime"] = spec.runtime
        if spec.handler is not None:
            answer["Handler"] = spec.handler
        variables = {
            var.name: var.value or ""
            for var in spec.env
            if not (
                var.config_map_key_ref
                or var.secret_key_ref
                or var.field_ref
                or var.resource_field_ref
            )
        }
        if variables:
            answer["Environment"] = {"Variables": variables}
    if not listed:
        answer["State"] = "Active"
        answer["LastUpdateStatus"] = "Successful"
    return answer


def get_function(
    entry: FunctionEntry, *, identity: Identity, modified: float, code: CodeFacts
) -> JSON:
    """GetFunction's answer: the configuration, where the code is, the Kubernetes object as
    tags, and spec.reservedConcurrency as Concurrency.ReservedConcurrentExecutions (left out,
    as Lambda leaves it out, when the function reserves none)."""
    answer: JSON = {
        "Configuration": function_configuration(
            entry, identity=identity, modified=modified, code=code
        ),
        "Code": _code_location(entry.spec),
        "Tags": {
            "kubelambda.dev/namespace": entry.key.namespace,
            "kubelambda.dev/name": entry.key.name,
        },
    }
    spec = entry.spec
    if spec is not None and spec.reserved_concurrency is not None:
        # As Lambda: Concurrency only when the function has a reservation.
        answer["Concurrency"] = {"ReservedConcurrentExecutions": spec.reserved_concurrency}
    return answer


def _code_location(spec: Function | None) -> JSON:
    """Where the code is. There is no package to download: RepositoryType names the kind of
    source (Inline, ConfigMap, Folder, Image), Location is a file:// URL for a local folder."""
    if spec is None:
        return {}
    if spec.image is not None:
        return {"RepositoryType": "Image", "ImageUri": spec.image}
    code = spec.code
    if isinstance(code, FolderCode):
        return {"RepositoryType": "Folder", "Location": code.path.as_uri()}
    if isinstance(code, ConfigMapCode):
        return {"RepositoryType": "ConfigMap"}
    return {"RepositoryType": "Inline"}


def mapping_uuid(trigger: Trigger) -> str:
    """The event source mapping's UUID: stable, derived from the Trigger's namespace and name."""
    return str(uuid.uuid5(_MAPPINGS, f"{trigger.namespace}/{trigger.name}"))


def event_source_arn(trigger: Trigger, identity: Identity) -> str | None:
    """A queue's SQS-style ARN, as its records' eventSourceARN carries it; Kafka has none."""
    source = trigger.source
    if isinstance(source, QueueSource):
        return f"arn:aws:sqs:{identity.region}:{identity.account_id}:{source.stream}"
    return None


def event_source_mapping(
    trigger: Trigger, *, identity: Identity, function_exists: bool, modified: float
) -> JSON:
    """Lambda's EventSourceMappingConfiguration of a queue or kafka Trigger. A Trigger whose
    Function does not exist is Disabled: nothing polls it (dispatcher/sources.py)."""
    source = trigger.source
    if not isinstance(source, QueueSource | KafkaSource):
        raise TypeError(f"Trigger {trigger.namespace}/{trigger.name} is not a queue or kafka one")
    mapping = mapping_uuid(trigger)
    function = FunctionKey(trigger.namespace, trigger.function)
    answer: JSON = {
        "UUID": mapping,
        "EventSourceMappingArn": identity.mapping_arn(mapping),
        "FunctionArn": identity.function_arn(function),
        "LastModified": round(modified, 3),  # seconds, with milliseconds as Lambda's
        "State": "Enabled" if function_exists else "Disabled",
        "StateTransitionReason": (
            "USER_INITIATED" if function_exists else f"Function {function} does not exist"
        ),
        **_batching(source.batching),
    }
    if isinstance(source, QueueSource):
        answer["EventSourceArn"] = event_source_arn(trigger, identity)
    else:
        answer["Topics"] = list(source.topics)
        answer["SelfManagedEventSource"] = {
            "Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": list(source.bootstrap_servers)}
        }
        answer["SelfManagedKafkaEventSourceConfig"] = {"ConsumerGroupId": source.consumer_group}
        answer["MaximumRetryAttempts"] = source.maximum_retry_attempts
    failure = trigger.delivery.on_failure if trigger.delivery is not None else None
    if failure is not None and failure.function:
        target = identity.function_arn(FunctionKey(trigger.namespace, failure.function))
        answer["DestinationConfig"] = {"OnFailure": {"Destination": target}}
    return answer


def _batching(batching: Batching) -> JSON:
    answer: JSON = {
        "BatchSize": batching.batch_size,
        # Whole seconds in Lambda's API: Kafka's default half second reads 0.
        "MaximumBatchingWindowInSeconds": int(batching.window_seconds),
        "StartingPosition": batching.starting_position,
        "FunctionResponseTypes": list(batching.function_response_types),
    }
    if batching.starting_position_timestamp is not None:
        answer["StartingPositionTimestamp"] = batching.starting_position_timestamp.timestamp()
    if batching.filters:
        answer["FilterCriteria"] = {"Filters": [{"Pattern": p} for p in batching.filters]}
    if batching.maximum_concurrency is not None:
        answer["ScalingConfig"] = {"MaximumConcurrency": batching.maximum_concurrency}
    return answer
