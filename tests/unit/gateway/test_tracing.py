"""Reading and writing trace headers at the gateway (kubelambda.gateway.tracing)."""

from __future__ import annotations

import re

import pytest

from kubelambda.gateway.tracing import (
    TraceContext,
    from_traceparent,
    from_xray,
    incoming,
    new_trace,
)

TRACE = "5759e988bd862e3fe1be46a994272793"
ROOT = "1-5759e988-bd862e3fe1be46a994272793"
PARENT = "53995c3f42cd8ad8"
NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (
            f"Root={ROOT};Parent={PARENT};Sampled=1",
            TraceContext(TRACE, PARENT, True),
        ),
        (f"Root={ROOT};Parent={PARENT};Sampled=0", TraceContext(TRACE, PARENT, False)),
        (f"Root={ROOT}", TraceContext(TRACE)),
        (f"Root={ROOT};Sampled=?", TraceContext(TRACE)),
        # Keys in any order, spaces after separators, other keys kept as they came.
        (
            f"Sampled=1; Parent={PARENT}; Root={ROOT};Lineage=a87bd80c:1|68fd508a:5",
            TraceContext(TRACE, PARENT, True, ";Lineage=a87bd80c:1|68fd508a:5"),
        ),
    ],
)
def test_reads_xray_headers(header: str, expected: TraceContext) -> None:
    assert from_xray(header) == expected


@pytest.mark.parametrize(
    "header",
    [
        "",
        f"Parent={PARENT};Sampled=1",  # no root
        "Root=1-5759e988-bd862e3fe1be46a99427279",  # 23 hex
        "Root=2-5759e988-bd862e3fe1be46a994272793",  # unknown version
        "Root=1-5759e98g-bd862e3fe1be46a994272793",  # not hex
        "Root=1-00000000-000000000000000000000000",  # all zeros
        f"Root={ROOT};Parent=53995c3f42cd8ad",  # 15 hex
        f"Root={ROOT};Parent=0000000000000000",
        f"Root={ROOT};Sampled=yes",
        f"Root={ROOT};garbage",
        # The usual form, all parts present, still checked for zeros.
        f"Root=1-00000000-000000000000000000000000;Parent={PARENT};Sampled=1",
        f"Root={ROOT};Parent=0000000000000000;Sampled=1",
    ],
)
def test_refuses_malformed_xray_headers(header: str) -> None:
    assert from_xray(header) is None


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (f"00-{TRACE}-{PARENT}-01", TraceContext(TRACE, PARENT, True)),
        (f"00-{TRACE}-{PARENT}-00", TraceContext(TRACE, PARENT, False)),
        # Flags other than "sampled" are not ours to read, but the sampled bit still is.
        (f"00-{TRACE}-{PARENT}-03", TraceContext(TRACE, PARENT, True)),
    ],
)
def test_reads_traceparent(header: str, expected: TraceContext) -> None:
    assert from_traceparent(header) == expected


@pytest.mark.parametrize(
    "header",
    [
        f"01-{TRACE}-{PARENT}-01",  # a later version may add fields we cannot read
        f"ff-{TRACE}-{PARENT}-01",
        f"00-{TRACE.upper()}-{PARENT}-01",  # W3C: lower-case hex only
        f"00-{'0' * 32}-{PARENT}-01",
        f"00-{TRACE}-{'0' * 16}-01",
        f"00-{TRACE}-{PARENT}-1",
        f"00-{TRACE}-{PARENT}-01-extra",
        f"00-{TRACE[:-1]}-{PARENT}-01",
        "",
    ],
)
def test_refuses_malformed_traceparent(header: str) -> None:
    assert from_traceparent(header) is None


def test_an_xray_root_is_the_w3c_trace_id_and_back() -> None:
    # As AWS's X-Ray propagator for OpenTelemetry maps them: the root without "1-" and "-".
    context = from_xray(f"Root={ROOT};Parent={PARENT};Sampled=1")
    assert context is not None
    xray, w3c = context.headers()
    assert w3c == (b"traceparent", f"00-{TRACE}-{PARENT}-01".encode())
    assert xray == (b"x-amzn-trace-id", f"Root={ROOT};Parent={PARENT};Sampled=1".encode())

    context = from_traceparent(f"00-{TRACE}-{PARENT}-00")
    assert context is not None
    xray, w3c = context.headers()
    assert xray[1] == f"Root={ROOT};Parent={PARENT};Sampled=0".encode()
    assert w3c[1] == f"00-{TRACE}-{PARENT}-00".encode()


def test_headers_keep_other_xray_keys_and_take_the_gateways_span() -> None:
    context = TraceContext(TRACE, PARENT, True, ";Lineage=a87bd80c:1")
    xray, w3c = context.headers(span_id="00f067aa0ba902b7", sampled=False)
    assert xray[1] == f"Root={ROOT};Parent=00f067aa0ba902b7;Sampled=0;Lineage=a87bd80c:1".encode()
    assert w3c[1] == f"00-{TRACE}-00f067aa0ba902b7-00".encode()


def test_a_trace_without_a_parent_names_a_fresh_one_and_is_not_sampled() -> None:
    xray, w3c = TraceContext(TRACE).headers()
    match = re.fullmatch(rf"Root={ROOT};Parent=([0-9a-f]{{16}});Sampled=0", xray[1].decode())
    assert match is not None
    assert w3c[1] == f"00-{TRACE}-{match.group(1)}-00".encode()


def test_new_traces_start_with_the_epoch_seconds_and_differ() -> None:
    first, second = new_trace(NOW), new_trace(NOW)
    assert first.root.startswith(f"1-{int(NOW):08x}-")
    assert re.fullmatch(r"1-[0-9a-f]{8}-[0-9a-f]{24}", first.root)
    assert first.trace_id != second.trace_id
    assert first.parent_id is None and first.sampled is None


def test_incoming_prefers_xray_then_traceparent_then_a_new_trace() -> None:
    other = "0af7651916cd43dd8448eb211c80319c"
    xray = f"Root={ROOT};Parent={PARENT};Sampled=1"
    w3c = f"00-{other}-b7ad6b7169203331-01"
    assert incoming(xray, w3c, now=NOW).trace_id == TRACE
    assert incoming(None, w3c, now=NOW).trace_id == other
    # An invalid header is ignored, never refused.
    assert incoming("Root=nonsense", w3c, now=NOW).trace_id == other
    fresh = incoming("Root=nonsense", "00-nonsense", now=NOW)
    assert fresh.root.startswith(f"1-{int(NOW):08x}-")
    assert fresh.parent_id is None


def test_unprintable_extra_keys_are_dropped() -> None:
    context = from_xray(f"Root={ROOT};Note=caf\u00e9;Self=1-67891234-12456789abcdef012345678")
    assert context is not None
    assert context.extra == ";Self=1-67891234-12456789abcdef012345678"
