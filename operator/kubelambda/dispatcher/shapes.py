"""The batches the queue and kafka pollers hand to a function, in Lambda's SQS and self-managed
Kafka event shapes; what Lambda's filters see of each record; and which records the function's
answer reports as failed (ReportBatchItemFailures). Pure data: the pollers do the I/O.
"""

from __future__ import annotations

import binascii
import hashlib
import json
import struct
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from kubelambda.api.filters import load_json

__all__ = [
    "KAFKA_EVENT_SOURCE",
    "SENDER_ID",
    "SQS_EVENT_SOURCE",
    "KafkaRecord",
    "batch_item_failures",
    "filter_document_kafka",
    "filter_document_sqs",
    "kafka_event",
    "kafka_item_identifier",
    "md5_of_message_attributes",
    "sqs_event",
    "sqs_record",
]

SQS_EVENT_SOURCE: Final = "aws:sqs"
KAFKA_EVENT_SOURCE: Final = "SelfManagedKafka"
# SQS names the IAM principal that sent the message; a JetStream message has no such sender.
SENDER_ID: Final = "kubelambda"
TIMESTAMP_TYPES: Final = frozenset({"CREATE_TIME", "LOG_APPEND_TIME"})


def sqs_record(
    *,
    message_id: str,
    receipt_handle: str,
    body: bytes,
    sent_timestamp_ms: int,
    receive_count: int,
    first_receive_ms: int,
    headers: Mapping[str, str],
    event_source_arn: str,
    region: str,
    sequence_number: str | None = None,
    group_id: str | None = None,
    sender_id: str = SENDER_ID,
) -> dict[str, Any]:
    """One record of Lambda's SQS event; `headers` become String message attributes.

    SQS only carries Unicode bodies, so a body that is not UTF-8 is decoded with U+FFFD in place
    of each invalid sequence (the record still reaches the function, and its dead letter, rather
    than stopping the poller); md5OfBody is the MD5 of the body as delivered, so it always checks.
    """
    text = body.decode("utf-8", errors="replace")
    attributes = {
        "ApproximateReceiveCount": str(receive_count),
        "SentTimestamp": str(sent_timestamp_ms),
        "SenderId": sender_id,
        "ApproximateFirstReceiveTimestamp": str(first_receive_ms),
    }
    if sequence_number is not None:  # FIFO queues
        attributes["SequenceNumber"] = sequence_number
    if group_id is not None:
        attributes["MessageGroupId"] = group_id
    record: dict[str, Any] = {
        "messageId": message_id,
        "receiptHandle": receipt_handle,
        "body": text,
        "attributes": attributes,
        "messageAttributes": {
            name: {
                "stringValue": value,
                "stringListValues": [],
                "binaryListValues": [],
                "dataType": "String",
            }
            for name, value in headers.items()
        },
        "md5OfBody": hashlib.md5(text.encode(), usedforsecurity=False).hexdigest(),
    }
    if headers:
        record["md5OfMessageAttributes"] = md5_of_message_attributes(headers)
    record["eventSource"] = SQS_EVENT_SOURCE
    record["eventSourceARN"] = event_source_arn
    record["awsRegion"] = region
    return record


def md5_of_message_attributes(attributes: Mapping[str, str]) -> str:
    """SQS's digest of String message attributes (SQS Developer Guide, "Calculating the MD5
    message digest for message attributes"): for each attribute in name order, the name, the
    data type and the value, each as a 4-byte big-endian length and UTF-8 bytes, with a
    transport-type byte (1, String) before the value."""

    def encoded(text: str) -> bytes:
        data = text.encode()
        return struct.pack(">I", len(data)) + data

    digest = hashlib.md5(usedforsecurity=False)
    for name in sorted(attributes, key=str.encode):
        digest.update(encoded(name) + encoded("String") + b"\x01" + encoded(attributes[name]))
    return digest.hexdigest()


def sqs_event(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return {"Records": list(records)}


@dataclass(frozen=True, kw_only=True, slots=True)  # slots: made for every record a poller reads
class KafkaRecord:
    """One record a Kafka poller read. `value` None is a tombstone; a header whose value Kafka
    gives as null is passed as b"" (AWS does not document that case)."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    timestamp_type: str = "CREATE_TIME"
    key: bytes | None = None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]] = field(default=())

    def __post_init__(self) -> None:
        if self.timestamp_type not in TIMESTAMP_TYPES:
            raise ValueError(
                f"timestamp_type {self.timestamp_type!r} is not CREATE_TIME or LOG_APPEND_TIME"
            )


def _encoded(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).decode("ascii")  # base64, without a wrapper


def _java_bytes(data: bytes) -> list[int]:
    # Lambda writes header values as Java bytes, which are signed: 0xC3 is -61. AWS's own
    # libraries read them so (Go's int8, .NET's sbyte, Powertools' decode_header_bytes).
    return [byte - 256 if byte > 127 else byte for byte in data]


def _kafka_record(record: KafkaRecord) -> dict[str, Any]:
    value, headers = record.value, record.headers
    shape: dict[str, Any] = {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp": record.timestamp_ms,
        "timestampType": record.timestamp_type,
    }
    if record.key is not None:  # AWS's record examples without a key have no "key" field
        shape["key"] = _encoded(record.key)
    shape["value"] = None if value is None else _encoded(value)
    shape["headers"] = [{name: _java_bytes(data)} for name, data in headers] if headers else []
    return shape


def kafka_event(
    *,
    event_source_arn: str | None,
    bootstrap_servers: Sequence[str],
    records: Sequence[KafkaRecord],
) -> dict[str, Any]:
    """Lambda's self-managed Apache Kafka event: records grouped under "<topic>-<partition>" in
    the order given. `eventSourceArn` (which AWS only sends for MSK) is left out when None."""
    if isinstance(bootstrap_servers, str):
        raise TypeError("bootstrap_servers is a sequence of host:port strings, not one string")
    grouped: dict[str, list[dict[str, Any]]] = {}
    last: tuple[str, int] | None = None
    group: list[dict[str, Any]] = []
    for record in records:
        if (record.topic, record.partition) != last:  # a partition's records come together
            last = (record.topic, record.partition)
            group = grouped.setdefault(f"{record.topic}-{record.partition}", [])
        group.append(_kafka_record(record))
    event: dict[str, Any] = {"eventSource": KAFKA_EVENT_SOURCE}
    if event_source_arn is not None:
        event["eventSourceArn"] = event_source_arn
    event["bootstrapServers"] = ",".join(bootstrap_servers)
    event["records"] = grouped
    return event


def _data(text: str) -> Any:
    """A body or value as filters see it: a JSON object is matched field by field; anything else
    (plain text, or a JSON string, number or array) is matched as the string it is."""
    try:
        data = load_json(text)
    except ValueError:
        return text
    return data if isinstance(data, dict) else text


def filter_document_sqs(record: Mapping[str, Any]) -> dict[str, Any]:
    """What Lambda's filters see of an SQS record: its fields, with `body` decoded when it is a
    JSON object. A JSON pattern for `body` then never matches a plain-text body, nor a plain
    pattern a JSON body: Lambda drops such messages ("Filtering events from Amazon SQS")."""
    document = dict(record)
    if isinstance(document.get("body"), str):
        document["body"] = _data(document["body"])
    return document


def filter_document_kafka(record: KafkaRecord) -> dict[str, Any]:
    """What Lambda's filters see of a Kafka record: only `value` ("Amazon MSK and self-managed
    Apache Kafka event source mappings only support filtering on the value key"), decoded from
    UTF-8 and, when it is a JSON object, from JSON. A value that is not UTF-8 is left out, so
    only patterns that ask for no value match it; a tombstone's value is null."""
    if record.value is None:
        return {"value": None}
    try:
        text = record.value.decode("utf-8")
    except UnicodeDecodeError:
        return {}
    return {"value": _data(text)}


def kafka_item_identifier(record: KafkaRecord) -> str:
    """The id `batch_item_failures` gives a Kafka record, built from the itemIdentifier object
    Lambda takes for Kafka ({"partition": "<topic>-<partition>", "offset": n}, as Powertools'
    Kafka batch processor writes it). Topic names cannot contain ":"."""
    return _kafka_identifier(f"{record.topic}-{record.partition}", record.offset)


def _kafka_identifier(partition: str, offset: int) -> str:
    return f"{partition}:{offset}"


def _item_identifier(failure: Any) -> str | None:
    """The id one batchItemFailures entry names, or None when it names none properly."""
    if not isinstance(failure, Mapping):
        return None
    identifier = failure.get("itemIdentifier")
    if isinstance(identifier, str):
        return identifier or None
    if isinstance(identifier, Mapping):  # Kafka
        partition, offset = identifier.get("partition"), identifier.get("offset")
        if isinstance(partition, str) and isinstance(offset, int) and not isinstance(offset, bool):
            return _kafka_identifier(partition, offset)
    return None


def batch_item_failures(response_body: Any, *, item_ids: Collection[str]) -> frozenset[str] | None:
    """The records a function's answer reports as failed, by Lambda's rules for partial batch
    responses ("Handling errors for an SQS event source in Lambda", "Success and failure
    conditions"). None: the whole batch succeeded. Otherwise the ids to retry: those listed, or
    every id of the batch when Lambda treats the whole batch as failed.

    `response_body` is the raw body (bytes, decoded here) or the already-decoded JSON value.
    `item_ids` are the batch's SQS message ids, or `kafka_item_identifier`s. A function error
    (an exception in the handler) fails the whole batch too, but that is the caller's to see.
    """
    everything = frozenset(item_ids)
    if not everything:
        raise ValueError("a batch has at least one record")
    response = response_body
    if isinstance(response_body, bytes | bytearray):
        if not response_body.strip():
            return None  # "an empty EventResponse": success
        try:
            response = json.loads(response_body)
        except ValueError:
            return everything  # "an invalid JSON response": complete failure
    if response is None:
        return None  # "a null EventResponse": success
    if not isinstance(response, Mapping):
        # Not an object: nothing Lambda could read batchItemFailures from. Retrying loses
        # nothing, where success would drop the batch.
        return everything
    failures = response.get("batchItemFailures")
    if failures is None:
        return None  # "a null batchItemFailures list" (or none at all): success
    if not isinstance(failures, list):
        return everything
    if not failures:
        return None  # "an empty batchItemFailures list": success
    failed = set()
    for failure in failures:
        identifier = _item_identifier(failure)
        # "an empty string itemIdentifier", "a null itemIdentifier", "an itemIdentifier with a
        # bad key name", "an itemIdentifier value with a message ID that doesn't exist":
        # complete failure.
        if identifier is None or identifier not in everything:
            return everything
        failed.add(identifier)
    return frozenset(failed)
