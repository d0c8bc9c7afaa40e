"""API Gateway HTTP API payload 2.0: requests become Lambda events, return values become responses.

The gateway calls `build_event` for each request on an HTTP Trigger route and `map_response`
on what the function returned; both are pure and sit on the request hot path, so they
avoid per-call allocation beyond the event itself.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any, Final
from urllib.parse import unquote_plus

import orjson

from kubelambda import jsonvalue
from kubelambda.gateway.http import Response

__all__ = [
    "DEFAULT_ACCOUNT_ID",
    "build_event",
    "function_error_response",
    "map_response",
]

DEFAULT_ACCOUNT_ID: Final = "000000000000"

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

# Media types whose bodies API Gateway passes as text. Form posts are deliberately absent:
# HTTP APIs hand `application/x-www-form-urlencoded` and `multipart/form-data` bodies to
# the function base64-encoded, and handlers written for AWS already decode them.
_TEXT_TYPES: Final = frozenset(
    {
        "application/json",
        "application/xml",
        "application/javascript",
        "application/ecmascript",
        "application/graphql",
        "application/yaml",
        "application/x-yaml",
        "application/x-ndjson",
    }
)

_ERROR_BODY: Final = b'{"message":"Internal Server Error"}'
_JSON: Final = b"application/json"
# What API Gateway answers with when a statusCode response names no content-type.
_DEFAULT_CONTENT_TYPE: Final = b"text/plain; charset=utf-8"
# Makes a NamedTuple without its own __new__, a Python function: half the cost per record.
_make: Final = tuple.__new__
_orjson_loads: Final = orjson.loads  # bound once: a module attribute is a lookup per call


# One-entry memo: at thousands of requests a second most share their second, and
# formatting the CLF timestamp is the costliest part of building an event.
_clf_cache: tuple[int, str] = (-1, "")


def _clf_time(seconds: int) -> str:
    global _clf_cache
    cached_second, cached_text = _clf_cache
    if cached_second == seconds:
        return cached_text
    t = time.gmtime(seconds)
    # Month names by hand: strftime("%b") follows the process locale, AWS does not.
    text = (
        f"{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year:04d}:"
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000"
    )
    _clf_cache = (seconds, text)
    return text


# Header names as the event has them (latin-1, lower-cased), by the bytes sent: most requests
# carry the same few, and decoding and lower-casing a name cost a third of taking a header into
# the event (issue 17). Bounded in entries and length; emptied when full. Names only: values
# (tokens, keys) are not kept beyond their request.
_NAMES: Final = 1024
_NAME_BYTES: Final = 128
_names: Final[dict[bytes, str]] = {}
# One-entry memo of the domain's first label (`apiId`): nearly every request names the same.
_prefix_cache: tuple[str, str] = ("", "")


def _header_name(raw_name: bytes) -> str:
    name = raw_name.decode("latin-1").lower()
    if len(raw_name) <= _NAME_BYTES:
        if len(_names) >= _NAMES:
            _names.clear()
        _names[raw_name] = name
    return name


def _is_textual(content_type: str | None) -> bool:
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return (
        media.startswith("text/")
        or media in _TEXT_TYPES
        or media.endswith("+json")
        or media.endswith("+xml")
    )


def _query_parameters(raw_query: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for part in raw_query.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        # Decoding is rare in practice; skip it when there is nothing to decode.
        if "%" in name or "+" in name:
            name = unquote_plus(name)
        if "%" in value or "+" in value:
            value = unquote_plus(value)
        previous = params.get(name)
        params[name] = value if previous is None else f"{previous},{value}"
    return params


def build_event(
    *,
    method: str,
    raw_path: str,
    raw_query: bytes,
    headers: Sequence[tuple[bytes, bytes]],
    body: bytes,
    source_ip: str,
    route_key: str,
    request_id: str,
    domain_name: str,
    path_parameters: Mapping[str, str] | None,
    now: float,
    account_id: str = DEFAULT_ACCOUNT_ID,
    protocol: str = "HTTP/1.1",
    authorizer: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Build the payload 2.0 event for one request, as an HTTP API would send it.

    `headers` are ASGI raw pairs, decoded as latin-1 like every ASGI framework does.
    Cookie headers go to `cookies` only (split on ';'), never to `headers`; other repeated
    headers and query parameters are joined with ','. Query names and values are
    form-decoded ('+' is a space). `apiId` and `domainPrefix` are the first label of
    `domain_name`, as for a function URL.

    The body is text when the content-type is text/*, JSON, XML (including +json/+xml
    suffixes), JavaScript, GraphQL, YAML or NDJSON *and* the bytes are valid UTF-8;
    otherwise (binary types, form posts, no content-type) it is base64 with
    `isBase64Encoded` true. An empty body leaves `body` out, as AWS does; so are
    `cookies`, `queryStringParameters` and `pathParameters` when empty.

    `authorizer` is what the route's authorizer learnt (`{"jwt": {"claims", "scopes"}}`),
    put in `requestContext.authorizer`; a route without one has no such key, as on AWS.
    """
    global _prefix_cache
    header_map: dict[str, str] = {}
    cookies: list[str] = []
    names = _names
    for raw_name, raw_value in headers:
        name = names.get(raw_name) or _header_name(raw_name)
        value = raw_value.decode("latin-1")
        if name == "cookie":
            cookies.extend(c for c in (p.strip() for p in value.split(";")) if c)
        elif name in header_map:  # `in`, not get(): no call for the usual, unrepeated header
            header_map[name] = f"{header_map[name]},{value}"
        else:
            header_map[name] = value

    query = raw_query.decode("latin-1")
    cached_domain, domain_prefix = _prefix_cache
    if cached_domain != domain_name:
        domain_prefix = domain_name.split(".", 1)[0]
        _prefix_cache = (domain_name, domain_prefix)
    seconds = int(now)

    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": raw_path,
        "rawQueryString": query,
    }
    if cookies:
        event["cookies"] = cookies
    event["headers"] = header_map
    if query:
        params = _query_parameters(query)
        if params:
            event["queryStringParameters"] = params
    event["requestContext"] = {
        "accountId": account_id,
        "apiId": domain_prefix,
        "domainName": domain_name,
        "domainPrefix": domain_prefix,
        "http": {
            "method": method,
            "path": raw_path,
            "protocol": protocol,
            "sourceIp": source_ip,
            "userAgent": header_map.get("user-agent", ""),
        },
        "requestId": request_id,
        "routeKey": route_key,
        "stage": "$default",
        # The memo asked here first: a call fewer for most requests.
        "time": _clf_cache[1] if _clf_cache[0] == seconds else _clf_time(seconds),
        "timeEpoch": int(now * 1000),
    }
    if authorizer is not None:
        event["requestContext"]["authorizer"] = authorizer
    encoded = False
    if body:
        text: str | None = None
        if _is_textual(header_map.get("content-type")):
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                text = None
        if text is None:
            text = base64.b64encode(body).decode("ascii")
            encoded = True
        event["body"] = text
    if path_parameters:
        event["pathParameters"] = dict(path_parameters)
    event["isBase64Encoded"] = encoded
    return event


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
