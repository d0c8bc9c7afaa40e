"""Return values encoded as awslambdaric encodes them (lambda_runtime_marshaller.py: simplejson
with namedtuple_as_object, Decimal as its own digits, bytes as they are)."""

from __future__ import annotations

import collections
import decimal
import enum
import typing

import pytest

from kubelambda_runtime.worker.marshal import marshal

Point = collections.namedtuple("Point", "x y")


class Typed(typing.NamedTuple):
    name: str
    price: decimal.Decimal


class Size(enum.IntEnum):
    SMALL = 1


class Record:
    def _asdict(self) -> dict[str, int]:  # simplejson asks any object for _asdict
        return {"a": 1}


@pytest.mark.parametrize(
    ("result", "body"),
    [
        ({"a": [1, 2.5, None, True]}, b'{"a": [1, 2.5, null, true]}'),
        ((1, "two"), b'[1, "two"]'),
        (Point(1, 2), b'{"x": 1, "y": 2}'),
        ([Point(1, [Point(3, 4)])], b'[{"x": 1, "y": [{"x": 3, "y": 4}]}]'),
        (Typed("pen", decimal.Decimal("1.10")), b'{"name": "pen", "price": 1.10}'),
        (decimal.Decimal("0.1000000000000000000000001"), b"0.1000000000000000000000001"),
        (decimal.Decimal("12345678901234567890123"), b"12345678901234567890123"),
        ({"n": decimal.Decimal("7")}, b'{"n": 7}'),
        (decimal.Decimal("1E+3"), b"1E+3"),
        (decimal.Decimal("NaN"), b"NaN"),
        (float("inf"), b"Infinity"),
        (b"\x00raw \xff bytes", b"\x00raw \xff bytes"),
        ({"data": b"caf\xc3\xa9"}, b'{"data": "caf\\u00e9"}'),
        (
            {b"key": 1, 2: 3, 1.5: 4, None: 5, True: 6},
            b'{"key": 1, "2": 3, "1.5": 4, "null": 5, "true": 6}',
        ),
        ({"size": Size.SMALL}, b'{"size": 1}'),
        (Record(), b'{"a": 1}'),
        ("caf\u00e9 \u2028", b'"caf\\u00e9 \\u2028"'),
    ],
    ids=[
        "plain",
        "tuple",
        "namedtuple",
        "nested-namedtuples",
        "typed-namedtuple-decimal",
        "decimal-digits",
        "big-decimal",
        "decimal-int",
        "decimal-exponent",
        "decimal-nan",
        "infinity",
        "bytes-raw",
        "nested-bytes",
        "keys",
        "intenum",
        "asdict-object",
        "unicode",
    ],
)
def test_results_are_encoded_as_awslambdaric_does(result, body, monkeypatch):
    monkeypatch.setenv("AWS_EXECUTION_ENV", "AWS_Lambda_python3.11")
    assert marshal(result) == body


def test_python_312_and_later_keep_non_ascii_characters(monkeypatch):
    monkeypatch.setenv("AWS_EXECUTION_ENV", "AWS_Lambda_python3.12")
    assert (
        marshal({"v": "caf\u00e9", "d": decimal.Decimal("1")}) == '{"v": "café", "d": 1}'.encode()
    )
    assert marshal("caf\u00e9") == '"café"'.encode()


@pytest.mark.parametrize(
    ("result", "error", "message"),
    [
        ({1, 2}, TypeError, "Object of type set is not JSON serializable"),
        ({"d": {1}}, TypeError, "Object of type set is not JSON serializable"),
        (
            {(1, 2): 1, "x": decimal.Decimal(1)},
            TypeError,
            "keys must be str, int, float, bool or None, not tuple",
        ),
        ({"b": b"\xff"}, UnicodeDecodeError, "can't decode byte 0xff"),
    ],
)
def test_what_awslambdaric_cannot_encode_fails(result, error, message):
    with pytest.raises(error, match=message):
        marshal(result)


def test_a_circular_result_fails():
    loop: list[object] = [Point(1, 2)]
    loop.append(loop)
    with pytest.raises(ValueError, match="Circular reference detected"):
        marshal(loop)
