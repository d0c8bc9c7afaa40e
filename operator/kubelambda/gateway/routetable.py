"""The HTTP routes of a routing table, indexed by host and path so that a lookup costs the same
with 15,000 routes as with 10 (issue 17). `routing.RoutingTable` builds one and asks it for a
request's candidate routes, most specific first; the choice among them stays in routing.py.
`RouteIndex.changed` makes the next index from this one for a few routes added or removed,
sharing what they do not touch (tableupdates.py), so a Trigger change costs what it changes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Generic, Protocol, TypeVar
from urllib.parse import unquote

__all__ = ["CompiledRoute", "RouteIndex", "RouteSpec", "hostname", "segments", "shared_methods"]


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


# One frozenset per set of methods: 15,000 routes name a handful of sets, and each frozenset
# costs 216 bytes. Bounded: past it, sets are kept as given.
_SHARED_METHODS: dict[frozenset[str], frozenset[str]] = {}
_SHARED_METHODS_MAX = 256


def shared_methods(methods: frozenset[str]) -> frozenset[str]:
    """An equal set of methods already held, or `methods` (routing.http_route uses it too)."""
    found = _SHARED_METHODS.get(methods)
    if found is not None:
        return found
    if len(_SHARED_METHODS) < _SHARED_METHODS_MAX:
        _SHARED_METHODS[methods] = methods
    return methods


class CompiledRoute(Generic[R]):
    """A route parsed once: its decoded path segments, upper-case methods and a rank."""

    __slots__ = ("host", "methods", "order", "rank", "route", "segments")

    def __init__(self, route: R, *, order: int = 0) -> None:
        if not route.path.startswith("/"):
            owner = route.trigger or route.function
            raise ValueError(f"route path {route.path!r} of {owner}: must start with '/'")
        self.route = route
        self.methods = shared_methods(
            frozenset(m.upper() for m in route.methods if m not in ("*", "ANY"))
        )
        self.segments = tuple(segments(unquote(route.path)))
        self.host = (route.host or "").lower()
        # More specific first: a named host, then a longer path, then routes that name
        # their methods before catch-all ones on the same path.
        self.rank = (1 if self.host else 0, len(self.segments), 1 if self.methods else 0)
        # Where the route stands among those given (ties in rank keep that order).
        self.order = order

    def _on_its_path(self) -> tuple[int, int]:
        # The order among the routes of one host and path: all that differs in their rank is
        # whether they name methods.
        return (-self.rank[2], self.order)


class _PathsOfHost(Generic[R]):
    """The routes of one host ("" for those on every host), by their whole path."""

    __slots__ = ("by_path", "depth", "depths")

    def __init__(self) -> None:
        self.by_path: dict[tuple[str, ...], list[CompiledRoute[R]]] = {}
        self.depth = 0
        self.depths: dict[int, int] = {}  # path length → how many paths are that long

    def copy(self) -> _PathsOfHost[R]:
        # The path → routes dict and the depth counts are copied; each list of routes is
        # replaced, never changed, so the copy shares them with the original.
        paths: _PathsOfHost[R] = _PathsOfHost()
        paths.by_path = dict(self.by_path)
        paths.depths = dict(self.depths)
        paths.depth = self.depth
        return paths

    def put(self, segments: tuple[str, ...], routes: list[CompiledRoute[R]]) -> None:
        """Set the routes of one path (none: the path goes)."""
        had = segments in self.by_path
        depth = len(segments)
        if routes:
            if not had:
                self.depths[depth] = self.depths.get(depth, 0) + 1
            self.by_path[segments] = routes
        elif had:
            del self.by_path[segments]
            left = self.depths.pop(depth) - 1
            if left:
                self.depths[depth] = left


class RouteIndex(Generic[R]):
    """Routes by host, then by path segments. `candidates` yields the routes whose path is a
    request's path or above it, in the order a scan of every route by descending rank would
    meet them (ties in the order given), so the first that takes the method is the one
    that scan found: O(depth of the path) dict lookups instead of O(routes) comparisons."""

    def __init__(self, routes: Iterable[R]) -> None:
        compiled = [CompiledRoute(route, order=order) for order, route in enumerate(routes)]
        # sort() is stable, also reversed: equal ranks keep the order given.
        compiled.sort(key=lambda c: c.rank, reverse=True)
        self._ordered: tuple[CompiledRoute[R], ...] | None = tuple(compiled)
        self._hosts: dict[str, _PathsOfHost[R]] = {}
        for route in compiled:
            paths = self._hosts.get(route.host)
            if paths is None:
                paths = self._hosts[route.host] = _PathsOfHost()
            # Appended in rank order: on one path, routes naming methods before catch-alls.
            found = paths.by_path.get(route.segments)
            if found is None:
                paths.put(route.segments, [route])
            else:
                found.append(route)
        for paths in self._hosts.values():
            paths.depth = max(paths.depths, default=0)

    @property
    def ordered(self) -> tuple[CompiledRoute[R], ...]:
        """Every route, most specific first (ties in the order given)."""
        if self._ordered is None:
            every = [
                route
                for paths in self._hosts.values()
                for found in paths.by_path.values()
                for route in found
            ]
            every.sort(key=lambda c: c.order)
            every.sort(key=lambda c: c.rank, reverse=True)
            self._ordered = tuple(every)
        return self._ordered

    def changed(
        self, *, removed: Iterable[CompiledRoute[R]] = (), added: Iterable[CompiledRoute[R]] = ()
    ) -> RouteIndex[R]:
        """A new index: this one without `removed` (routes it holds) and with `added` (routes
        compiled with their `order`). This one is left as it is, for the requests it routes;
        the new one shares every host and path the change does not touch."""
        index: RouteIndex[R] = RouteIndex(())
        index._hosts = dict(self._hosts)
        index._ordered = None
        copied: dict[str, _PathsOfHost[R]] = {}

        def paths_of(host: str) -> _PathsOfHost[R]:
            paths = copied.get(host)
            if paths is None:
                old = self._hosts.get(host)
                paths = old.copy() if old is not None else _PathsOfHost()
                copied[host] = index._hosts[host] = paths
            return paths

        for route in removed:
            paths = paths_of(route.host)
            found = paths.by_path.get(route.segments, [])
            paths.put(route.segments, [other for other in found if other is not route])
        for route in added:
            paths = paths_of(route.host)
            found = [*paths.by_path.get(route.segments, ()), route]
            found.sort(key=CompiledRoute._on_its_path)
            paths.put(route.segments, found)
        for host, paths in copied.items():
            if paths.by_path:
                paths.depth = max(paths.depths)
            else:
                del index._hosts[host]
        return index

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
