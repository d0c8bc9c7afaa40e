"""API Gateway HTTP API payload 2.0: request events and response mapping, as data."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from kubelambda.gateway.http import Response
from kubelambda.gateway.sources.http_payload import (
    _ENCODED_CHARS,
    _ENCODED_PAIRS,
    _NAME_BYTES,
    _NAMES,
    _encoded,
    _names,
    build_event,
    function_error_response,
    map_response,
)

# 2020-03-12T19:03:58.123Z, the instant of AWS's own sample event.
NOW = 1584039838.123


def event(**overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "method": "GET",
        "raw_path": "/my/path",
        "raw_query": b"",
        "headers": [],
        "body": b"",
        "source_ip": "203.0.113.7",
        "route_key": "$default",
        "request_id": "req-1",
        "domain_name": "fn.example.com",
        "path_parameters": None,
        "now": NOW,
    }
    args.update(overrides)
    return build_event(**args)


def test_full_event_matches_aws_shape() -> None:
    got = event(
        method="POST",
        raw_query=b"parameter1=value1&parameter1=value2&parameter2=value",
        headers=[
            (b"host", b"fn.example.com"),
            (b"user-agent", b"agent"),
            (b"cookie", b"cookie1=a; cookie2=b"),
            (b"content-type", b"application/json"),
            (b"x-multi", b"value1"),
            (b"x-multi", b"value2"),
        ],
        body=b'{"hello": "lambda"}',
        route_key="POST /my/{id}",
        path_parameters={"id": "42"},
    )
    assert got == {
        "version": "2.0",
        "routeKey": "POST /my/{id}",
        "rawPath": "/my/path",
        "rawQueryString": "parameter1=value1&parameter1=value2&parameter2=value",
        "cookies": ["cookie1=a", "cookie2=b"],
        "headers": {
            "host": "fn.example.com",
            "user-agent": "agent",
            "content-type": "application/json",
            "x-multi": "value1,value2",
        },
        "queryStringParameters": {"parameter1": "value1,value2", "parameter2": "value"},
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "fn",
            "domainName": "fn.example.com",
            "domainPrefix": "fn",
            "http": {
                "method": "POST",
                "path": "/my/path",
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.7",
                "userAgent": "agent",
            },
            "requestId": "req-1",
            "routeKey": "POST /my/{id}",
            "stage": "$default",
            "time": "12/Mar/2020:19:03:58 +0000",
            "timeEpoch": 1584039838123,
        },
        "body": '{"hello": "lambda"}',
        "pathParameters": {"id": "42"},
        "isBase64Encoded": False,
    }
    # The event crosses a process boundary as JSON.
    assert json.loads(json.dumps(got)) == got


def test_minimal_event_omits_empty_optional_parts() -> None:
    got = event()
    for absent in ("cookies", "queryStringParameters", "body", "pathParameters", "stageVariables"):
        assert absent not in got
    assert got["headers"] == {}
    assert got["rawQueryString"] == ""
    assert got["isBase64Encoded"] is False
    assert got["requestContext"]["http"]["userAgent"] == ""


def test_account_and_protocol_can_be_given() -> None:
    got = event(account_id="123456789012", protocol="HTTP/2.0")
    assert got["requestContext"]["accountId"] == "123456789012"
    assert got["requestContext"]["http"]["protocol"] == "HTTP/2.0"


@pytest.mark.parametrize(
    ("headers", "cookies", "header_map"),
    [
        ([(b"cookie", b"a=1")], ["a=1"], {}),
        ([(b"cookie", b"a=1; b=2"), (b"cookie", b"c=3")], ["a=1", "b=2", "c=3"], {}),
        ([(b"cookie", b"a=1;b=2; ")], ["a=1", "b=2"], {}),
        ([(b"Cookie", b"a=1"), (b"X-Up", b"V")], ["a=1"], {"x-up": "V"}),
        ([(b"accept", b"a"), (b"accept", b"b"), (b"accept", b"c")], None, {"accept": "a,b,c"}),
        ([(b"x-latin", "caf\u00e9".encode("latin-1"))], None, {"x-latin": "caf\u00e9"}),
    ],
    ids=["one", "several-headers", "no-space-and-trailing", "mixed-case", "dup", "latin1"],
)
def test_headers_and_cookies(
    headers: list[tuple[bytes, bytes]], cookies: list[str] | None, header_map: dict[str, str]
) -> None:
    got = event(headers=headers)
    assert got.get("cookies") == cookies
    assert got["headers"] == header_map


@pytest.mark.parametrize(
    ("raw_query", "params"),
    [
        (b"a=1", {"a": "1"}),
        (b"a=1&a=2&b=", {"a": "1,2", "b": ""}),
        (b"flag&x=y", {"flag": "", "x": "y"}),
        (b"q=a%20b+c%2Bd", {"q": "a b c+d"}),
        (b"q+x=a+b", {"q x": "a b"}),
        (b"na%6De=%E2%82%AC", {"name": "\u20ac"}),
        (b"&&a=1&", {"a": "1"}),
        (b"a=x=y", {"a": "x=y"}),
    ],
    ids=[
        "single",
        "duplicates-joined",
        "no-value",
        "decoded",
        "plus-is-space",
        "utf8-name",
        "empty-parts",
        "eq",
    ],
)
def test_query_string_parameters(raw_query: bytes, params: dict[str, str]) -> None:
    got = event(raw_query=raw_query)
    assert got["rawQueryString"] == raw_query.decode()
    assert got["queryStringParameters"] == params


def test_query_of_only_separators_has_no_parameters() -> None:
    got = event(raw_query=b"&&")
    assert got["rawQueryString"] == "&&"
    assert "queryStringParameters" not in got


BINARY = bytes(range(256))


@pytest.mark.parametrize(
    ("content_type", "body", "text"),
    [
        ("text/plain", b"hi", True),
        ("text/html; charset=utf-8", "h\u00e9".encode(), True),
        ("Application/JSON", b"{}", True),
        ("application/vnd.api+json", b"{}", True),
        ("application/atom+xml", b"<a/>", True),
        ("application/xml", b"<a/>", True),
        ("application/javascript", b"x()", True),
        ("application/graphql", b"{ a }", True),
        ("application/yaml", b"a: 1", True),
        ("application/octet-stream", b"hi", False),
        ("image/png", BINARY, False),
        ("application/x-www-form-urlencoded", b"a=1", False),
        ("multipart/form-data; boundary=x", b"--x--", False),
        (None, b"hi", False),
        ("text/plain", b"\xff\xfe", False),
        ("application/json", b'{"a": "\xe9"}', False),
    ],
)
def test_body_encoding_rule(content_type: str | None, body: bytes, text: bool) -> None:
    headers = [] if content_type is None else [(b"content-type", content_type.encode())]
    got = event(method="POST", headers=headers, body=body)
    assert got["isBase64Encoded"] is not text
    if text:
        assert got["body"] == body.decode("utf-8")
    else:
        assert base64.b64decode(got["body"]) == body


def test_empty_path_parameters_are_omitted() -> None:
    assert "pathParameters" not in event(path_parameters={})


@pytest.mark.parametrize(
    ("now", "clf", "epoch_ms"),
    [
        (0.0, "01/Jan/1970:00:00:00 +0000", 0),
        (1584039838.999, "12/Mar/2020:19:03:58 +0000", 1584039838999),
        (1584039839.0, "12/Mar/2020:19:03:59 +0000", 1584039839000),
        (1735689599.5, "31/Dec/2024:23:59:59 +0000", 1735689599500),
        (1709164800.0, "29/Feb/2024:00:00:00 +0000", 1709164800000),
    ],
)
def test_request_time(now: float, clf: str, epoch_ms: int) -> None:
    context = event(now=now)["requestContext"]
    assert context["time"] == clf
    assert context["timeEpoch"] == epoch_ms


def test_events_do_not_share_mutable_parts() -> None:
    params = {"id": "1"}
    first = event(path_parameters=params)
    second = event(path_parameters=params)
    first["pathParameters"]["id"] = "changed"
    first["headers"]["x"] = "y"
    assert params == {"id": "1"}
    assert second["pathParameters"] == {"id": "1"}
    assert second["headers"] == {}


# --- responses -------------------------------------------------------------------------

ERROR = Response(
    status=502,
    headers=[(b"content-type", b"application/json")],
    body=b'{"message":"Internal Server Error"}',
)
TEXT_PLAIN = (b"content-type", b"text/plain; charset=utf-8")


def mapped(result: object) -> Response:
    return map_response(json.dumps(result).encode())


@pytest.mark.parametrize(
    "payload",
    [b'"Hello, world!"', b'{"message": "hi"}', b"[1, 2]", b"42", b"3.5", b"true", b"null"],
)
def test_value_without_status_code_is_json_200(payload: bytes) -> None:
    assert map_response(payload) == Response(
        status=200, headers=[(b"content-type", b"application/json")], body=payload
    )


def test_object_with_body_but_no_status_code_is_sent_whole() -> None:
    payload = b'{"body": "x", "headers": {"a": "b"}}'
    got = map_response(payload)
    assert (got.status, got.body) == (200, payload)


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        (
            {"statusCode": 201, "headers": {"Content-Type": "text/html"}, "body": "<p>hi</p>"},
            Response(201, [(b"content-type", b"text/html")], b"<p>hi</p>"),
        ),
        (
            {"statusCode": 204},
            Response(204, [TEXT_PLAIN], b""),
        ),
        (
            {"statusCode": "404", "body": "nope"},
            Response(404, [TEXT_PLAIN], b"nope"),
        ),
        (
            {"statusCode": 200, "body": "caf\u00e9"},
            Response(200, [TEXT_PLAIN], "caf\u00e9".encode()),
        ),
        (
            {
                "statusCode": 200,
                "headers": {"X-Int": 5, "X-Float": 1.5, "X-Bool": True, "X-Gone": None},
                "body": "",
            },
            Response(
                200,
                [(b"x-int", b"5"), (b"x-float", b"1.5"), (b"x-bool", b"true"), TEXT_PLAIN],
                b"",
            ),
        ),
        (
            {"statusCode": 200, "headers": {"Content-Type": None}, "body": "raw"},
            Response(200, [], b"raw"),
        ),
        (
            {
                "statusCode": 302,
                "headers": {"location": "/next", "content-type": "text/plain"},
                "cookies": ["a=1; Path=/", "b=2; Max-Age=60"],
            },
            Response(
                302,
                [
                    (b"location", b"/next"),
                    (b"content-type", b"text/plain"),
                    (b"set-cookie", b"a=1; Path=/"),
                    (b"set-cookie", b"b=2; Max-Age=60"),
                ],
                b"",
            ),
        ),
        (
            {"statusCode": 200, "body": {"a": [1, 2]}, "headers": {"content-type": "x/y"}},
            Response(200, [(b"content-type", b"x/y")], b'{"a":[1,2]}'),
        ),
        (
            {"statusCode": 200, "body": None},
            Response(200, [TEXT_PLAIN], b""),
        ),
        (
            {
                "statusCode": 200,
                "isBase64Encoded": True,
                "headers": {"content-type": "image/png"},
                "body": base64.b64encode(BINARY).decode(),
            },
            Response(200, [(b"content-type", b"image/png")], BINARY),
        ),
        (
            {"statusCode": 200, "isBase64Encoded": "true", "body": "aGk="},
            Response(200, [TEXT_PLAIN], b"hi"),
        ),
        (
            {"statusCode": 200, "isBase64Encoded": False, "body": "aGk="},
            Response(200, [TEXT_PLAIN], b"aGk="),
        ),
        (
            {"statusCode": 200, "isBase64Encoded": "False", "body": "aGk="},
            Response(200, [TEXT_PLAIN], b"aGk="),
        ),
        (
            # Payload 2.0 reads no multiValueHeaders: API Gateway drops them.
            {"statusCode": 200, "multiValueHeaders": {"x-a": ["1", "2"]}, "body": "x"},
            Response(200, [TEXT_PLAIN], b"x"),
        ),
        (
            {"statusCode": 200, "headers": {"x-name": "\u20ac"}, "body": ""},
            Response(200, [(b"x-name", "\u20ac".encode()), TEXT_PLAIN], b""),
        ),
    ],
    ids=[
        "custom",
        "status-only",
        "status-as-string",
        "utf8-body",
        "header-values-stringified",
        "explicit-null-content-type",
        "cookies-each-a-set-cookie",
        "non-string-body-json",
        "null-body",
        "base64-body",
        "base64-flag-as-string",
        "base64-flag-false",
        "base64-flag-false-as-string",
        "multi-value-headers-ignored",
        "non-latin1-header-utf8",
    ],
)
def test_status_code_response(result: dict[str, Any], expected: Response) -> None:
    assert mapped(result) == expected
    assert mapped(result) == expected  # again, its header pairs now remembered


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (
            b'{"statusCode": 200, "headers": {"x-n": 18446744073709551616, "x-f": 1.5}}',
            [(b"x-n", b"18446744073709551616"), (b"x-f", b"1.5")],
        ),
        (b'{"statusCode": 200, "headers": {"x-n": NaN}}', [(b"x-n", b"NaN")]),
        (b'{"statusCode": 200, "body": {"n": 123456789012345678901234567890}}', None),
        (b'{"statusCode": 200, "body": [NaN, 18446744073709551615]}', None),
    ],
    ids=["long-and-float-header", "nan-header", "long-in-body", "nan-and-u64-in-body"],
)
def test_numbers_are_written_back_as_the_json_module_reads_them(
    payload: bytes, expected: list[tuple[bytes, bytes]] | None
) -> None:
    # orjson reads an integer beyond 64 bits as a float and refuses NaN; the answer must not
    # show it. A body that is not a string is JSON as the json module writes it.
    result = json.loads(payload)
    answer = map_response(payload)
    assert answer.status == 200
    if expected is not None:
        assert answer.headers[: len(expected)] == expected
    else:
        assert answer.body == json.dumps(result["body"], separators=(",", ":")).encode()


@pytest.mark.parametrize(
    "payload",
    [b"18446744073709551616", b'{"n": 18446744073709551616, "statusCod": 1}', b"[NaN]"],
)
def test_other_values_with_such_numbers_pass_as_returned(payload: bytes) -> None:
    assert map_response(payload) == Response(200, [(b"content-type", b"application/json")], payload)


def test_a_long_integer_status_code_is_502() -> None:
    assert map_response(b'{"statusCode": 18446744073709551816}') == ERROR


def test_remembered_header_names_are_bounded_in_number_and_length() -> None:
    for n in range(_NAMES + 10):
        assert event(headers=[(f"X-N{n}".encode(), b"v")])["headers"] == {f"x-n{n}": "v"}
        assert len(_names) <= _NAMES
    long = b"X-" + b"L" * _NAME_BYTES
    assert event(headers=[(long, b"v")])["headers"] == {long.decode().lower(): "v"}
    assert long not in _names


def test_domain_prefix_follows_each_requests_domain() -> None:
    # The prefix is remembered for the last domain: a request for another gets its own.
    for domain in ("a.example.com", "b.example.com", "a.example.com", "localhost", ""):
        context = event(domain_name=domain)["requestContext"]
        prefix = domain.split(".", 1)[0]
        assert (context["domainName"], context["apiId"], context["domainPrefix"]) == (
            domain,
            prefix,
            prefix,
        )


def test_remembered_header_pairs_are_bounded_in_number_and_length() -> None:
    for n in range(_ENCODED_PAIRS + 10):
        assert mapped({"statusCode": 200, "headers": {"x-n": str(n)}}).headers[0] == (
            b"x-n",
            str(n).encode(),
        )
        assert len(_encoded) <= _ENCODED_PAIRS
    long = "v" * _ENCODED_CHARS
    assert mapped({"statusCode": 200, "headers": {"x-long": long}}).headers[0][1] == long.encode()
    assert ("x-long", long) not in _encoded


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"not json",
        b"[" * 200_000 + b"]" * 200_000,
        b'{"statusCode": 200',
        b"\xff\xfe\x00",
        json.dumps({"statusCode": "abc"}).encode(),
        json.dumps({"statusCode": None}).encode(),
        json.dumps({"statusCode": True}).encode(),
        json.dumps({"statusCode": 200.5}).encode(),
        json.dumps({"statusCode": 99}).encode(),
        json.dumps({"statusCode": 600}).encode(),
        json.dumps({"statusCode": 200, "headers": ["a"]}).encode(),
        json.dumps({"statusCode": 200, "headers": {"a": ["1"]}}).encode(),
        json.dumps({"statusCode": 200, "headers": {"a": {"b": 1}}}).encode(),
        json.dumps({"statusCode": 200, "headers": {"": "x"}}).encode(),
        json.dumps({"statusCode": 200, "headers": {"a:b": "x"}}).encode(),
        json.dumps({"statusCode": 200, "headers": {"x": "a\r\nset-cookie: evil"}}).encode(),
        json.dumps({"statusCode": 200, "cookies": "a=1"}).encode(),
        json.dumps({"statusCode": 200, "cookies": [1]}).encode(),
        json.dumps({"statusCode": 200, "cookies": ["a=1\nb"]}).encode(),
        json.dumps({"statusCode": 200, "isBase64Encoded": True, "body": "not base64!"}).encode(),
        json.dumps({"statusCode": 200, "isBase64Encoded": True, "body": {"a": 1}}).encode(),
        json.dumps({"statusCode": 200, "isBase64Encoded": "yes", "body": "x"}).encode(),
    ],
    ids=[
        "empty",
        "not-json",
        "nested-too-deep",
        "truncated",
        "bad-bytes",
        "status-text",
        "status-null",
        "status-bool",
        "status-fraction",
        "status-too-low",
        "status-too-high",
        "headers-list",
        "header-list-value",
        "header-object-value",
        "header-empty-name",
        "header-colon-name",
        "header-injection",
        "cookies-string",
        "cookie-not-string",
        "cookie-injection",
        "bad-base64",
        "base64-non-string",
        "base64-flag-junk",
    ],
)
def test_unusable_payload_is_502(payload: bytes) -> None:
    assert map_response(payload) == ERROR


def test_function_error_response() -> None:
    assert function_error_response() == ERROR
    # Each call stands alone: a caller appending a header must not change the next answer.
    function_error_response().headers.append((b"x", b"y"))
    assert function_error_response() == ERROR


def test_an_authorizers_findings_go_to_the_request_context() -> None:
    found = {"jwt": {"claims": {"sub": "u1", "exp": "1700000000"}, "scopes": None}}
    got = event(authorizer=found)
    assert got["requestContext"]["authorizer"] == found
    assert "authorizer" not in event()["requestContext"]
