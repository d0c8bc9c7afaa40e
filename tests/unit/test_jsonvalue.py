"""kubelambda/jsonvalue.py: orjson where it reads and writes as the json module would, the json
module where it would not, so the outcome is the json module's either way."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kubelambda import jsonvalue

OBJECTS: list[Any] = [
    {"metadata": {"name": "hello", "labels": {"a": "b"}}, "data": {"app.py": "é = 1\n"}},
    {"spec": {"replicas": 0, "big": 2**64 + 1}},  # beyond 64 bits: orjson refuses it
    {"spec": {1: "a key that is not a string"}},  # orjson refuses it; json makes it "1"
    {"nested": [[], {}, None, True, 1.5, "\u2028"]},
]


@pytest.mark.parametrize("obj", OBJECTS)
def test_what_is_written_reads_back_as_the_json_module_reads_it(obj: Any) -> None:
    data = jsonvalue.dumps(obj)
    assert jsonvalue.loads(data) == json.loads(data) == json.loads(json.dumps(obj))
    assert b'": ' not in data and b'", ' not in data  # compact


@pytest.mark.parametrize(
    "data",
    [
        b'{"n": 123456789012345678901234567890}',  # orjson: a float
        b'{"n": NaN}',  # orjson: refused
        '{"s": "é"}'.encode("utf-16"),  # orjson: refused
    ],
)
def test_what_orjson_reads_otherwise_the_json_module_reads(data: bytes) -> None:
    assert repr(jsonvalue.loads(data)) == repr(json.loads(data))


@pytest.mark.parametrize("data", [b"", b"{", b"not json"])
def test_what_is_not_json_raises_the_json_modules_error(data: bytes) -> None:
    with pytest.raises(json.JSONDecodeError):
        jsonvalue.loads(data)
