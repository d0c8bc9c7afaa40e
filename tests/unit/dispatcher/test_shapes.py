"""dispatcher/shapes.py: the SQS and self-managed Kafka events, read back with AWS's own
Powertools (data classes, Pydantic models, batch processor); filter documents; and Lambda's
rules for partial batch responses."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes import KafkaEvent, SQSEvent
from aws_lambda_powertools.utilities.parser.models import KafkaSelfManagedEventModel, SqsModel

from kubelambda.api.filters import parse_filter
from kubelambda.dispatcher.shapes import (
    KafkaRecord,
    batch_item_failures,
    filter_document_kafka,
    filter_document_sqs,
    kafka_event,
    kafka_item_identifier,
    md5_of_message_attributes,
    sqs_event,
    sqs_record,
)

ARN = "arn:aws:sqs:us-east-2:123456789012:orders"


def message(message_id: str = "m-1", body: bytes = b"test", **overrides: Any) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "message_id": message_id,
        "receipt_handle": f"handle-{message_id}",
        "body": body,
        "sent_timestamp_ms": 1545082649183,
        "receive_count": 1,
        "first_receive_ms": 1545082649185,
        "headers": {},
        "event_source_arn": ARN,
        "region": "us-east-2",
    }
    return sqs_record(**{**arguments, **overrides})


def test_sqs_record_has_lambdas_shape() -> None:
    """Field for field the example event of "Using Lambda with Amazon SQS"."""
    assert message(body=b"test") == {
        "messageId": "m-1",
        "receiptHandle": "handle-m-1",
        "body": "test",
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": "1545082649183",
            "SenderId": "kubelambda",
            "ApproximateFirstReceiveTimestamp": "1545082649185",
        },
        "messageAttributes": {},
        "md5OfBody": "098f6bcd4621d373cade4e832627b4f6",  # as in AWS's example for "test"
        "eventSource": "aws:sqs",
        "eventSourceARN": ARN,
        "awsRegion": "us-east-2",
    }


def test_headers_become_string_message_attributes_with_sqs_digest() -> None:
    shaped = message(headers={"attribName1": "attribValue 1"})
    assert shaped["messageAttributes"] == {
        "attribName1": {
            "stringValue": "attribValue 1",
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": "String",
        }
    }
    # The digest SQS returns for this attribute (a published test vector of SQS's algorithm).
    assert shaped["md5OfMessageAttributes"] == "19e27d4e946b072f3f58da80d94fd778"


def test_message_attribute_digest_orders_attributes_by_name() -> None:
    forward = md5_of_message_attributes({"a": "1", "b": "2"})
    assert forward == md5_of_message_attributes({"b": "2", "a": "1"})
    assert forward != md5_of_message_attributes({"a": "2", "b": "1"})


def test_fifo_attributes_when_given() -> None:
    attributes = message(sequence_number="18849496460467696128", group_id="g1")["attributes"]
    assert attributes["SequenceNumber"] == "18849496460467696128"
    assert attributes["MessageGroupId"] == "g1"


def test_body_that_is_not_utf8_is_delivered_with_replacement_characters() -> None:
    shaped = message(body=b"ok \xff\xfe end")
    assert shaped["body"] == "ok \ufffd\ufffd end"
    assert shaped["md5OfBody"] == hashlib.md5("ok \ufffd\ufffd end".encode()).hexdigest()


def test_powertools_reads_the_sqs_event() -> None:
    event = sqs_event(
        [
            message("m-1", b'{"order": 7}', headers={"tenant": "acme"}),
            message("m-2", b"plain", receive_count=3, group_id="g", sequence_number="5"),
        ]
    )
    SqsModel.model_validate(event)  # Powertools' schema of Lambda's SQS event
    first, second = SQSEvent(event).records
    assert (first.message_id, first.receipt_handle) == ("m-1", "handle-m-1")
    assert first.json_body == {"order": 7}
    assert first.md5_of_body == hashlib.md5(b'{"order": 7}').hexdigest()
    assert first.message_attributes["tenant"].string_value == "acme"  # type: ignore[union-attr]
    assert first.message_attributes["tenant"].data_type == "String"  # type: ignore[union-attr]
    assert (first.event_source, first.event_source_arn, first.aws_region) == (
        "aws:sqs",
        ARN,
        "us-east-2",
    )
    assert first.queue_url == "https://sqs.us-east-2.amazonaws.com/123456789012/orders"
    assert second.body == "plain"
    assert second.attributes.approximate_receive_count == "3"
    assert second.attributes.sent_timestamp == "1545082649183"
    assert second.attributes.approximate_first_receive_timestamp == "1545082649185"
    assert (second.attributes.message_group_id, second.attributes.sequence_number) == ("g", "5")


# Powertools calls record handlers with the keyword `record`.
def handle_unless_failing(record: Any) -> None:
    if "fail" in record.body:
        raise ValueError("this record fails")


def test_powertools_partial_batch_response_reports_exactly_the_failed_sqs_records() -> None:
    bodies = {"m-1": b"ok", "m-2": b"fail", "m-3": b"ok", "m-4": b"fail too"}
    event = sqs_event([message(mid, body) for mid, body in bodies.items()])
    response = process_partial_response(
        event=event,
        record_handler=handle_unless_failing,
        processor=BatchProcessor(event_type=EventType.SQS),
    )
    # as the dispatcher gets it: the JSON body of the function's answer, or already decoded
    for answer in (response, json.dumps(response).encode()):
        assert batch_item_failures(answer, item_ids=bodies) == {"m-2", "m-4"}


def test_powertools_batch_with_no_failure_is_a_success() -> None:
    event = sqs_event([message("m-1", b"ok")])
    response = process_partial_response(
        event=event,
        record_handler=handle_unless_failing,
        processor=BatchProcessor(event_type=EventType.SQS),
    )
    assert batch_item_failures(response, item_ids=["m-1"]) is None


def kafka(offset: int, value: bytes | None, **fields: Any) -> KafkaRecord:
    arguments: dict[str, Any] = {
        "topic": "orders",
        "partition": 0,
        "offset": offset,
        "timestamp_ms": 1545084650987,
        "value": value,
    }
    return KafkaRecord(**{**arguments, **fields})


def test_kafka_event_has_lambdas_shape() -> None:
    """Field for field the example event of "Using Lambda with self-managed Apache Kafka"."""
    event = kafka_event(
        event_source_arn=None,
        bootstrap_servers=["b-2.demo:9092", "b-1.demo:9092"],
        records=[
            kafka(
                15,
                b'{"key":"value"}',
                topic="mytopic",
                key=b"recordKey",
                headers=[("headerKey", b"headerValue")],
            )
        ],
    )
    assert event == {
        "eventSource": "SelfManagedKafka",
        "bootstrapServers": "b-2.demo:9092,b-1.demo:9092",
        "records": {
            "mytopic-0": [
                {
                    "topic": "mytopic",
                    "partition": 0,
                    "offset": 15,
                    "timestamp": 1545084650987,
                    "timestampType": "CREATE_TIME",
                    "key": "cmVjb3JkS2V5",
                    "value": "eyJrZXkiOiJ2YWx1ZSJ9",
                    "headers": [
                        {"headerKey": [104, 101, 97, 100, 101, 114, 86, 97, 108, 117, 101]}
                    ],
                }
            ]
        },
    }


def test_kafka_records_are_grouped_by_topic_and_partition_in_order() -> None:
    event = kafka_event(
        event_source_arn="arn:aws:kafka:us-east-1:123456789012:cluster/demo/abc",
        bootstrap_servers=["broker:9092"],
        records=[kafka(1, b"a"), kafka(7, b"b", partition=1), kafka(2, b"c")],
    )
    assert event["eventSourceArn"] == "arn:aws:kafka:us-east-1:123456789012:cluster/demo/abc"
    assert {key: [r["offset"] for r in group] for key, group in event["records"].items()} == {
        "orders-0": [1, 2],
        "orders-1": [7],
    }


def test_kafka_record_without_key_has_no_key_field_and_a_tombstone_a_null_value() -> None:
    (shaped,) = kafka_event(
        event_source_arn=None, bootstrap_servers=["b:9092"], records=[kafka(3, None)]
    )["records"]["orders-0"]
    assert "key" not in shaped
    assert shaped["value"] is None


def test_header_bytes_are_signed_as_lambda_sends_them() -> None:
    (shaped,) = kafka_event(
        event_source_arn=None,
        bootstrap_servers=["b:9092"],
        records=[kafka(3, b"v", headers=[("name", "ë".encode())])],
    )["records"]["orders-0"]
    assert shaped["headers"] == [{"name": [-61, -85]}]


def test_powertools_reads_the_kafka_event() -> None:
    event = kafka_event(
        event_source_arn=None,
        bootstrap_servers=["one:9092", "two:9092"],
        records=[
            kafka(
                5,
                b'{"device": "AB1234"}',
                key=b"\x00\xffkey",
                timestamp_type="LOG_APPEND_TIME",
                headers=[("content-type", b"application/json"), ("city", "Zürich".encode())],
            ),
            kafka(6, b"plain text", partition=2),
        ],
    )
    KafkaSelfManagedEventModel.model_validate(event)  # Powertools' schema of Lambda's event
    parsed = KafkaEvent(event)
    assert parsed.event_source == "SelfManagedKafka"
    assert parsed.decoded_bootstrap_servers == ["one:9092", "two:9092"]
    first, second = parsed.records
    assert (first.topic, first.partition, first.offset) == ("orders", 0, 5)
    assert (first.timestamp, first.timestamp_type) == (1545084650987, "LOG_APPEND_TIME")
    assert first.decoded_key == b"\x00\xffkey"
    assert first.json_value == {"device": "AB1234"}
    assert first.decoded_headers == {
        "content-type": b"application/json",
        "city": "Zürich".encode(),
    }
    assert second.decoded_key is None
    assert second.decoded_value == b"plain text"
    assert second.partition == 2


def fail_unless_json(record: Any) -> None:
    record.json_value  # noqa: B018 - raises on a value that is not JSON


def test_powertools_kafka_partial_batch_response_names_exactly_the_failed_records() -> None:
    records = [
        kafka(10, b'{"n": 1}'),
        kafka(11, b"not json"),
        kafka(12, b'{"n": 3}', partition=1),
        kafka(13, b"nor this", partition=1),
    ]
    event = kafka_event(event_source_arn=None, bootstrap_servers=["b:9092"], records=records)
    response = process_partial_response(
        event=event,
        record_handler=fail_unless_json,
        processor=BatchProcessor(event_type=EventType.Kafka),
    )
    ids = [kafka_item_identifier(r) for r in records]
    for answer in (response, json.dumps(response).encode()):
        assert batch_item_failures(answer, item_ids=ids) == {
            kafka_item_identifier(records[1]),
            kafka_item_identifier(records[3]),
        }


SQS_FILTERING = [
    # body format / pattern format, per "Filtering events from Amazon SQS"
    (b"plain text", '{"body": ["plain text"]}', True),
    (b"plain text", '{"body": {"a": ["x"]}}', False),  # plain body, JSON pattern: dropped
    (b'{"a": "x"}', '{"body": {"a": ["x"]}}', True),
    (b'{"a": "x"}', '{"body": [{"prefix": "{"}]}', False),  # JSON body, plain pattern: dropped
    (b'{"a": "x"}', '{"attributes": {"ApproximateReceiveCount": ["1"]}}', True),  # metadata
    (b"plain text", '{"messageAttributes": {"tenant": {"stringValue": ["acme"]}}}', True),
    (b'{"price": 3.0e2}', '{"body": {"price": [300]}}', False),  # numbers as written
    (b'{"price": 3.0e2}', '{"body": {"price": [{"numeric": ["=", 300]}]}}', True),
    (b"123", '{"body": ["123"]}', True),  # a JSON scalar is matched as the text it is
    (b'"quoted"', '{"body": ["\\"quoted\\""]}', True),
]


@pytest.mark.parametrize(("body", "pattern", "expected"), SQS_FILTERING)
def test_sqs_filter_document(body: bytes, pattern: str, expected: bool) -> None:
    document = filter_document_sqs(message(body=body, headers={"tenant": "acme"}))
    assert parse_filter(pattern).matches(document) is expected


def test_sqs_filter_document_leaves_the_record_untouched() -> None:
    shaped = message(body=b'{"a": 1}')
    assert filter_document_sqs(shaped)["body"] == {"a": 1}
    assert shaped["body"] == '{"a": 1}'


KAFKA_FILTERING = [
    (b'{"device_ID": "AB1234"}', '{"value": {"device_ID": [{"prefix": "AB"}]}}', True),
    (b'{"device_ID": "CD1234"}', '{"value": {"device_ID": [{"prefix": "AB"}]}}', False),
    (b"error", '{"value": [{"anything-but": ["error"]}]}', False),
    (b"fine", '{"value": [{"anything-but": ["error"]}]}', True),
    (b"fine", '{"value": {"device_ID": [{"exists": true}]}}', False),
    (b"\xff\xfe", '{"value": [{"anything-but": ["error"]}]}', False),  # not UTF-8: no value
    (b"\xff\xfe", '{"value": [{"exists": false}]}', True),
    (None, '{"value": [null]}', True),  # a tombstone
    (b'{"a": 1}', '{"topic": ["orders"]}', False),  # only value is filterable
]


@pytest.mark.parametrize(("value", "pattern", "expected"), KAFKA_FILTERING)
def test_kafka_filter_document(value: bytes | None, pattern: str, expected: bool) -> None:
    assert parse_filter(pattern).matches(filter_document_kafka(kafka(1, value))) is expected


BATCH = ["m-1", "m-2", "m-3"]
EVERYTHING = frozenset(BATCH)
RESPONSES = [
    # a complete success, per Lambda's "Success and failure conditions"
    (None, None),
    (b"", None),
    (b" \n", None),
    (b"null", None),
    ({}, None),
    ({"statusCode": 200}, None),
    ({"batchItemFailures": None}, None),
    ({"batchItemFailures": []}, None),
    (b'{"batchItemFailures": []}', None),
    # the failed records
    ({"batchItemFailures": [{"itemIdentifier": "m-2"}]}, {"m-2"}),
    (
        b'{"batchItemFailures": [{"itemIdentifier": "m-1"}, {"itemIdentifier": "m-3"}]}',
        {"m-1", "m-3"},
    ),
    ({"batchItemFailures": [{"itemIdentifier": "m-2"}, {"itemIdentifier": "m-2"}]}, {"m-2"}),
    # a complete failure
    ({"batchItemFailures": [{"itemIdentifier": "m-9"}]}, EVERYTHING),  # not in the batch
    ({"batchItemFailures": [{"itemIdentifier": "m-1"}, {"itemIdentifier": ""}]}, EVERYTHING),
    ({"batchItemFailures": [{"itemIdentifier": None}]}, EVERYTHING),
    ({"batchItemFailures": [{"ItemIdentifier": "m-1"}]}, EVERYTHING),  # a bad key name
    ({"batchItemFailures": [{"itemIdentifier": 2}]}, EVERYTHING),
    ({"batchItemFailures": ["m-1"]}, EVERYTHING),
    ({"batchItemFailures": "m-1"}, EVERYTHING),
    (b"{not json", EVERYTHING),  # an invalid JSON response
    (b'"done"', EVERYTHING),  # JSON, but not an object to read failures from
    ("done", EVERYTHING),
    ([{"itemIdentifier": "m-1"}], EVERYTHING),
]


@pytest.mark.parametrize(("response", "expected"), RESPONSES)
def test_batch_item_failures_follow_lambdas_rules(response: Any, expected: Any) -> None:
    assert batch_item_failures(response, item_ids=BATCH) == expected


def test_kafka_item_identifiers_are_partition_and_offset() -> None:
    records = [kafka(10, b"a"), kafka(11, b"b")]
    ids = [kafka_item_identifier(r) for r in records]
    failed = {"itemIdentifier": {"partition": "orders-0", "offset": 11}}
    assert batch_item_failures({"batchItemFailures": [failed]}, item_ids=ids) == {ids[1]}
    for wrong in (
        {"partition": "orders-0", "offset": 12},
        {"partition": "orders-1", "offset": 11},
        {"partition": "orders-0"},
        {"partition": "orders-0", "offset": "11"},
    ):
        answer = {"batchItemFailures": [{"itemIdentifier": wrong}]}
        assert batch_item_failures(answer, item_ids=ids) == frozenset(ids), wrong


def test_an_empty_batch_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one record"):
        batch_item_failures(None, item_ids=[])


def test_kafka_record_refuses_an_unknown_timestamp_type() -> None:
    with pytest.raises(ValueError, match="'BROKER_TIME' is not CREATE_TIME or LOG_APPEND_TIME"):
        kafka(1, b"v", timestamp_type="BROKER_TIME")


def test_bootstrap_servers_must_be_a_list() -> None:
    with pytest.raises(TypeError, match="not one string"):
        kafka_event(event_source_arn=None, bootstrap_servers="one:9092", records=[])


def test_kafka_values_are_base64() -> None:
    (shaped,) = kafka_event(
        event_source_arn=None, bootstrap_servers=["b:9092"], records=[kafka(1, b"\x00\x01\xff")]
    )["records"]["orders-0"]
    assert base64.b64decode(shaped["value"]) == b"\x00\x01\xff"
