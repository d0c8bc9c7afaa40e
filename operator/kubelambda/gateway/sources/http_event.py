"""API Gateway HTTP API payload 2.0, requests: an HTTP Trigger's request becomes a Lambda event.

The trigger handler (http.py) calls `build_event` for each request on an HTTP Trigger route; it
is pure and sits on the request hot path, so it avoids per-call allocation beyond the event
itself. The function's answers become responses in http_payload.py.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Mapping, Sequence
from typing import Any, Final
from urllib.parse import unquote_plus

__all__ = ["DEFAULT_ACCOUNT_ID", "build_event"]

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
