"""API Gateway HTTP API payload 2.0, answers: a function's return value becomes the response.

The gateway calls `map_response` on what the function returned for a request on an HTTP
Trigger route (the request became its event in http_event.py); it is pure and sits on the
request hot path, so it avoids per-call allocation beyond the response itself.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any, Final

import orjson

from kubelambda import jsonvalue
from kubelambda.gateway.http import Response

__all__ = ["function_error_response", "map_response"]

_ERROR_BODY: Final = b'{"message":"Internal Server Error"}'
_JSON: Final = b"application/json"
# What API Gateway answers with when a statusCode response names no content-type.
_DEFAULT_CONTENT_TYPE: Final = b"text/plain; charset=utf-8"
# Makes a NamedTuple without its own __new__, a Python function: half the cost per record.
_make: Final = tuple.__new__
_orjson_loads: Final = orjson.loads  # bound once: a module attribute is a lookup per call


# Header pairs functions answered with, as checked and encoded: most answers carry the same
# few, and checking and encoding each cost a tenth of mapping an answer (issue 17). Bounded in
# entries and in the length of each; emptied when full. Only pairs that passed are kept.
_ENCODED_PAIRS: Final = 1024
_ENCODED_CHARS: Final = 512
_encoded: Final[dict[tuple[str, str], tuple[bytes, bytes]]] = {}


class _Malformed(Exception):
    """A statusCode response API Gateway would refuse; becomes a 502."""


class _Inexact(Exception):
    """A float orjson read may be an integer beyond 64 bits: read the answer as json would."""


def _header_value(value: object) -> str | None:
    # API Gateway stringifies scalars the way JSON writes them; null drops the header.
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    raise _Malformed("header value is not a scalar")


def _encode_header(text: str) -> bytes:
    if "\r" in text or "\n" in text:
        # A line break would let the function inject headers or split the response.
        raise _Malformed("line break in a header")
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8")


def _status(value: object) -> int:
    if isinstance(value, bool):
        raise _Malformed("statusCode is a boolean")
    if isinstance(value, int):
        status = value
    elif isinstance(value, str) and value.isdigit():
        status = int(value)
    else:
        raise _Malformed("statusCode is not an integer")
    if not 100 <= status <= 599:
        raise _Malformed("statusCode out of range")
    return status


def _flag(value: object) -> bool:
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise _Malformed("isBase64Encoded is not a boolean")


def _structured(result: dict[str, Any], *, exact: bool) -> Response:
    # `exact`: numbers read as the json module reads them. If not, one can differ only where it
    # is written back out (a header value, a non-string body): _Inexact there. Elsewhere a
    # float for a long integer is refused all the same (statusCode, isBase64Encoded, cookies).
    status = result["statusCode"]
    if type(status) is not int or not 100 <= status <= 599:  # the usual one, without a call
        status = _status(status)
    out: list[tuple[bytes, bytes]] = []
    content_type_named = False

    headers = result.get("headers")
    if headers is not None:
        # A dict, not any Mapping: the result is parsed JSON, and the ABC's check cost more
        # than the rest of a header's mapping.
        if not isinstance(headers, dict):
            raise _Malformed("headers is not an object")
        for name, value in headers.items():
            if type(value) is str:
                known = _encoded.get((name, value))
                if known is not None:
                    out.append(known)
                    content_type_named = content_type_named or known[0] == b"content-type"
                    continue
            lowered = name.lower()
            if not lowered or ":" in lowered:
                raise _Malformed("bad header name")
            if lowered == "content-type":
                # An explicit null still counts: it asks for no content-type at all.
                content_type_named = True
            if type(value) is float and not exact:
                raise _Inexact
            text = value if type(value) is str else _header_value(value)
            if text is not None:
                pair = (_encode_header(lowered), _encode_header(text))
                out.append(pair)
                if text is value and len(name) + len(text) <= _ENCODED_CHARS:
                    if len(_encoded) >= _ENCODED_PAIRS:
                        _encoded.clear()
                    _encoded[name, text] = pair

    cookies = result.get("cookies")
    if cookies is not None:
        if not isinstance(cookies, list) or not all(isinstance(c, str) for c in cookies):
            raise _Malformed("cookies is not a list of strings")
        out.extend((b"set-cookie", _encode_header(c)) for c in cookies)

    if not content_type_named:
        out.append((b"content-type", _DEFAULT_CONTENT_TYPE))

    body = result.get("body")
    encoded = result.get("isBase64Encoded")
    if body is None:
        payload = b""
    elif encoded is not None and _flag(encoded):  # most answers name no flag: no call
        if not isinstance(body, str):
            raise _Malformed("base64 body is not a string")
        try:
            payload = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise _Malformed("body is not base64") from exc
    elif isinstance(body, str):
        payload = body.encode("utf-8")
    elif not exact:
        raise _Inexact
    else:
        payload = json.dumps(body, separators=(",", ":")).encode("utf-8")
    # _make: one is made per request.
    return _make(Response, (status, out, payload))


def _loads(payload: bytes) -> Any:
    """The answer as the json module reads it; unreadable is malformed."""
    try:
        return jsonvalue.loads(payload)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # nested too deep
        raise _Malformed("not JSON") from exc


def map_response(payload: bytes) -> Response:
    """Turn a function's JSON return value into the client's response, by payload 2.0 rules.

    A JSON object with `statusCode` is a response description: `headers` (names
    lower-cased, scalar values stringified, null drops the header), each `cookies` entry
    as its own set-cookie, `body` (base64-decoded when `isBase64Encoded`, JSON-encoded
    when not a string). Without a content-type header the answer carries
    `text/plain; charset=utf-8`, as API Gateway does; `multiValueHeaders` is ignored,
    as API Gateway ignores it for payload 2.0. Any other JSON value is sent as it was
    returned: 200, application/json. Invalid JSON or a malformed description is a 502.
    """
    # orjson alone first: jsonvalue.loads's search for integers beyond 64 bits (in a copy) cost
    # a fifth of mapping an answer (issue 17); _structured asks for it only where it matters.
    try:
        try:
            result, exact = _orjson_loads(payload), False
        except orjson.JSONDecodeError:  # or NaN, UTF-16: what the json module reads
            result, exact = _loads(payload), True
        if isinstance(result, dict) and "statusCode" in result:
            try:
                return _structured(result, exact=exact)
            except _Inexact:
                return _structured(_loads(payload), exact=True)
    except _Malformed:
        return function_error_response()
    return _make(Response, (200, [(b"content-type", _JSON)], payload))  # as _structured's


def function_error_response() -> Response:
    """The 502 API Gateway answers when the function failed or returned something unusable."""
    return Response(status=502, headers=[(b"content-type", _JSON)], body=_ERROR_BODY)
