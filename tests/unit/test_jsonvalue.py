"""kubelambda/jsonvalue.py: orjson where it reads and writes as the json module would, the json
module where it would not, so the outcome is the json module's either way: ``loads`` parses as
it does, whatever orjson makes of a document, ``check`` accepts and refuses what it does, and
what ``dumps`` writes reads back as the json module reads it."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from kubelambda import jsonvalue

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
    b"1" * 400,  # beyond a double: orjson refuses it, the json module reads it
]


@pytest.mark.parametrize("document", DOCUMENTS, ids=range(len(DOCUMENTS)))
def test_loads_reads_what_json_reads(document: bytes) -> None:
    expected = json.loads(document)
    found = jsonvalue.loads(document)
    if isinstance(expected, dict) and any(
        isinstance(v, float) and math.isnan(v) for v in expected.values()
    ):
        assert list(found) == list(expected) and math.isnan(found["a"])
    else:
        assert found == expected
        assert type(found) is type(expected)


REFUSED = [
    b"",
    b"{",
    b"{'a': 1}",
    b"\xff\xfe\x00",
    b"[1,]",
    b"01",
    b"[" * 5000 + b"]" * 5000,
    b"1" * 5000,  # over the json module's digits for an integer
]


@pytest.mark.parametrize("document", REFUSED, ids=range(len(REFUSED)))
def test_loads_and_check_refuse_what_json_refuses(document: bytes) -> None:
    with pytest.raises((ValueError, UnicodeDecodeError, RecursionError)) as json_error:
        json.loads(document)
    with pytest.raises(type(json_error.value)):
        jsonvalue.loads(document)
    with pytest.raises(type(json_error.value)) as checked:
        jsonvalue.check(document)
    assert str(checked.value) == str(json_error.value)


@pytest.mark.parametrize("document", DOCUMENTS, ids=range(len(DOCUMENTS)))
def test_check_accepts_what_json_reads(document: bytes) -> None:
    json.loads(document)
    jsonvalue.check(document)


OBJECTS: list[Any] = [
    {"metadata": {"name": "hello", "labels": {"a": "b"}}, "data": {"app.py": "é = 1\n"}},
    {"spec": {"replicas": 0, "big": 2**64 + 1}},  # beyond 64 bits: orjson refuses it
    {"spec": {1: "a key that is not a string"}},  # orjson refuses it; json makes it "1"
    {"nested": [[], {}, None, True, 1.5, "\u2028"]},
]


@pytest.mark.parametrize("obj", OBJECTS)
def test_what_dumps_writes_reads_back_as_the_json_module_reads_it(obj: Any) -> None:
    data = jsonvalue.dumps(obj)
    assert jsonvalue.loads(data) == json.loads(data) == json.loads(json.dumps(obj))
    assert b'": ' not in data and b'", ' not in data  # compact


@pytest.mark.parametrize(
    "obj",
    [
        *OBJECTS,
        {"z": {"b": [3, {"y": 1, "x": 2}], "a": "ascii only"}, "a": False, "m": None},
        {"metadata": {"annotations": {"kubelambda.dev/applied": "x" * 32}}, "spec": {"n": -7}},
    ],
)
def test_canonical_writes_what_the_json_module_writes_sorted(obj: Any) -> None:
    """Fingerprints hashed from it stay those of earlier versions, which used the json module."""
    expected = json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
    assert jsonvalue.canonical(obj) == expected
