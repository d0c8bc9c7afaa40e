"""gateway/http.py: json_value parses as the json module does, whatever orjson makes of it."""

from __future__ import annotations

import json
import math

import pytest

from kubelambda.gateway.http import json_value

# Documents orjson refuses or reads otherwise, and ordinary ones.
DOCUMENTS = [
    b'{"statusCode": 200, "body": "hello"}',
    b"[1, 2.5, true, null]",
    b'"caf\\u00e9 \xe2\x98\x83"',
    b"123456789012345678901234567890",  # over 64 bits
    b"-9223372036854775809",
    b'{"a": NaN}',
    b"Infinity",
    b'"\\ud800"',  # a lone surrogate
    '{"utf16": 1}'.encode("utf-16"),
    b'{"a": 1, "a": 2}',
    b"[" * 900 + b"]" * 900,  # deeper than orjson goes
    b'{"id": 12345678901234567890123, "n": 1.5e3}',
    b"0.12345678901234567890123",
    b"1e400",
    b"  {}  ",
]


@pytest.mark.parametrize("document", DOCUMENTS, ids=range(len(DOCUMENTS)))
def test_json_value_reads_what_json_reads(document: bytes) -> None:
    expected = json.loads(document)
    found = json_value(document)
    if isinstance(expected, dict) and any(
        isinstance(v, float) and math.isnan(v) for v in expected.values()
    ):
        assert list(found) == list(expected) and math.isnan(found["a"])
    else:
        assert found == expected
        assert type(found) is type(expected)


REFUSED = [b"", b"{", b"{'a': 1}", b"\xff\xfe\x00", b"[1,]", b"01", b"[" * 5000 + b"]" * 5000]


@pytest.mark.parametrize("document", REFUSED, ids=range(len(REFUSED)))
def test_json_value_refuses_what_json_refuses(document: bytes) -> None:
    with pytest.raises((ValueError, UnicodeDecodeError, RecursionError)) as json_error:
        json.loads(document)
    with pytest.raises(type(json_error.value)):
        json_value(document)
