"""dispatcher/batches.py's encoding of a batch's event: the JSON the json module would write (up
to how non-ASCII text is escaped), and what orjson refuses still written."""

from __future__ import annotations

import json

from kubelambda.dispatcher.batches import encoded
from kubelambda.dispatcher.shapes import KafkaRecord, kafka_event, sqs_event


def test_a_kafka_batch_is_written_as_the_json_module_writes_it() -> None:
    records = [
        KafkaRecord(topic="orders", partition=1, offset=n, timestamp_ms=1, value=b'{"n": %d}' % n)
        for n in range(3)
    ] + [
        KafkaRecord(
            topic="orders",
            partition=2,
            offset=9,
            timestamp_ms=2,
            timestamp_type="LOG_APPEND_TIME",
            key=b"k",
            value=None,
            headers=(("h", b"\xc3\xa9"),),
        )
    ]
    event = kafka_event(event_source_arn=None, bootstrap_servers=["b:9092"], records=records)
    assert encoded(event) == json.dumps(event, separators=(",", ":")).encode()


def test_text_beyond_ascii_is_the_same_json_and_huge_numbers_still_go() -> None:
    event = sqs_event([{"body": "café ☕", "n": 2**70}])
    assert json.loads(encoded(event)) == event
