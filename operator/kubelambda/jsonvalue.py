"""JSON read and written with orjson, several times faster than the json module, with the same
outcome: what orjson would read differently or refuses (an integer beyond 64 bits, which it
reads as a float; NaN; UTF-16; a key that is not a string) goes to the json module.

The gateway parses answer bodies with ``loads`` and checks Invoke payloads with ``check``; the
Kubernetes client encodes its requests' bodies and decodes the answers and watch events with
``dumps`` and ``loads``, the controller's store its cached copies, and the controller's drift
check its fingerprints with ``canonical`` (the json module was about an eighth of the operator's
CPU per Function: benchmarks/reconcile_throughput.py ``--profile``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

import orjson

__all__ = ["canonical", "check", "dumps", "loads"]


def loads(data: bytes) -> Any:
    """``data`` parsed as the json module parses it, raising what it raises (a ValueError)."""
    if not _has_long_number(data):
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    return json.loads(data)


def check(data: bytes) -> None:
    """Raise what ``loads(data)`` raises, without its value: a number orjson reads as a float
    is valid JSON all the same, so the document is not searched for long ones (a copy of it)."""
    try:
        orjson.loads(data)
    except orjson.JSONDecodeError:
        json.loads(data)


def dumps(obj: Mapping[str, Any]) -> bytes:
    """Compact JSON of ``obj``: UTF-8, no spaces."""
    try:
        return orjson.dumps(obj)
    except TypeError:  # a key that is not a string, an integer beyond 64 bits
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def canonical(obj: Mapping[str, Any]) -> bytes:
    """Sorted keys, compact: ``json.dumps(obj, sort_keys=True, separators=(",", ":"))`` byte for
    byte for what the controller builds, for hashes that must not change between versions
    (drift.py's fingerprints). orjson writes the same for ASCII documents; one with other
    characters (which the json module escapes) is written by the json module. Floats in
    exponent form would differ (1e16, not 1e+16): no Kubernetes object carries one, and a
    fingerprint that differs costs one apply, nothing else."""
    try:
        data = orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # a key that is not a string, an integer beyond 64 bits
        data = b""
    if data and data.isascii():
        return data
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


# 19 digits in a row: maybe an integer beyond 64 bits, which orjson reads as a float (the json
# module as an int); the json module reads those documents.
_LONG_RUN: Final = b"0" * 19
# Every ASCII digit as "0", every other byte as itself: a run of 19 digits becomes _LONG_RUN.
_DIGITS_AS_ZERO: Final = bytes.maketrans(b"0123456789", b"0" * 10)


def _has_long_number(data: bytes) -> bool:
    """Whether ``data`` holds 19 ASCII digits in a row. A translated copy searched for a run of
    zeros: a regular expression (``\\d{19}``) tries a match at every digit, which cost more than
    orjson's whole parse of an event (issue 17). ``find``, not ``in``: bytes' ``in`` first tries
    its operand as an integer, and builds and drops a TypeError's message every time."""
    return len(data) >= 19 and data.translate(_DIGITS_AS_ZERO).find(_LONG_RUN) >= 0
