"""API Gateway HTTP API payload 2.0: requests as events, as data (gateway/sources/http_event.py)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from kubelambda.gateway.sources.http_event import (
    _NAME_BYTES,
    _NAMES,
    _names,
    build_event,
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


def test_an_authorizers_findings_go_to_the_request_context() -> None:
    found = {"jwt": {"claims": {"sub": "u1", "exp": "1700000000"}, "scopes": None}}
    got = event(authorizer=found)
    assert got["requestContext"]["authorizer"] == found
    assert "authorizer" not in event()["requestContext"]
