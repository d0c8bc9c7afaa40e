"""The table a gateway serves now (`Current`) and its memo of recent lookups: the table's own
answers, asked of it once (test_routing.py: what the lookups answer, a new table's, bounds)."""

from __future__ import annotations

from typing import Any

import pytest

from kubelambda.api.identity import FunctionKey
from kubelambda.gateway.current import Current
from kubelambda.gateway.exceptions import RouteNotFound
from kubelambda.gateway.routing import FunctionEntry, HttpRoute, RouteMatch, RoutingTable

HELLO = FunctionKey("default", "hello")


class Counted(RoutingTable):
    """A table that counts what it is asked."""

    def __init__(self, **parts: Any) -> None:
        super().__init__(**parts)
        self.asked = 0

    def match(self, *, method: str, path: str, host: str | None) -> RouteMatch:
        self.asked += 1
        return super().match(method=method, path=path, host=host)

    def resolve(self, function_name: str, *, qualifier: str | None = None) -> FunctionEntry:
        self.asked += 1
        return super().resolve(function_name, qualifier=qualifier)


def table(function: FunctionKey) -> Counted:
    return Counted(functions=[FunctionEntry(function)], routes=[HttpRoute(function, "/")])


def test_answers_as_the_table_and_asks_it_once() -> None:
    first = table(HELLO)
    current = Current(first)
    for _ in range(3):
        assert current.match("GET", "/x", "h") == first.match(method="GET", path="/x", host="h")
        assert current.resolve("hello", None) is first.resolve("hello")
    assert first.asked == 2 + 3 * 2  # once each through Current; the rest asked directly


def test_refusals_are_not_remembered() -> None:
    empty = Counted(functions=[FunctionEntry(HELLO)])
    current = Current(empty)
    for _ in range(2):
        with pytest.raises(RouteNotFound):
            current.match("GET", "/x", None)
    assert empty.asked == 2
