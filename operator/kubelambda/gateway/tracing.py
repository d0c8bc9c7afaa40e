"""Trace context at the gateway: an incoming W3C `traceparent` and/or AWS `X-Amzn-Trace-Id` read
(strictly; anything invalid starts a new trace, never a 400), and the headers sent on to the
runtime written. The sources call `incoming`; the invoker calls `TraceContext.headers`.
"""

from __future__ import annotations

import re
from typing import Final, NamedTuple

from kubelambda.gateway.ids import random_hex

__all__ = [
    "TRACEPARENT_HEADER",
    "XRAY_HEADER",
    "TraceContext",
    "from_traceparent",
    "from_xray",
    "incoming",
    "new_span_id",
    "new_trace",
]

XRAY_HEADER: Final = b"x-amzn-trace-id"
TRACEPARENT_HEADER: Final = b"traceparent"

# W3C Trace Context, level 1: version 00 is exactly these four fields (lower-case hex); other
# versions may append fields, which this gateway does not understand, so it starts a new trace.
_TRACEPARENT: Final = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_ROOT: Final = re.compile(r"1-([0-9a-f]{8})-([0-9a-f]{24})")
_PARENT: Final = re.compile(r"[0-9a-f]{16}")
_ZERO_TRACE: Final = "0" * 32
_ZERO_SPAN: Final = "0" * 16
# Keys the gateway writes itself; any other key of an X-Ray header (Lineage, Self, ...) is kept.
_OWN_KEYS: Final = frozenset({"root", "parent", "sampled"})
_SAMPLED: Final = {"1": True, "0": False, "?": None}
# The form AWS services send, read with one match; any other goes through the general parser.
_XRAY_USUAL: Final = re.compile(
    r"Root=1-([0-9a-f]{8})-([0-9a-f]{24});Parent=([0-9a-f]{16});Sampled=([01])"
)
# Makes a NamedTuple without its own __new__, a Python function: half the cost per record.
_make: Final = tuple.__new__
# The current second in hex, as a trace id starts with it: most traces start in the same one.
_SECOND: Final[dict[int, str]] = {}


def new_span_id() -> str:
    """A random, non-zero 16-hex span (X-Ray: segment) id."""
    while True:
        span = random_hex(16)
        if span != _ZERO_SPAN:
            return span


class TraceContext(NamedTuple):
    """Where an invocation sits in a trace.

    `trace_id` is 32 lower-case hex digits (the W3C form; the X-Ray root is the same digits as
    ``1-<8>-<24>``). `parent_id` is the caller's span id (16 hex), or None when the caller sent
    none. `sampled` is the caller's decision: None when it made none. `extra` holds the
    X-Ray header's other keys, as ``;Key=value`` text, passed on as they came. (A NamedTuple:
    one is made per request, and it is the cheapest immutable record to make.)
    """

    trace_id: str
    parent_id: str | None = None
    sampled: bool | None = None
    extra: str = ""

    @property
    def root(self) -> str:
        """The X-Ray form of the trace id: ``1-<epoch seconds, 8 hex>-<24 hex>``."""
        return f"1-{self.trace_id[:8]}-{self.trace_id[8:]}"

    def headers(
        self, *, span_id: str | None = None, sampled: bool | None = None
    ) -> tuple[tuple[bytes, bytes], tuple[bytes, bytes]]:
        """`X-Amzn-Trace-Id` and `traceparent` for the next hop, whose parent is `span_id` (the
        gateway's span when it records one). Without one, the caller's parent passes through,
        or a fresh id stands for the gateway's unrecorded hop when the caller sent none (a
        traceparent always names a parent). Unsampled unless someone decided otherwise."""
        xray, w3c = self._values(span_id, sampled)
        return (XRAY_HEADER, xray.encode("ascii")), (TRACEPARENT_HEADER, w3c.encode("ascii"))

    def lines(self, *, span_id: str | None = None, sampled: bool | None = None) -> bytes:
        """`headers` as header lines, each ending in CRLF (as upstream.py sends them)."""
        xray, w3c = self._values(span_id, sampled)
        return f"x-amzn-trace-id: {xray}\r\ntraceparent: {w3c}\r\n".encode("ascii")

    def _values(self, span_id: str | None, sampled: bool | None) -> tuple[str, str]:
        parent = span_id or self.parent_id or new_span_id()
        if sampled is None:
            sampled = bool(self.sampled)
        flag = "1" if sampled else "0"
        trace_id = self.trace_id  # `root` written out: this runs for every invocation
        xray = f"Root=1-{trace_id[:8]}-{trace_id[8:]};Parent={parent};Sampled={flag}{self.extra}"
        return xray, f"00-{trace_id}-{parent}-0{flag}"


def new_trace(now: float) -> TraceContext:
    """A new trace: its id starts with `now` (epoch seconds) in 8 hex digits, as X-Ray's roots
    do, then 24 random hex digits."""
    seconds = int(now) & 0xFFFFFFFF
    prefix = _SECOND.get(seconds)
    if prefix is None:  # a new second: formatted once (a format spec costs as much as the rest)
        _SECOND.clear()
        prefix = _SECOND[seconds] = seconds.to_bytes(4).hex()
    trace_id = prefix + random_hex(24)
    # _make: one is made per request.
    return _make(TraceContext, (trace_id, None, None, ""))


def from_traceparent(value: str) -> TraceContext | None:
    """The context a W3C `traceparent` header carries, or None when it is not valid version 00
    (all-zero ids are invalid)."""
    match = _TRACEPARENT.fullmatch(value.strip())
    if match is None:
        return None
    trace_id, parent_id, flags = match.groups()
    if trace_id == _ZERO_TRACE or parent_id == _ZERO_SPAN:
        return None
    return TraceContext(trace_id=trace_id, parent_id=parent_id, sampled=bool(int(flags, 16) & 1))


def from_xray(value: str) -> TraceContext | None:
    """The context an `X-Amzn-Trace-Id` header carries (``Root=1-<8>-<24>;Parent=<16>;
    Sampled=0|1|?``, keys in any order, other keys kept), or None when it has no valid Root
    or a key is malformed."""
    usual = _XRAY_USUAL.fullmatch(value)
    if usual is not None:
        root_time, root_rest, parent_id, flag = usual.groups()
        if parent_id != _ZERO_SPAN and (root_time != "00000000" or root_rest.strip("0")):
            return TraceContext(root_time + root_rest, parent_id, flag == "1")
    root: str | None = None
    parent: str | None = None
    sampled: bool | None = None
    extra: list[str] = []
    for part in value.split(";"):
        part = part.strip()
        if not part:
            continue
        key, equals, field = part.partition("=")
        if not equals:
            return None
        name = key.strip().lower()
        field = field.strip()
        if name == "root":
            match = _ROOT.fullmatch(field.lower())
            if match is None:
                return None
            root = match.group(1) + match.group(2)
        elif name == "parent":
            parent = field.lower()
            if not _PARENT.fullmatch(parent) or parent == _ZERO_SPAN:
                return None
        elif name == "sampled":
            if field not in _SAMPLED:
                return None
            sampled = _SAMPLED[field]
        elif name not in _OWN_KEYS and _printable(part):
            extra.append(f";{key.strip()}={field}")
    if root is None or root == _ZERO_TRACE:
        return None
    return TraceContext(trace_id=root, parent_id=parent, sampled=sampled, extra="".join(extra))


def _printable(text: str) -> bool:
    """Whether `text` may go into a header we send (visible ASCII and spaces only)."""
    return text.isascii() and text.isprintable()


def incoming(xray: str | None, traceparent: str | None, *, now: float) -> TraceContext:
    """The trace an invocation joins: the caller's `X-Amzn-Trace-Id` when valid (what Lambda
    itself reads), else its `traceparent`, else a new trace started at `now`."""
    if xray:
        context = from_xray(xray)
        if context is not None:
            return context
    if traceparent:
        context = from_traceparent(traceparent)
        if context is not None:
            return context
    return new_trace(now)
