"""Raw, often malformed, HTTP/1.1 requests at the gateway's public port (a real gateway on
loopback): each gets a well-formed answer that is not a 500, or the connection closes; within
the configured timeouts; the gateway logs no error and its memory stays bounded."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import event, example, given
from hypothesis import strategies as st

from fuzz.gateway import Running, exchange, rss_bytes, running_gateway

METHODS = [b"GET", b"POST", b"PUT", b"HEAD", b"DELETE", b"OPTIONS", b"PATCH", b"CONNECT", b"TRACE"]
PATHS = [
    b"/hello",
    b"/hello/more?x=1",
    b"/2015-03-31/functions/hello/invocations",
    b"/2015-03-31/functions/default.hello/invocations?Qualifier=%24LATEST",
    b"/2015-03-31/functions/hello",
    b"/2015-03-31/functions/",
    b"/_kubelambda/events/s3",
    b"/_kubelambda/nothing",
    b"/",
    b"*",
    b"http://localhost/hello",
    b"/%ZZ",
    b"/hello%00",
]
HEADER_NAMES = [
    b"Host",
    b"Content-Type",
    b"Content-Length",
    b"Transfer-Encoding",
    b"Connection",
    b"Expect",
    b"X-Amz-Invocation-Type",
    b"X-Amz-Client-Context",
    b"X-Amz-Log-Type",
    b"Authorization",
    b"Upgrade",
]
NASTY = st.sampled_from([b"\r", b"\n", b"\x00", b" ", b"\t", b":", b"\xff", b"\r\n", b"\r\n\r\n"])
junk_bytes = st.lists(st.binary(max_size=8) | NASTY, max_size=6).map(b"".join)


def mostly(draw: st.DrawFn, good: st.SearchStrategy[bytes], bad: st.SearchStrategy[bytes]) -> bytes:
    """From `good` nine times in ten: one malformed part at a time is what tests each check."""
    return draw(good if draw(st.integers(0, 9)) else bad)


@st.composite
def requests(draw: st.DrawFn) -> tuple[bytes, bool]:
    """A request's bytes, and whether it is a HEAD request."""
    eol = mostly(draw, st.just(b"\r\n"), st.sampled_from([b"\n", b"\r"]))
    method = mostly(draw, st.sampled_from(METHODS), junk_bytes)
    target = mostly(
        draw,
        st.sampled_from(PATHS) | st.text(max_size=10).map(lambda t: b"/" + t.encode()),
        st.sampled_from(PATHS).map(lambda p: p + b"/" + b"a" * 20_000)
        | junk_bytes.map(lambda j: b"/" + j),
    )
    version = mostly(
        draw,
        st.sampled_from([b"HTTP/1.1"] * 6 + [b"HTTP/1.0"]),
        st.sampled_from([b"HTTP/2.0", b"HTTP/0.9", b"HTTP/1.1x", b"HTTP/3"]) | junk_bytes,
    )
    line = method + b" " + target + mostly(draw, st.just(b" " + version), st.just(b""))
    headers: list[bytes] = []
    if draw(st.integers(0, 9)):
        headers.append(b"Host: localhost")
    for _ in range(draw(st.integers(0, 4))):
        name = mostly(draw, st.sampled_from(HEADER_NAMES), junk_bytes)
        value = mostly(
            draw, st.text(max_size=40).map(str.encode), junk_bytes | st.just(b"x" * 40_000)
        )
        separator = mostly(draw, st.sampled_from([b": ", b":"]), st.sampled_from([b" : ", b""]))
        headers.append(name + separator + value)
    if draw(st.integers(0, 19)) == 0:
        headers.extend(b"X-Many-%d: 1" % i for i in range(draw(st.integers(90, 120))))
    body = draw(st.binary(max_size=300) | st.just(b"x" * 70_000) | st.just(b'{"name": "fuzz"}'))
    framing = draw(st.sampled_from(["length", "length", "none", "chunked", "both", "bad"]))
    if framing == "length":
        headers.append(b"Content-Length: %d" % len(body))
    elif framing in ("chunked", "both"):
        size = draw(
            st.sampled_from([b"%x" % len(body), b"%X" % len(body), b"zz", b"-1", b"1" * 20])
        )
        extension = draw(st.sampled_from([b"", b";ext=1", b" "]))
        trailer = draw(st.sampled_from([b"0\r\n\r\n", b"0\r\n", b"", b"0\r\nX-T: 1\r\n\r\n"]))
        body = (size + extension + b"\r\n" + body + b"\r\n" + trailer) if body else trailer
        encodings = [b"chunked", b"gzip, chunked", b"chunked, identity", b"Chunked", b"chunked "]
        headers.append(b"Transfer-Encoding: " + draw(st.sampled_from(encodings)))
        if framing == "both":
            headers.append(b"Content-Length: %d" % draw(st.integers(0, 400)))
    elif framing == "bad":
        value = draw(
            st.sampled_from([b"-1", b"abc", b"1e3", b"99999999999999999999", b"10, 10", b"+5"])
        )
        headers.append(b"Content-Length: " + value)
        if draw(st.booleans()):
            headers.append(b"Content-Length: %d" % (len(body) + 1))
    head = line + eol + b"".join(h + eol for h in headers) + eol
    return head + body, method == b"HEAD"


@pytest.fixture(scope="module")
def gateway() -> Iterator[Running]:
    with running_gateway() as running:
        yield running


# 403: a write to the Lambda API, which is read-only (docs/contracts.md).
REFUSALS = {400, 403, 404, 405, 408, 411, 413, 414, 415, 426, 431, 501, 505}


@given(requests())
@example((b"GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n", False))
@example(
    (
        b"POST /hello HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        False,
    )
)
def test_every_request_gets_an_answer_or_a_close(
    gateway: Running, request: tuple[bytes, bool]
) -> None:
    raw, head = request
    before = len(gateway.errors.records)
    answer, _ = exchange(gateway.port, raw, head=head)
    event(f"status {answer.status}")
    assert answer.status != 500, answer.body
    assert (
        answer.status is None
        or answer.status < 300
        or answer.status
        in REFUSALS
        | {
            503,
            504,
        }
    ), (answer.status, answer.body)
    assert gateway.errors.records[before:] == [], [
        r.getMessage() for r in gateway.errors.records[before:]
    ]


def test_memory_stays_bounded_under_fuzzed_requests(gateway: Running) -> None:
    """The gateway's memory after many large refused requests grows by less than the bounds
    allow (64 KiB bodies, 32 KiB heads): nothing accumulates per request."""
    request = b"POST /hello HTTP/1.1\r\nHost: localhost\r\nContent-Length: 60000\r\n\r\n"
    body = b"x" * 60_000
    for _ in range(50):  # warm up: allocator arenas, connection objects
        exchange(gateway.port, request + body)
    before = rss_bytes()
    for _ in range(500):
        exchange(gateway.port, request + body)
        exchange(gateway.port, b"GET /hello HTTP/1.1\r\nX: " + b"y" * 40_000 + b"\r\n\r\n")
    grown = rss_bytes() - before
    assert grown < 32 * 1024 * 1024, f"RSS grew by {grown} bytes over 1,000 requests"
