"""The routing table: which Function serves an HTTP Trigger route or an Invoke API FunctionName.

Built from the spec models (see `specs.py`) or directly from `FunctionEntry`/`HttpRoute`
values; the gateway holds one table and swaps it whole when Functions or Triggers change
(`Gateway.set_routes`), so a request always sees one consistent table.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote

from kubelambda.gateway.exceptions import (
    FunctionNotFound,
    InvalidParameter,
    MethodNotAllowed,
    RouteNotFound,
)
from kubelambda.gateway.platforms import FunctionKey

__all__ = [
    "BucketRoute",
    "DeliveryPolicy",
    "FunctionEntry",
    "HttpRoute",
    "RouteMatch",
    "RoutingTable",
    "function_arn",
    "parse_function_name",
]

LATEST = "$LATEST"
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
# Full ARN, or the partial form ACCOUNT:function:NAME that Lambda also accepts.
_ARN = re.compile(r"^(?:arn:aws[a-z-]*:lambda:[a-z0-9-]*:)?(\d{12}):function:(.+)$")


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    """How asynchronous invocations are retried and where they go when they keep failing."""

    retries: int = 2
    backoff_seconds: float = 60.0
    dead_letter_function: FunctionKey | None = None
    dead_letter_url: str | None = None


@dataclass(frozen=True, slots=True)
class FunctionEntry:
    """What the gateway needs to know about one Function."""

    key: FunctionKey
    timeout_seconds: float = 3.0
    delivery: DeliveryPolicy = field(default_factory=DeliveryPolicy)


@dataclass(frozen=True, slots=True)
class HttpRoute:
    """One HTTP Trigger: requests whose path is `path` or below it (by whole segments), with
    one of `methods` (empty: any), for `host` (None: any host) go to `function`."""

    function: FunctionKey
    path: str = "/"
    methods: frozenset[str] = frozenset()
    host: str | None = None
    trigger: str = ""
    # None: no authentication. Otherwise the x-api-key values accepted; empty when the
    # key could not be read, which refuses every request (fail closed).
    api_keys: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class BucketRoute:
    """One bucket Trigger, for the S3 notification endpoint: records of `bucket` whose event
    and key match go to `function`, delivered by `delivery` (None: the Function's own)."""

    function: FunctionKey
    bucket: str
    events: tuple[str, ...]
    prefix: str = ""
    suffix: str = ""
    delivery: DeliveryPolicy | None = None
    trigger: str = ""


@dataclass(frozen=True, slots=True)
class RouteMatch:
    """The outcome of routing one request."""

    route: HttpRoute
    function: FunctionEntry
    route_key: str


class _CompiledRoute:
    """A route parsed once: its decoded path segments, upper-case methods and a rank."""

    __slots__ = ("host", "methods", "rank", "route", "segments")

    def __init__(self, route: HttpRoute) -> None:
        if not route.path.startswith("/"):
            owner = route.trigger or route.function
            raise ValueError(f"route path {route.path!r} of {owner}: must start with '/'")
        self.route = route
        self.methods = frozenset(m.upper() for m in route.methods if m not in ("*", "ANY"))
        self.segments = tuple(_segments(unquote(route.path)))
        self.host = (route.host or "").lower()
        # More specific first: a named host, then a longer path, then routes that name
        # their methods before catch-all ones on the same path.
        self.rank = (1 if self.host else 0, len(self.segments), 1 if self.methods else 0)

    def matches_path(self, segments: list[str]) -> bool:
        count = len(self.segments)
        return len(segments) >= count and tuple(segments[:count]) == self.segments


def _segments(path: str) -> list[str]:
    # "/a/b/" and "/a/b" are the same route; "/" has no segments.
    stripped = path.strip("/")
    return stripped.split("/") if stripped else []


class RoutingTable:
    """An immutable set of Functions and HTTP routes, with the lookups the gateway makes."""

    def __init__(
        self,
        *,
        functions: Iterable[FunctionEntry] = (),
        routes: Iterable[HttpRoute] = (),
        buckets: Iterable[BucketRoute] = (),
        default_namespace: str = "default",
    ) -> None:
        self.default_namespace = default_namespace
        self._functions = {entry.key: entry for entry in functions}
        self.buckets = tuple(buckets)
        compiled = [_CompiledRoute(route) for route in routes]
        compiled.sort(key=lambda c: c.rank, reverse=True)
        self._routes = tuple(compiled)

    @property
    def functions(self) -> Mapping[FunctionKey, FunctionEntry]:
        return self._functions

    @property
    def routes(self) -> tuple[HttpRoute, ...]:
        return tuple(c.route for c in self._routes)

    def function(self, key: FunctionKey) -> FunctionEntry:
        entry = self._functions.get(key)
        if entry is None:
            raise FunctionNotFound(f"Function not found: {key}")
        return entry

    def match(self, *, method: str, path: str, host: str | None) -> RouteMatch:
        """Route a request; `path` is percent-decoded, `host` the Host header (port allowed).

        Raises RouteNotFound when no route has this path, MethodNotAllowed when some do
        but none takes the method, FunctionNotFound when the route's Function is missing.
        """
        segments = _segments(path)
        hostname = _hostname(host)
        allowed: set[str] = set()
        for compiled in self._routes:
            if compiled.host and compiled.host != hostname:
                continue
            if not compiled.matches_path(segments):
                continue
            if compiled.methods and method not in compiled.methods:
                allowed.update(compiled.methods)
                continue
            route = compiled.route
            entry = self._functions.get(route.function)
            if entry is None:
                raise FunctionNotFound(
                    f"route {route.path} ({route.trigger or 'trigger'}) sends to Function "
                    f"{route.function}, which does not exist"
                )
            verb = method if compiled.methods else "ANY"
            return RouteMatch(route=route, function=entry, route_key=f"{verb} {route.path}")
        if allowed:
            raise MethodNotAllowed(
                f"{method} is not allowed on {path}; allowed: {', '.join(sorted(allowed))}",
                allowed=frozenset(allowed),
            )
        on_host = f" on host {hostname}" if hostname else ""
        raise RouteNotFound(f"no route for {method} {path}{on_host}")

    def resolve(self, function_name: str, *, qualifier: str | None = None) -> FunctionEntry:
        """The Function an Invoke API FunctionName (and optional Qualifier) names."""
        return self.function(
            parse_function_name(
                function_name, qualifier=qualifier, default_namespace=self.default_namespace
            )
        )


def _hostname(host: str | None) -> str:
    if not host:
        return ""
    if host.startswith("["):  # an IPv6 literal, with or without a port
        return host.split("]", 1)[0].lower() + "]"
    return host.split(":", 1)[0].lower()


def parse_function_name(
    function_name: str, *, qualifier: str | None, default_namespace: str
) -> FunctionKey:
    """Resolve an Invoke API FunctionName to a Function key, as docs/contracts.md defines.

    Accepts NAME, NAMESPACE.NAME, either with a `:$LATEST` suffix, and the same inside a
    full or partial ARN. Raises InvalidParameter for names that cannot be Functions and
    FunctionNotFound for any qualifier but $LATEST (there are no versions or aliases).
    """
    name = function_name
    arn = _ARN.match(name)
    if arn is not None:
        name = arn.group(2)
    base, colon, suffix = name.partition(":")
    if colon:
        if ":" in suffix or not suffix:
            raise InvalidParameter(
                f"FunctionName {function_name!r} is not a valid function name or ARN",
                error_type="ValidationException",
            )
        if qualifier is not None and qualifier != suffix:
            raise InvalidParameter(
                f"The derived qualifier from the function name ({suffix}) does not match "
                f"the specified qualifier ({qualifier})",
                error_type="ValidationException",
            )
        qualifier = suffix
    namespace, dot, short = base.partition(".")
    if not dot:
        namespace, short = default_namespace, base
    for label, what in ((short, "name"), (namespace, "namespace")):
        if not _DNS_LABEL.match(label):
            raise InvalidParameter(
                f"FunctionName {function_name!r}: {what} {label!r} is not a DNS label "
                "(lower-case letters, digits and '-', at most 63 characters); "
                "use NAME, NAMESPACE.NAME or an ARN of either",
                error_type="ValidationException",
            )
    key = FunctionKey(namespace, short)
    if qualifier is not None and qualifier != LATEST:
        raise FunctionNotFound(
            f"Function not found: {key} with qualifier {qualifier!r} (only $LATEST exists)"
        )
    return key


def function_arn(key: FunctionKey, *, region: str, account_id: str, default_namespace: str) -> str:
    """The ARN a function is invoked as: NAME in the default namespace, else NAMESPACE.NAME."""
    name = key.name if key.namespace == default_namespace else f"{key.namespace}.{key.name}"
    return f"arn:aws:lambda:{region}:{account_id}:function:{name}"
