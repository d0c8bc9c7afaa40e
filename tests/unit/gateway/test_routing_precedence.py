"""Route precedence in the indexed routing table (gateway/routetable.py): a named host, then a
longer path, then named methods, ties in the order given; and lookups that meet only the routes
on the request's own path, whatever the number of routes (issue 17)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubelambda.api.identity import FunctionKey
from kubelambda.gateway.exceptions import MethodNotAllowed, RouteNotFound
from kubelambda.gateway.routetable import CompiledRoute, RouteIndex, hostname, segments
from kubelambda.gateway.routing import FunctionEntry, HttpRoute, RoutingTable


def _key(name: str) -> FunctionKey:
    return FunctionKey("default", name)


GET, POST = frozenset({"GET"}), frozenset({"POST"})
ROUTES = [
    HttpRoute(_key("any-a"), "/a"),
    HttpRoute(_key("any-a-second"), "/a/"),  # the same path, given later: never chosen
    HttpRoute(_key("get-a"), "/a", methods=GET),
    HttpRoute(_key("deep"), "/a/b/c", methods=POST),
    HttpRoute(_key("host-root"), "/", host="h.example"),
    HttpRoute(_key("host-x"), "/x", host="H.example", methods=GET),
    HttpRoute(_key("x"), "/x/y"),
]
TABLE = RoutingTable(functions=[FunctionEntry(r.function) for r in ROUTES], routes=ROUTES)


@pytest.mark.parametrize(
    ("method", "path", "host", "function"),
    [
        # on one path, a route naming the method before the catch-all; ties: first given
        ("GET", "/a", None, "get-a"),
        ("PUT", "/a", None, "any-a"),
        # a longer path first; a method it refuses falls back to the shorter one
        ("POST", "/a/b/c/d", None, "deep"),
        ("GET", "/a/b/c/d", None, "get-a"),
        # a named host before any longer path on every host
        ("GET", "/x/y", "h.example", "host-x"),
        ("PUT", "/x/y", "h.example:443", "host-root"),
        ("GET", "/x/y", "other.example", "x"),
        # request paths far deeper than any route still reach the shallow ones
        ("GET", "/a" + "/z" * 500, None, "get-a"),
    ],
)
def test_precedence(method: str, path: str, host: str | None, function: str) -> None:
    assert TABLE.match(method=method, path=path, host=host).function.key == _key(function)


def test_method_not_allowed_names_the_methods_of_every_route_on_the_path() -> None:
    table = RoutingTable(
        functions=[FunctionEntry(_key("f"))],
        routes=[
            HttpRoute(_key("f"), "/p", methods=GET, host="h.example"),
            HttpRoute(_key("f"), "/p/q", methods=POST),
            HttpRoute(_key("f"), "/other", methods=frozenset({"PUT"})),
        ],
    )
    with pytest.raises(MethodNotAllowed) as caught:
        table.match(method="DELETE", path="/p/q", host="h.example")
    assert caught.value.allowed == frozenset({"GET", "POST"})
    with pytest.raises(RouteNotFound):
        table.match(method="GET", path="/p", host="elsewhere")


def test_a_lookup_meets_only_the_routes_on_its_path() -> None:
    routes = [HttpRoute(_key(f"fn-{n}"), f"/fn-{n}") for n in range(20_000)]
    routes.append(HttpRoute(_key("root"), "/"))
    index = RouteIndex(routes)
    met = [c.route.function for c in index.candidates(segments("/fn-19999/items"), "")]
    assert met == [_key("fn-19999"), _key("root")]


def _scan(routes: list[HttpRoute], method: str, path: str, host: str | None) -> str:
    """The table's answer as a scan of every route by rank (the code before the index)."""
    ordered = sorted(map(CompiledRoute, routes), key=lambda c: c.rank, reverse=True)
    wanted, name = tuple(segments(path)), hostname(host)
    allowed: set[str] = set()
    for c in ordered:
        if (c.host and c.host != name) or wanted[: len(c.segments)] != c.segments:
            continue
        if c.methods and method not in c.methods:
            allowed.update(c.methods)
            continue
        return c.route.function.name
    return f"405 {sorted(allowed)}" if allowed else "404"


def _answer(table: RoutingTable, method: str, path: str, host: str | None) -> str:
    try:
        return table.match(method=method, path=path, host=host).function.key.name
    except MethodNotAllowed as refused:
        return f"405 {sorted(refused.allowed)}"
    except RouteNotFound:
        return "404"


_PATHS = st.lists(st.sampled_from(["a", "b", "c"]), max_size=3).map(lambda s: "/" + "/".join(s))
_HOSTS = st.sampled_from([None, "h.example", "g.example"])
_METHODS = st.sampled_from(["GET", "POST", "PUT"])


@settings(max_examples=300, deadline=None)
@given(
    specs=st.lists(
        st.tuples(_PATHS, _HOSTS, st.frozensets(_METHODS, max_size=2)), min_size=1, max_size=12
    ),
    requests=st.lists(st.tuples(_METHODS, _PATHS, _HOSTS), min_size=1, max_size=8),
)
def test_the_index_answers_as_a_scan_of_every_route(
    specs: list[tuple[str, str | None, frozenset[str]]],
    requests: list[tuple[str, str, str | None]],
) -> None:
    routes = [
        HttpRoute(_key(f"r{n}"), path, methods=methods, host=host)
        for n, (path, host, methods) in enumerate(specs)
    ]
    table = RoutingTable(functions=[FunctionEntry(r.function) for r in routes], routes=routes)
    for method, path, host in requests:
        assert _answer(table, method, path, host) == _scan(routes, method, path, host)
