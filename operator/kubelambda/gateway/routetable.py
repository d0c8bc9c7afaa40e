"""The HTTP routes of a routing table, indexed by host and path so that a lookup costs the same
with 15,000 routes as with 10 (issue 17). `routing.RoutingTable` builds one and asks it for a
request's candidate routes, most specific first; the choice among them stays in routing.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Generic, Protocol, TypeVar
from urllib.parse import unquote

__all__ = ["CompiledRoute", "RouteIndex", "RouteSpec", "hostname", "segments"]


class RouteSpec(Protocol):
    """What the index reads of a route (routing.HttpRoute)."""

    @property
    def path(self) -> str: ...
    @property
    def methods(self) -> frozenset[str]: ...
    @property
    def host(self) -> str | None: ...
    @property
    def trigger(self) -> str: ...
    @property
    def function(self) -> object: ...


R = TypeVar("R", bound=RouteSpec)


def segments(path: str) -> list[str]:
    # "/a/b/" and "/a/b" are the same route; "/" has no segments.
    stripped = path.strip("/")
    return stripped.split("/") if stripped else []


def hostname(host: str | None) -> str:
    """The Host header's name, lower-case and without its port; "" for none."""
    if not host:
        return ""
    if host.startswith("["):  # an IPv6 literal, with or without a port
        return host.split("]", 1)[0].lower() + "]"
    return host.split(":", 1)[0].lower()


class CompiledRoute(Generic[R]):
    """A route parsed once: its decoded path segments, upper-case methods and a rank."""

    __slots__ = ("host", "methods", "rank", "route", "segments")

    def __init__(self, route: R) -> None:
        if not route.path.startswith("/"):
            owner = route.trigger or route.function
            raise ValueError(f"route path {route.path!r} of {owner}: must start with '/'")
        self.route = route
        self.methods = frozenset(m.upper() for m in route.methods if m not in ("*", "ANY"))
        self.segments = tuple(segments(unquote(route.path)))
        self.host = (route.host or "").lower()
        # More specific first: a named host, then a longer path, then routes that name
        # their methods before catch-all ones on the same path.
        self.rank = (1 if self.host else 0, len(self.segments), 1 if self.methods else 0)


class _PathsOfHost(Generic[R]):
    """The routes of one host ("" for those on every host), by their whole path."""

    __slots__ = ("by_path", "depth")

    def __init__(self) -> None:
        self.by_path: dict[tuple[str, ...], list[CompiledRoute[R]]] = {}
        self.depth = 0


class RouteIndex(Generic[R]):
    """Routes by host, then by path segments. `candidates` yields the routes whose path is a
    request's path or above it, in the order a scan of every route by descending rank would
    meet them (ties in the order given), so the first that takes the method is the one
    that scan found: O(depth of the path) dict lookups instead of O(routes) comparisons."""

    def __init__(self, routes: Iterable[R]) -> None:
        compiled = [CompiledRoute(route) for route in routes]
        # sort() is stable, also reversed: equal ranks keep the order given.
        compiled.sort(key=lambda c: c.rank, reverse=True)
        self.ordered: tuple[CompiledRoute[R], ...] = tuple(compiled)
        self._hosts: dict[str, _PathsOfHost[R]] = {}
        for route in self.ordered:
            paths = self._hosts.get(route.host)
            if paths is None:
                paths = self._hosts[route.host] = _PathsOfHost()
            # Appended in rank order: on one path, routes naming methods before catch-alls.
            paths.by_path.setdefault(route.segments, []).append(route)
            paths.depth = max(paths.depth, len(route.segments))

    def candidates(self, path: list[str], host: str) -> Iterator[CompiledRoute[R]]:
        """Routes for `path` (its segments) on `host` (a `hostname`), most specific first:
        those naming this host before those on every host, then longer paths first."""
        for name in (host, "") if host else ("",):
            paths = self._hosts.get(name)
            if paths is None:
                continue
            # Only paths as deep as the deepest route can match: a long request path costs
            # no more than that.
            for count in range(min(len(path), paths.depth), -1, -1):
                found = paths.by_path.get(tuple(path[:count]))
                if found is not None:
                    yield from found
