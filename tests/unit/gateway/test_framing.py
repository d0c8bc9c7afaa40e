"""gateway/framing.py: the check that keeps a function's headers from splitting an answer or
smuggling another, byte by byte, as uvicorn's own check refuses them."""

from __future__ import annotations

import pytest

from kubelambda.gateway.framing import STATUS_LINES, malformed, refusal

# Bytes a header name may not hold: controls, DEL, space and HTTP's separators (as uvicorn's
# check, which lets "/" and "?" pass).
_FORBIDDEN_IN_NAMES = {*range(0x20), 0x7F, *b'()<>@,;:[]={} "\\'}
# Bytes a header value may not hold: controls but tab, and DEL.
_FORBIDDEN_IN_VALUES = {*range(0x09), *range(0x0A, 0x20), 0x7F}


@pytest.mark.parametrize("byte", range(256))
def test_each_byte_of_a_header_is_refused_exactly_where_http_forbids_it(byte: int) -> None:
    one = bytes([byte])
    assert malformed([b"x-" + one + b"-y"], [b"fine"]) == (byte in _FORBIDDEN_IN_NAMES)
    assert malformed([b"x-ok"], [b"a " + one + b" z"]) == (byte in _FORBIDDEN_IN_VALUES)
    # Among other headers, and as a header of its own.
    names, values = [b"content-type", b"x"], [b"text/plain", b"v"]
    assert malformed([*names, one], [*values, b"v"]) == (byte in _FORBIDDEN_IN_NAMES)
    assert malformed([*names, b"y"], [*values, one]) == (byte in _FORBIDDEN_IN_VALUES)


@pytest.mark.parametrize(
    ("names", "values", "refused"),
    [
        ([], [], False),
        ([b""], [b""], False),
        ([b"a", b""], [b"", b"b"], False),
        ([b"set-cookie", b"set-cookie"], [b"a=1; Path=/", b"b=\xe9t\xe9"], False),
        ([b"x"], [b"one\r\nx-injected: 1"], True),
        ([b"x\r\nx-injected"], [b"1"], True),
    ],
    ids=["none", "empty", "empties", "repeated, non-ascii", "crlf in a value", "crlf in a name"],
)
def test_headers_as_a_whole(names: list[bytes], values: list[bytes], refused: bool) -> None:
    assert malformed(names, values) == refused


def test_refusals_and_status_lines_are_whole_http() -> None:
    answer = refusal(b"503 Service Unavailable", b"busy", b"retry-after: 1")
    head, body = answer.split(b"\r\n\r\n")
    assert head.split(b"\r\n") == [
        b"HTTP/1.1 503 Service Unavailable",
        b"content-type: application/json",
        b"content-length: %d" % len(body),
        b"connection: close",
        b"retry-after: 1",
    ]
    assert body == b'{"message":"busy"}'
    assert STATUS_LINES[404] == b"HTTP/1.1 404 Not Found\r\n"
    assert STATUS_LINES[599] == b"HTTP/1.1 599 \r\n"
