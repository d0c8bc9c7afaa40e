"""A handler's return value as the invoke answer's body, encoded as AWS's Python runtime client
encodes it (awslambdaric/lambda_runtime_marshaller.py: simplejson, with its ``Encoder``).

The worker calls ``marshal`` on every result (environment.py). Results made only of dicts
with string keys, lists, tuples, strings, numbers, booleans and None come out the same from
the standard library's C encoder, which is used for them; anything else goes through a
port of simplejson's rules here, so the runtime needs no simplejson.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from json.encoder import encode_basestring, encode_basestring_ascii
from typing import Any

# awslambdaric's Encoder keeps non-ASCII characters as they are on these runtimes only, and
# escapes them (\\u00e9) on the older ones; it tells them apart by AWS_EXECUTION_ENV.
_UNESCAPED_ON = {
    "AWS_Lambda_python3.12",
    "AWS_Lambda_python3.13",
    "AWS_Lambda_python3.14",
    "AWS_Lambda_python3.15",
}
_PLAIN_SCALARS = frozenset({str, int, float, bool, type(None)})


def marshal(result: object) -> bytes:
    """The body for ``result``. ``bytes`` are the body as they are (awslambdaric posts them
    unencoded); TypeError, ValueError or RecursionError when the result cannot be encoded."""
    if isinstance(result, bytes):
        return result
    ensure_ascii = os.environ.get("AWS_EXECUTION_ENV") not in _UNESCAPED_ON
    if _plain(result):
        return json.dumps(result, ensure_ascii=ensure_ascii).encode()
    chunks: list[str] = []
    _encode(result, chunks, set(), encode_basestring_ascii if ensure_ascii else encode_basestring)
    return "".join(chunks).encode()


def _plain(value: object) -> bool:
    """Whether ``value`` holds nothing the standard library encodes differently from
    simplejson: exact types only, since a subclass may carry ``_asdict`` or its own repr."""
    kind = type(value)
    if kind in _PLAIN_SCALARS:
        return True
    if kind is list or kind is tuple:
        return all(_plain(item) for item in value)  # type: ignore[attr-defined]
    if kind is dict:
        return all(
            type(key) is str and _plain(item)
            for key, item in value.items()  # type: ignore[attr-defined]
        )
    return False


def _encode(value: object, chunks: list[str], seen: set[int], string: Callable[[str], str]) -> None:
    """simplejson's ``_iterencode`` with awslambdaric's settings: namedtuple_as_object and
    tuple_as_array on, use_decimal off (the Encoder's ``default`` writes a Decimal's own
    digits as raw JSON and NaN for a NaN), allow_nan on, bytes decoded as UTF-8."""
    if isinstance(value, str):
        chunks.append(string(str.__str__(value)))
    elif isinstance(value, bytes):
        chunks.append(string(value.decode("utf-8")))
    elif value is None:
        chunks.append("null")
    elif value is True:
        chunks.append("true")
    elif value is False:
        chunks.append("false")
    elif isinstance(value, int):
        chunks.append(int.__repr__(int(value)))  # a subclass's own repr is not trusted
    elif isinstance(value, float):
        chunks.append(_float(float(value)))
    else:
        as_dict = _call(value, "_asdict")
        if as_dict is not None:
            if not isinstance(as_dict[0], dict):
                raise TypeError(f"_asdict() must return a dict, not {type(as_dict[0]).__name__}")
            _encode_dict(as_dict[0], chunks, seen, string)
        elif isinstance(value, (list, tuple)):
            _encode_list(value, chunks, seen, string)
        elif isinstance(value, dict):
            _encode_dict(value, chunks, seen, string)
        else:
            text = _decimal_text(value)
            if text is None:
                raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")
            chunks.append(text)


def _decimal_text(value: object) -> str | None:
    """A Decimal's JSON text (its own digits, NaN for a NaN); None for anything else. Looked up
    in sys.modules, not imported: a Decimal exists only once ``decimal`` is imported, and a
    worker whose handler never makes one need not load the module before its init."""
    decimal = sys.modules.get("decimal")
    if decimal is None or not isinstance(value, decimal.Decimal):
        return None
    return "NaN" if value.is_nan() else str(value)


def _call(value: object, name: str) -> tuple[Any] | None:
    """simplejson's ``call_method``: the method's result, or None when there is no such
    method or calling it without arguments raises TypeError."""
    method = getattr(value, name, None)
    if not callable(method):
        return None
    try:
        return (method(),)
    except TypeError:
        return None


def _float(value: float) -> str:
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "Infinity" if value > 0 else "-Infinity"
    return float.__repr__(value)


def _enter(container: object, seen: set[int]) -> None:
    if id(container) in seen:
        raise ValueError("Circular reference detected")
    seen.add(id(container))


def _encode_list(
    items: list[Any] | tuple[Any, ...],
    chunks: list[str],
    seen: set[int],
    string: Callable[[str], str],
) -> None:
    if not items:
        chunks.append("[]")
        return
    _enter(items, seen)
    chunks.append("[")
    for index, item in enumerate(items):
        if index:
            chunks.append(", ")
        _encode(item, chunks, seen, string)
    chunks.append("]")
    seen.discard(id(items))


def _encode_dict(
    fields: dict[Any, Any], chunks: list[str], seen: set[int], string: Callable[[str], str]
) -> None:
    if not fields:
        chunks.append("{}")
        return
    _enter(fields, seen)
    chunks.append("{")
    for index, (key, item) in enumerate(fields.items()):
        if index:
            chunks.append(", ")
        chunks.append(string(_key(key)))
        chunks.append(": ")
        _encode(item, chunks, seen, string)
    chunks.append("}")
    seen.discard(id(fields))


def _key(key: object) -> str:
    """simplejson's ``_stringify_key`` (skipkeys off, use_decimal off)."""
    if isinstance(key, str):
        return str.__str__(key)
    if isinstance(key, bytes):
        return key.decode("utf-8")
    if isinstance(key, float):
        return _float(float(key))
    if key is True:
        return "true"
    if key is False:
        return "false"
    if key is None:
        return "null"
    if isinstance(key, int):
        return int.__repr__(int(key))
    raise TypeError(f"keys must be str, int, float, bool or None, not {type(key).__name__}")
