"""API Gateway HTTP API payload 2.0: return values mapped to responses, as data."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from kubelambda.gateway.http import Response
from kubelambda.gateway.sources.http_payload import (
    _ENCODED_CHARS,
    _ENCODED_PAIRS,
    _encoded,
    function_error_response,
    map_response,
)

BINARY = bytes(range(256))
ERROR = Response(
    status=502,
    headers=[(b"content-type", b"application/json")],
    body=b'{"message":"Internal Server Error"}',
)
TEXT_PLAIN = (b"content-type", b"text/plain; charset=utf-8")


def mapped(result: object) -> Response:
    return map_response(json.dumps(result).encode())


@pytest.mark.parametrize(
    "payload",
    [b'"Hello, world!"', b'{"message": "hi"}', b"[1, 2]", b"42", b"3.5", b"true", b"null"],
)
def test_value_without_status_code_is_json_200(payload: bytes) -> None:
    assert map_response(payload) == Response(
        status=200, headers=[(b"content-type", b"application/json")], body=payload
    )


def test_object_with_body_but_no_status_code_is_sent_whole() -> None:
    payload = b'{"body": "x", "headers": {"a": "b"}}'
    got = map_response(payload)
    assert (got.status, got.body) == (200, payload)


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        (
            {"statusCode": 201, "headers": {"Content-Type": "text/html"}, "body": "<p>hi</p>"},
            Response(201, [(b"content-type", b"text/html")], b"<p>hi</p>"),
        ),
        (
            {"statusCode": 204},
            Response(204, [TEXT_PLAIN], b""),
        ),
        (
            {"statusCode": "404", "body": "nope"},
            Response(404, [TEXT_PLAIN], b"nope"),
        ),
        (
            {"statusCode": 200, "body": "caf\u00e9"},
            Response(200, [TEXT_PLAIN], "caf\u00e9".encode()),
        ),
        (
            {
                "statusCode": 200,
                "headers": {"X-Int": 5, "X-Float": 1.5, "X-Bool": True, "X-Gone": None},
                "body": "",
            },
            Response(
                200,
                [(b"x-int", b"5"), (b"x-float", b"1.5"), (b"x-bool", b"true"), TEXT_PLAIN],
                b"",
            ),
        ),
        (
            {"statusCode": 200, "headers": {"Content-Type": None}, "body": "raw"},
            Response(200, [], b"raw"),
        ),
        (
            {
                "statusCode": 302,
                "headers": {"location": "/next", "content-type": "text/plain"},
                "cookies": ["a=1; Path=/", "b=2; Max-Age=60"],
            },
            Response(
                302,
                [
                    (b"location", b"/next"),
                    (b"content-type", b"text/plain"),
                    (b"set-cookie", b"a=1; Path=/"),
                    (b"set-cookie", b"b=2; Max-Age=60"),
                ],
                b"",
            ),
        ),
        (
            {"statusCode": 200, "body": {"a": [1, 2]}, "headers": {"content-type": "x/y"}},
            Response(200, [(b"content-type", b"x/y")], b'{"a":[1,2]}'),
        ),
        (
            {"statusCode": 200, "body": None},
            Response(200, [TEXT_PLAIN], b""),
        ),
        (
            {
                "statusCode": 200,
                "isBase64Encoded": True,
                "headers": {"content-type": "image/png"},
                "body": base64.b64encode(BINARY).decode(),
            },
            Response(200, [(b"content-type", b"image/png")], BINARY),
        ),
        (
            {"statusCode": 200, "isBase64Encoded": "true", "body": "aGk="},
            Response(200, [TEXT_PLAIN], b"hi"),
        ),
        (
            {"statusCode": 200, "isBase64Encoded": False, "body": "aGk="},
            Response(200, [TEXT_PLAIN], b"aGk="),
        ),
        (
            {"statusCode": 200, "isBase64Encoded": "False", "body": "aGk="},
            Response(200, [TEXT_PLAIN], b"aGk="),
        ),
        (
            # Payload 2.0 reads no multiValueHeaders: API Gateway drops them.
            {"statusCode": 200, "multiValueHeaders": {"x-a": ["1", "2"]}, "body": "x"},
            Response(200, [TEXT_PLAIN], b"x"),
        ),
        (
            {"statusCode": 200, "headers": {"x-name": "\u20ac"}, "body": ""},
            Response(200, [(b"x-name", "\u20ac".encode()), TEXT_PLAIN], b""),
        ),
    ],
    ids=[
        "custom",
        "status-only",
        "status-as-string",
        "utf8-body",
        "header-values-stringified",
        "explicit-null-content-type",
        "cookies-each-a-set-cookie",
        "non-string-body-json",
        "null-body",
        "base64-body",
        "base64-flag-as-string",
        "base64-flag-false",
        "base64-flag-false-as-string",
        "multi-value-headers-ignored",
        "non-latin1-header-utf8",
    ],
)
def test_status_code_response(result: dict[str, Any], expected: Response) -> None:
    assert mapped(result) == expected
    assert mapped(result) == expected  # again, its header pairs now remembered


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (
            b'{"statusCode": 200, "headers": {"x-n": 18446744073709551616, "x-f": 1.5}}',
            [(b"x-n", b"18446744073709551616"), (b"x-f", b"1.5")],
        ),
        (b'{"statusCode": 200, "headers": {"x-n": NaN}}', [(b"x-n", b"NaN")]),
        (b'{"statusCode": 200, "body": {"n": 123456789012345678901234567890}}', None),
        (b'{"statusCode": 200, "body": [NaN, 18446744073709551615]}', None),
    ],
    ids=["long-and-float-header", "nan-header", "long-in-body", "nan-and-u64-in-body"],
)
def test_numbers_are_written_back_as_the_json_module_reads_them(
    payload: bytes, expected: list[tuple[bytes, bytes]] | None
) -> None:
    # orjson reads an integer beyond 64 bits as a float and refuses NaN; the answer must not
    # show it. A body that is not a string is JSON as the json module writes it.
    result = json.loads(payload)
    answer = map_response(payload)
    assert answer.status == 200
    if expected is not None:
        assert answer.headers[: len(expected)] == expected
    else:
        assert answer.body == json.dumps(result["body"], separators=(",", ":")).encode()


@pytest.mark.parametrize(
    "payload",
    [b"18446744073709551616", b'{"n": 18446744073709551616, "statusCod": 1}', b"[NaN]"],
)
def test_other_values_with_such_numbers_pass_as_returned(payload: bytes) -> None:
    assert map_response(payload) == Response(200, [(b"content-type", b"application/json")], payload)


def test_a_long_integer_status_code_is_502() -> None:
    assert map_response(b'{"statusCode": 18446744073709551816}') == ERROR


def test_remembered_header_pairs_are_bounded_in_number_and_length() -> None:
    for n in range(_ENCODED_PAIRS + 10):
        assert mapped({"statusCode": 200, "headers": {"x-n": str(n)}}).headers[0] == (
            b"x-n",
            str(n).encode(),
        )
        assert len(_encoded) <= _ENCODED_PAIRS
    long = "v" * _ENCODED_CHARS
    assert mapped({"statusCode": 200, "headers": {"x-long": long}}).headers[0][1] == long.encode()
    assert ("x-long", long) not in _encoded


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"not json",
        b"[" * 200_000 + b"]" * 200_000,
        b'{"statusCode": 200',
        b"\xff\xfe\x00",
        json.dumps({"statusCode": "abc"}).encode(),
        json.dumps({"statusCode": None}).encode(),
        json.dumps({"statusCode": True}).encode(),
        json.dumps({"statusCode": 200.5}).encode(),
        json.dumps({"statusCode": 99}).encode(),
        json.dumps({"statusCode": 600}).encode(),
        json.dumps({"statusCode": 200, "headers": ["a"]}).encode(),
        json.dumps({"statusCode": 200, "headers": {"a": ["1"]}}).encode(),
        json.dumps({"statusCode": 200, "headers": {"a": {"b": 1}}}).encode(),
        json.dumps({"statusCode": 200, "headers": {"": "x"}}).encode(),
        json.dumps({"statusCode": 200, "headers": {"a:b": "x"}}).encode(),
        json.dumps({"statusCode": 200, "headers": {"x": "a\r\nset-cookie: evil"}}).encode(),
        json.dumps({"statusCode": 200, "cookies": "a=1"}).encode(),
        json.dumps({"statusCode": 200, "cookies": [1]}).encode(),
        json.dumps({"statusCode": 200, "cookies": ["a=1\nb"]}).encode(),
        json.dumps({"statusCode": 200, "isBase64Encoded": True, "body": "not base64!"}).encode(),
        json.dumps({"statusCode": 200, "isBase64Encoded": True, "body": {"a": 1}}).encode(),
        json.dumps({"statusCode": 200, "isBase64Encoded": "yes", "body": "x"}).encode(),
    ],
    ids=[
        "empty",
        "not-json",
        "nested-too-deep",
        "truncated",
        "bad-bytes",
        "status-text",
        "status-null",
        "status-bool",
        "status-fraction",
        "status-too-low",
        "status-too-high",
        "headers-list",
        "header-list-value",
        "header-object-value",
        "header-empty-name",
        "header-colon-name",
        "header-injection",
        "cookies-string",
        "cookie-not-string",
        "cookie-injection",
        "bad-base64",
        "base64-non-string",
        "base64-flag-junk",
    ],
)
def test_unusable_payload_is_502(payload: bytes) -> None:
    assert map_response(payload) == ERROR


def test_function_error_response() -> None:
    assert function_error_response() == ERROR
    # Each call stands alone: a caller appending a header must not change the next answer.
    function_error_response().headers.append((b"x", b"y"))
    assert function_error_response() == ERROR
