"""The pull sources of a Trigger, Lambda's event source mappings: ``queue`` (a NATS JetStream
stream, batches in the SQS event shape) and ``kafka`` (topics of a Kafka cluster).

trigger.py reads them with ``read_queue`` and ``read_kafka``; the dispatcher's pollers consume
the result. Defaults and bounds mirror crds/triggers.kubelambda.dev.yaml.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Literal, TypeAlias, cast

from kubelambda.api.filters import MAXIMUM_PATTERN_LENGTH, FilterError, parse_filter
from kubelambda.api.patterns import FILTER_PATTERN, QUEUE_BATCH_WITHOUT_WINDOW
from kubelambda.api.reader import Node, Reader, matches

Position: TypeAlias = Literal["TRIM_HORIZON", "LATEST", "AT_TIMESTAMP"]
REPORT_BATCH_ITEM_FAILURES: Final = "ReportBatchItemFailures"
# Lambda's batching window for Kafka when none is set; whole seconds cannot express it.
KAFKA_DEFAULT_WINDOW_SECONDS: Final = 0.5


@dataclass(frozen=True, kw_only=True)
class Batching:
    """Lambda's settings common to event source mappings: up to ``batch_size`` records per
    invocation, gathered for at most ``window_seconds``; a new consumer starts at
    ``starting_position`` (at ``starting_position_timestamp`` for AT_TIMESTAMP); at most
    ``maximum_concurrency`` batches in flight (None: the Function's maxReplicas times its
    concurrency). Only records matching one of ``filters`` (JSON filter patterns, as written)
    are delivered.
    """

    batch_size: int
    window_seconds: float
    starting_position: Position
    starting_position_timestamp: datetime | None = None
    maximum_concurrency: int | None = None
    function_response_types: tuple[str, ...] = ()
    filters: tuple[str, ...] = ()

    @property
    def reports_batch_item_failures(self) -> bool:
        """Whether the Function may answer which records of a batch failed."""
        return REPORT_BATCH_ITEM_FAILURES in self.function_response_types


@dataclass(frozen=True, kw_only=True)
class NatsConnection:
    """A NATS server other than the platform's broker, and the Secret with its credentials
    (keys ``user`` and ``password``, or ``token``, or ``creds``)."""

    url: str
    credentials_secret: str | None = None


@dataclass(frozen=True, kw_only=True)
class QueueSource:
    """The messages of JetStream ``stream`` (on ``subject``, if set), in batches in the SQS
    event shape; a message received ``max_receive_count`` times goes to the failure
    destination. ``nats`` is None for the platform's broker."""

    stream: str
    batching: Batching
    subject: str | None = None
    nats: NatsConnection | None = None
    max_receive_count: int = 3


@dataclass(frozen=True, kw_only=True)
class KafkaAuth:
    """The Secret with the client's credentials (``username``, ``password``, ``mechanism``,
    ``ca.crt``, ``tls.crt``, ``tls.key``), and whether to connect with TLS."""

    secret: str | None = None
    tls: bool = False


@dataclass(frozen=True, kw_only=True)
class KafkaSource:
    """The records of ``topics`` read by ``consumer_group`` from the cluster at
    ``bootstrap_servers``; a batch failing after ``maximum_retry_attempts`` retries (-1:
    without end) goes to the failure destination."""

    bootstrap_servers: tuple[str, ...]
    topics: tuple[str, ...]
    consumer_group: str
    batching: Batching
    auth: KafkaAuth = KafkaAuth()
    maximum_retry_attempts: int = -1


def default_consumer_group(*, namespace: str, name: str) -> str:
    """The consumer group of a kafka Trigger that names none: one per Trigger."""
    return f"kubelambda.{namespace}.{name}"


def queue_consumer_name(namespace: str, name: str) -> str:
    """The durable JetStream consumer of a queue Trigger: the dispatcher's poller reads through
    it and the operator observes it. Namespaces and names never hold '_', so this is one
    consumer per Trigger; a '.' (allowed in names) is not allowed in a consumer's name."""
    return f"kubelambda_{namespace}_{name.replace('.', '_')}"


def read_queue(reader: Reader, spec: Node) -> QueueSource | None:
    node = reader.obj(spec.child("queue"))
    if node is None:
        return None
    # The CRD defaults a queue's window to 0.
    batching = _read_batching(reader, node, default_window=0.0)
    if batching.batch_size > QUEUE_BATCH_WITHOUT_WINDOW and batching.window_seconds < 1:
        reader.report(
            f"{node.path}.maximumBatchingWindowSeconds",
            f"must be at least 1 when {node.path}.batchSize is above"
            f" {QUEUE_BATCH_WITHOUT_WINDOW}, as on Lambda",
        )
    nats = None
    if (server := reader.obj(node.child("nats"))) is not None:
        secret = reader.obj(server.child("credentialsSecret"))
        nats = NatsConnection(
            url=reader.text(server.child("url")),
            credentials_secret=reader.text(secret.child("name")) if secret is not None else None,
        )
    return QueueSource(
        stream=reader.text(node.child("stream")),
        subject=reader.optional_text(node.child("subject")),
        nats=nats,
        batching=batching,
        max_receive_count=reader.integer(node.child("maxReceiveCount")),
    )


def read_kafka(reader: Reader, spec: Node, *, namespace: str, name: str) -> KafkaSource | None:
    node = reader.obj(spec.child("kafka"))
    if node is None:
        return None
    auth = KafkaAuth()
    if (auth_node := reader.obj(node.child("auth"))) is not None:
        secret = reader.obj(auth_node.child("secretRef"))
        auth = KafkaAuth(
            secret=reader.text(secret.child("name")) if secret is not None else None,
            tls=reader.optional_boolean(auth_node.child("tls")) or False,
        )
    group = reader.optional_text(node.child("consumerGroup"))
    return KafkaSource(
        bootstrap_servers=_texts(reader, node.child("bootstrapServers")),
        topics=_texts(reader, node.child("topics")),
        consumer_group=group or default_consumer_group(namespace=namespace, name=name),
        batching=_read_batching(reader, node, default_window=KAFKA_DEFAULT_WINDOW_SECONDS),
        auth=auth,
        maximum_retry_attempts=reader.integer(node.child("maximumRetryAttempts")),
    )


def _read_batching(reader: Reader, node: Node, *, default_window: float) -> Batching:
    window = reader.optional_integer(node.child("maximumBatchingWindowSeconds"))
    position = reader.text(node.child("startingPosition"))
    timestamp_node = node.child("startingPositionTimestamp")
    timestamp = read_time(reader, timestamp_node)
    if position == "AT_TIMESTAMP" and not timestamp_node.present:
        reader.report(
            timestamp_node.path, f"is required when {node.path}.startingPosition is AT_TIMESTAMP"
        )
    if position != "AT_TIMESTAMP" and timestamp_node.present:
        reader.report(timestamp_node.path, f"is only for {node.path}.startingPosition AT_TIMESTAMP")
    patterns = []
    if (criteria := reader.obj(node.child("filterCriteria"))) is not None:
        for item in reader.items(criteria.child("filters")):
            if (pattern := reader.obj(item)) is not None:
                patterns.append(_read_pattern(reader, pattern.child("pattern")))
    return Batching(
        batch_size=reader.integer(node.child("batchSize")),
        window_seconds=float(window) if window is not None else default_window,
        # An invalid value is already reported; the model still needs one.
        starting_position=cast(Position, position or "TRIM_HORIZON"),
        starting_position_timestamp=timestamp,
        maximum_concurrency=reader.optional_integer(node.child("maximumConcurrency")),
        function_response_types=_texts(reader, node.child("functionResponseTypes")),
        filters=tuple(patterns),
    )


def _read_pattern(reader: Reader, node: Node) -> str:
    """A filter pattern: a JSON object as a string, in Lambda's filter syntax. The CRD can
    only check its braces, so the rest is checked here, when the controller reads the
    Trigger (filters.py says what is wrong)."""
    text = reader.text(node)
    if not matches(FILTER_PATTERN, text) or len(text) > MAXIMUM_PATTERN_LENGTH:
        return text  # reported by the reader (or missing)
    try:
        parse_filter(text)
    except FilterError as exc:
        reader.report(node.path, f"is not a filter pattern Lambda accepts: {exc}")
    return text


def _texts(reader: Reader, node: Node) -> tuple[str, ...]:
    return tuple(reader.text(item) for item in reader.items(node))


def read_time(reader: Reader, node: Node) -> datetime | None:
    """An RFC 3339 time field (a schedule's start and end, a starting position's timestamp),
    in UTC; None when it is unset or invalid (reported)."""
    text = reader.optional_text(node)
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        reader.report(node.path, f"must be an RFC 3339 time with its offset, not {text!r}")
        return None
    return moment.astimezone(UTC)
