"""wire/http1.py: its written-out reason phrases are http.HTTPStatus's, and its Response
behaves as the dataclass it replaced (equality by value, a fresh header list each)."""

from __future__ import annotations

from http import HTTPStatus

from kubelambda_runtime.wire import http1
from kubelambda_runtime.wire.http1 import Response, encode_response


def test_reason_phrases_are_http_statuses() -> None:
    assert {status.value: status.phrase.encode() for status in HTTPStatus} == http1._REASONS


def test_status_line_carries_the_phrase() -> None:
    encoded = encode_response(Response(413, b"{}"), keep_alive=True)
    assert encoded.startswith(b"HTTP/1.1 413 Request Entity Too Large\r\ncontent-length: 2\r\n")
    assert encode_response(Response(299), keep_alive=False).startswith(b"HTTP/1.1 299 \r\n")


def test_responses_compare_by_value_and_own_their_headers() -> None:
    first, second = Response(200), Response(200)
    first.headers.append((b"a", b"b"))
    assert second.headers == []
    assert Response(200, b"x", [(b"a", b"b")]) == first.__class__(200, b"x", [(b"a", b"b")])
    assert Response(200, b"x") != Response(201, b"x")
    assert repr(Response(204)) == "Response(status=204, body=b'', headers=[])"
