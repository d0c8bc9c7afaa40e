"""The routing table: HTTP Trigger routes and Invoke API FunctionNames to Functions."""

from __future__ import annotations

import pytest

from kubelambda.api.identity import FunctionKey, function_arn
from kubelambda.gateway.current import Current
from kubelambda.gateway.exceptions import (
    FunctionNotFound,
    InvalidParameter,
    MethodNotAllowed,
    RouteNotFound,
)
from kubelambda.gateway.routing import FunctionEntry, HttpRoute, RoutingTable, parse_function_name

API = FunctionKey("default", "api")
USERS = FunctionKey("default", "users")
ADMIN = FunctionKey("default", "admin")
HOSTED = FunctionKey("default", "hosted")
ROOT = FunctionKey("default", "root")
TEAM = FunctionKey("team", "api")

TABLE = RoutingTable(
    functions=[FunctionEntry(k) for k in (API, USERS, ADMIN, HOSTED, ROOT, TEAM)],
    routes=[
        HttpRoute(API, "/api"),
        HttpRoute(USERS, "/api/users", methods=frozenset({"GET", "POST"})),
        HttpRoute(ADMIN, "/admin", methods=frozenset({"GET"})),
        HttpRoute(HOSTED, "/api", host="example.com"),
        HttpRoute(TEAM, "/team/a%20b"),
        HttpRoute(FunctionKey("default", "gone"), "/gone", trigger="default/dangling"),
    ],
)


@pytest.mark.parametrize(
    ("method", "path", "host", "function", "route_key"),
    [
        ("GET", "/api", None, API, "ANY /api"),
        ("GET", "/api/", None, API, "ANY /api"),
        ("DELETE", "/api/things/1", None, API, "ANY /api"),
        # the longer prefix wins, and its methods are named in the route key
        ("GET", "/api/users", None, USERS, "GET /api/users"),
        ("POST", "/api/users/7", None, USERS, "POST /api/users"),
        # a method the longer route refuses falls back to the shorter catch-all one
        ("DELETE", "/api/users/7", None, API, "ANY /api"),
        # a route naming a host beats the same path without one, for that host only
        ("GET", "/api/x", "example.com", HOSTED, "ANY /api"),
        ("GET", "/api/x", "EXAMPLE.com:8080", HOSTED, "ANY /api"),
        ("GET", "/api/x", "other.example.com", API, "ANY /api"),
        # route paths are compared percent-decoded, like the request's path
        ("GET", "/team/a b/c", None, TEAM, "ANY /team/a%20b"),
    ],
)
def test_routes_by_prefix_host_and_method(
    method: str, path: str, host: str | None, function: FunctionKey, route_key: str
) -> None:
    match = TABLE.match(method=method, path=path, host=host)
    assert match.function.key == function
    assert match.route_key == route_key


@pytest.mark.parametrize(
    "path",
    [
        "/apix",  # prefixes match whole segments only
        "/",
        "/ap",
        "/team/a%20b",  # the request path given to match() is already decoded
    ],
)
def test_unknown_paths_are_route_not_found(path: str) -> None:
    with pytest.raises(RouteNotFound, match="no route for GET"):
        TABLE.match(method="GET", path=path, host=None)


def test_wrong_method_names_the_allowed_ones() -> None:
    with pytest.raises(MethodNotAllowed) as caught:
        TABLE.match(method="POST", path="/admin/x", host=None)
    assert caught.value.allowed == frozenset({"GET"})
    assert "allowed: GET" in caught.value.message


def test_a_route_to_a_missing_function_says_which() -> None:
    with pytest.raises(FunctionNotFound, match="default/gone, which does not exist"):
        TABLE.match(method="GET", path="/gone", host=None)


def test_root_route_catches_everything_else() -> None:
    table = RoutingTable(
        functions=[FunctionEntry(ROOT), FunctionEntry(API)],
        routes=[HttpRoute(ROOT, "/"), HttpRoute(API, "/api")],
    )
    assert table.match(method="GET", path="/anything/else", host=None).function.key == ROOT
    assert table.match(method="GET", path="/", host=None).function.key == ROOT
    assert table.match(method="GET", path="/api/1", host=None).function.key == API


def _table() -> RoutingTable:
    return RoutingTable(functions=TABLE.functions.values(), routes=TABLE.routes)


def test_repeated_lookups_answer_as_the_first_did() -> None:
    # Lookups are remembered per table: the same request routes the same way every time,
    # one differing only in method or host is routed on its own, and refusals stay refusals.
    current = Current(_table())
    for _ in range(3):
        assert current.match("GET", "/api/users", None).function.key == USERS
        assert current.match("DELETE", "/api/users", None).function.key == API
        assert current.match("GET", "/api/x", "example.com").function.key == HOSTED
        assert current.match("GET", "/api/x", None).function.key == API
        with pytest.raises(MethodNotAllowed):
            current.match("POST", "/admin", None)
        with pytest.raises(FunctionNotFound):
            current.match("GET", "/gone", None)
        with pytest.raises(RouteNotFound):
            current.match("GET", "/nothing", None)
    # A new table does not answer from the old one's lookups.
    current.set(RoutingTable(functions=[FunctionEntry(ROOT)], routes=[HttpRoute(ROOT, "/api")]))
    assert current.match("GET", "/api/users", None).function.key == ROOT


def test_repeated_function_names_resolve_as_the_first_did() -> None:
    current = Current(
        RoutingTable(
            functions=[FunctionEntry(API), FunctionEntry(USERS, lambda_name="UsersApi")],
            default_namespace="default",
        )
    )
    for _ in range(3):
        assert current.resolve("api", None).key == API
        assert current.resolve("default.api", "$LATEST").key == API
        assert current.resolve("UsersApi", None).key == USERS
        with pytest.raises(FunctionNotFound):
            current.resolve("api", "7")
        with pytest.raises(FunctionNotFound):
            current.resolve("missing", None)
    # bounded: every ARN form of the name is a name of its own
    for n in range(3000):
        assert current.resolve(f"arn:aws:lambda:us-east-1:{n:012d}:function:api", None).key == API
    assert 0 < len(current._resolved) <= 1024


def test_remembered_lookups_are_bounded() -> None:
    current = Current(_table())
    for n in range(3000):
        assert current.match("GET", f"/api/{n}", None).function.key == API
    assert 0 < len(current._matches) <= 1024
    # Nor are long paths and hosts kept at all.
    current._matches.clear()
    current.match("GET", "/api/" + "x" * 600, None)
    current.match("GET", "/api/x", "h" * 600)
    assert current._matches == {}


def test_route_paths_must_be_absolute() -> None:
    with pytest.raises(ValueError, match="must start with '/'"):
        RoutingTable(functions=[], routes=[HttpRoute(API, "api")])


@pytest.mark.parametrize(
    ("name", "qualifier", "expected"),
    [
        ("hello", None, FunctionKey("default", "hello")),
        ("hello:$LATEST", None, FunctionKey("default", "hello")),
        ("hello", "$LATEST", FunctionKey("default", "hello")),
        ("team.hello", None, FunctionKey("team", "hello")),
        ("team.hello:$LATEST", "$LATEST", FunctionKey("team", "hello")),
        (
            "arn:aws:lambda:us-east-1:123456789012:function:hello",
            None,
            FunctionKey("default", "hello"),
        ),
        (
            "arn:aws:lambda:eu-west-1:000000000000:function:team.hello:$LATEST",
            None,
            FunctionKey("team", "hello"),
        ),
        ("123456789012:function:team.hello", None, FunctionKey("team", "hello")),
        (
            "arn:aws-cn:lambda:cn-north-1:123456789012:function:a-1",
            None,
            FunctionKey("default", "a-1"),
        ),
    ],
)
def test_function_names(name: str, qualifier: str | None, expected: FunctionKey) -> None:
    assert parse_function_name(name, qualifier=qualifier, default_namespace="default") == expected


@pytest.mark.parametrize(
    ("name", "qualifier", "error", "message"),
    [
        ("Hello", None, InvalidParameter, "name 'Hello' is not a DNS label"),
        ("team.", None, InvalidParameter, "name '' is not a DNS label"),
        ("Team.hello", None, InvalidParameter, "namespace 'Team' is not a DNS label"),
        ("hello:", None, InvalidParameter, "not a valid function name"),
        ("hello:1:2", None, InvalidParameter, "not a valid function name"),
        ("hello:$LATEST", "prod", InvalidParameter, "does not match the specified qualifier"),
        ("a" * 64, None, InvalidParameter, "not a DNS label"),
        # there are no versions or aliases
        ("hello:prod", None, FunctionNotFound, "only \\$LATEST exists"),
        ("hello", "1", FunctionNotFound, "only \\$LATEST exists"),
        (
            "arn:aws:lambda:us-east-1:123456789012:function:hello:7",
            None,
            FunctionNotFound,
            "qualifier '7'",
        ),
    ],
)
def test_bad_function_names(
    name: str, qualifier: str | None, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        parse_function_name(name, qualifier=qualifier, default_namespace="default")


def test_invalid_names_are_validation_errors() -> None:
    with pytest.raises(InvalidParameter) as caught:
        parse_function_name("NOPE", qualifier=None, default_namespace="default")
    assert caught.value.error_type == "ValidationException"
    assert caught.value.status == 400


def test_resolve_unknown_function_is_not_found() -> None:
    with pytest.raises(FunctionNotFound, match="Function not found: team/missing"):
        TABLE.resolve("team.missing")
    assert TABLE.resolve("team.api").key == TEAM
    assert TABLE.resolve("api").key == API


@pytest.mark.parametrize(
    ("key", "arn"),
    [
        (FunctionKey("default", "hello"), "arn:aws:lambda:us-east-1:000000000000:function:hello"),
        (FunctionKey("team", "hello"), "arn:aws:lambda:us-east-1:000000000000:function:team.hello"),
    ],
)
def test_function_arn_omits_the_default_namespace(key: FunctionKey, arn: str) -> None:
    assert (
        function_arn(
            key, region="us-east-1", account_id="000000000000", default_namespace="default"
        )
        == arn
    )
    # and the ARN names the same function again
    assert parse_function_name(arn, qualifier=None, default_namespace="default") == key
