"""The routing table: which Function serves an HTTP Trigger route, a bucket notification or an
Invoke API FunctionName; it also carries each Function's spec and the queue and kafka Triggers,
which the Lambda management API's read calls answer from (sources/management.py).

`routing_table` builds it from the spec models (local mode from the manifests it loaded,
the Kubernetes platform from the objects it watches); tests build it from
`FunctionEntry`/`HttpRoute` values. The gateway holds one table and swaps it whole when
Functions or Triggers change (`Gateway.set_routes`), so a request sees one consistent table;
on Kubernetes each new table is made from the previous one (tableupdates.py), equal to what
`routing_table` would build. Its HTTP routes are indexed by host and path (routetable.py): a
lookup does not grow with them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from kubelambda.api import BucketSource, Delivery, Function, HttpSource, Trigger
from kubelambda.api.delivery import Destination
from kubelambda.api.identity import FunctionKey
from kubelambda.api.patterns import DEFAULT_IDENTITY_SOURCE
from kubelambda.api.routes import route_conflicts
from kubelambda.api.streams import KafkaSource, QueueSource
from kubelambda.delivery.jobs import DeliveryPolicy, Target
from kubelambda.gateway.exceptions import (
    FunctionNotFound,
    InvalidParameter,
    MethodNotAllowed,
    RouteNotFound,
)
from kubelambda.gateway.functionnames import LATEST, parse_function_name, split_function_name
from kubelambda.gateway.routetable import RouteIndex, hostname, segments, shared_methods

__all__ = [
    "BucketRoute",
    "FunctionEntry",
    "HttpRoute",
    "JwtAuthorizerConfig",
    "RouteMatch",
    "RoutingTable",
    "SecretResolver",
    "bucket_route",
    "delivery_policy",
    "function_entry",
    "http_route",
    "parse_function_name",
    "routing_table",
]

SecretResolver = Callable[[str, str, str], str | None]
"""(namespace, secret name, key) → the value, or None when it cannot be read."""


@dataclass(frozen=True, slots=True)
class FunctionEntry:
    """What the gateway needs to know about one Function."""

    key: FunctionKey
    timeout_seconds: float = 3.0
    delivery: DeliveryPolicy = field(default_factory=DeliveryPolicy)
    # The Invoke API takes unsigned callers for this function (spec.invoke.anonymous).
    anonymous_invoke: bool = False
    # The Lambda name the Invoke API also takes for it (kubelambda.dev/function-name).
    lambda_name: str | None = None
    # The Function as parsed, for the management API's answers; None in tables built by hand.
    # Left out of equality and hashing: a spec holds mappings (inline files), which do not hash.
    spec: Function | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class JwtAuthorizerConfig:
    """A route's JWT authorizer (a Trigger's `spec.http.auth.jwt`): tokens from
    `identity_source` signed with the keys at `jwks_url` (None: found by OpenID discovery at
    `issuer`), whose `iss` is `issuer` and whose `aud` (or `client_id`) is one of `audience`;
    with `scopes`, the token must hold one of them (API Gateway's authorizationScopes)."""

    issuer: str
    audience: frozenset[str]
    jwks_url: str | None = None
    scopes: frozenset[str] = frozenset()
    identity_source: str = DEFAULT_IDENTITY_SOURCE


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
    # None: no JWT authorizer.
    jwt: JwtAuthorizerConfig | None = None


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


class RouteMatch(NamedTuple):
    """The outcome of routing one request. (A NamedTuple: the cheapest immutable record.)"""

    route: HttpRoute
    function: FunctionEntry
    route_key: str


class RoutingTable:
    """An immutable set of Functions and HTTP routes, with the lookups the gateway makes."""

    def __init__(
        self,
        *,
        functions: Iterable[FunctionEntry] = (),
        routes: Iterable[HttpRoute] = (),
        buckets: Iterable[BucketRoute] = (),
        default_namespace: str = "default",
        refused: Iterable[tuple[str, str]] = (),
        event_sources: Iterable[Trigger] = (),
    ) -> None:
        self.default_namespace = default_namespace
        # The queue and kafka Triggers (Lambda's event source mappings), as parsed.
        self.event_sources = tuple(event_sources)
        # HTTP Triggers left out (namespace/name, why): their path belongs to another claim.
        self.refused = tuple(refused)
        self._functions = {entry.key: entry for entry in functions}
        self._lambda_names = _lambda_names(self._functions.values())
        self.buckets = tuple(buckets)
        self._index: RouteIndex[HttpRoute] = RouteIndex(routes)

    @classmethod
    def assembled(
        cls,
        *,
        functions: dict[FunctionKey, FunctionEntry],
        lambda_names: dict[tuple[str, str], FunctionKey],
        index: RouteIndex[HttpRoute],
        buckets: tuple[BucketRoute, ...],
        default_namespace: str,
        refused: tuple[tuple[str, str], ...],
        event_sources: tuple[Trigger, ...],
    ) -> RoutingTable:
        """A table from parts made elsewhere (tableupdates.py), which the caller never changes
        afterwards: `lambda_names` holds each (namespace, Lambda name) exactly one of
        `functions` carries."""
        table = cls.__new__(cls)
        table.default_namespace = default_namespace
        table.event_sources = event_sources
        table.refused = refused
        table._functions = functions
        table._lambda_names = lambda_names
        table.buckets = buckets
        table._index = index
        return table

    @property
    def functions(self) -> Mapping[FunctionKey, FunctionEntry]:
        return self._functions

    @property
    def routes(self) -> tuple[HttpRoute, ...]:
        return tuple(c.route for c in self._index.ordered)

    def function(self, key: FunctionKey) -> FunctionEntry:
        entry = self._functions.get(key)
        if entry is None:
            raise FunctionNotFound(f"Function not found: {key}")
        return entry

    def match(self, *, method: str, path: str, host: str | None) -> RouteMatch:
        """Route a request; `path` is percent-decoded, `host` the Host header (port allowed).
        The gateway asks through `Current.match`, which remembers recent answers.

        Raises RouteNotFound when no route has this path, MethodNotAllowed when some do
        but none takes the method, FunctionNotFound when the route's Function is missing.
        """
        name = hostname(host)
        allowed: set[str] = set()
        for compiled in self._index.candidates(segments(path), name):
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
        on_host = f" on host {name}" if name else ""
        raise RouteNotFound(f"no route for {method} {path}{on_host}")

    def resolve(self, function_name: str, *, qualifier: str | None = None) -> FunctionEntry:
        """The Function an Invoke API FunctionName (and optional Qualifier) names: by its own
        name, else by the Lambda name it carries (OrderHandler for Function order-handler).
        The gateway asks through `Current.resolve`, which remembers recent answers."""
        try:
            key = parse_function_name(
                function_name, qualifier=qualifier, default_namespace=self.default_namespace
            )
        except InvalidParameter:
            alias = self._by_lambda_name(function_name, qualifier)
            if alias is None:
                raise
            return self.function(alias)
        if key not in self._functions:
            key = self._by_lambda_name(function_name, qualifier) or key
        return self.function(key)

    def _by_lambda_name(self, function_name: str, qualifier: str | None) -> FunctionKey | None:
        namespace, name, qualifier = split_function_name(function_name, qualifier)
        key = self._lambda_names.get((namespace or self.default_namespace, name))
        if key is not None and qualifier is not None and qualifier != LATEST:
            raise FunctionNotFound(
                f"Function not found: {key} with qualifier {qualifier!r} (only $LATEST exists)"
            )
        return key


def _lambda_names(entries: Iterable[FunctionEntry]) -> dict[tuple[str, str], FunctionKey]:
    """(namespace, Lambda name) → the Function carrying it. A name two Functions of one
    namespace carry is left out: it names neither, whichever order they were seen in."""
    names: dict[tuple[str, str], FunctionKey] = {}
    taken: set[tuple[str, str]] = set()
    for entry in entries:
        if entry.lambda_name is None:
            continue
        name = (entry.key.namespace, entry.lambda_name)
        if name in taken:
            names.pop(name, None)
            continue
        taken.add(name)
        names[name] = entry.key
    return names


def delivery_policy(delivery: Delivery, *, namespace: str) -> DeliveryPolicy:
    """`spec.delivery` of a Function or bucket Trigger; a dead-letter Function is in `namespace`."""
    letter = delivery.dead_letter
    return DeliveryPolicy(
        retries=delivery.retries,
        backoff_seconds=float(delivery.backoff_seconds),
        dead_letter_function=(
            FunctionKey(namespace, letter.function)
            if letter is not None and letter.function
            else None
        ),
        dead_letter_url=letter.url if letter is not None else None,
        max_event_age_seconds=float(delivery.max_event_age_seconds),
        on_success=_target(delivery.on_success, namespace=namespace),
        on_failure=_target(delivery.on_failure, namespace=namespace),
    )


def _target(destination: Destination | None, *, namespace: str) -> Target | None:
    if destination is None:
        return None
    return Target(
        function=FunctionKey(namespace, destination.function) if destination.function else None,
        url=destination.url,
        subject=destination.subject,
    )


def function_entry(function: Function) -> FunctionEntry:
    return FunctionEntry(
        key=FunctionKey(function.namespace, function.name),
        timeout_seconds=float(function.timeout_seconds),
        delivery=delivery_policy(function.delivery, namespace=function.namespace),
        anonymous_invoke=function.anonymous_invoke,
        lambda_name=function.lambda_name,
        spec=function,
    )


def _api_keys(
    trigger: Trigger, source: HttpSource, secrets: SecretResolver | None
) -> frozenset[str] | None:
    auth = source.auth
    if auth.type != "apiKey":
        return None
    ref = auth.secret_ref
    value = None
    if ref is not None and secrets is not None:
        value = secrets(trigger.namespace, ref.name, ref.key)
    # No readable key: refuse every request rather than serve an open route.
    return frozenset({value.strip()}) if value and value.strip() else frozenset()


def _jwt(source: HttpSource) -> JwtAuthorizerConfig | None:
    jwt = source.auth.jwt
    if source.auth.type != "jwt" or jwt is None:
        return None
    return JwtAuthorizerConfig(
        issuer=jwt.issuer,
        audience=frozenset(jwt.audience),
        jwks_url=jwt.jwks_url,
        scopes=frozenset(jwt.scopes),
        identity_source=jwt.identity_source,
    )


def http_route(trigger: Trigger, source: HttpSource, secrets: SecretResolver | None) -> HttpRoute:
    """The route of an HTTP Trigger (`source` is its `source`)."""
    return HttpRoute(
        function=FunctionKey(trigger.namespace, trigger.function),
        path=source.path,
        methods=shared_methods(frozenset(m for m in source.methods if m != "ANY")),
        host=source.host,
        trigger=f"{trigger.namespace}/{trigger.name}",
        api_keys=_api_keys(trigger, source, secrets),
        jwt=_jwt(source),
    )


def bucket_route(trigger: Trigger, source: BucketSource) -> BucketRoute:
    """The route of a bucket Trigger (`source` is its `source`)."""
    return BucketRoute(
        function=FunctionKey(trigger.namespace, trigger.function),
        bucket=source.bucket,
        events=source.events,
        prefix=source.prefix,
        suffix=source.suffix,
        delivery=(
            delivery_policy(trigger.delivery, namespace=trigger.namespace)
            if trigger.delivery is not None
            else None
        ),
        trigger=f"{trigger.namespace}/{trigger.name}",
    )


def routing_table(
    functions: Iterable[Function],
    triggers: Iterable[Trigger],
    *,
    default_namespace: str = "default",
    secrets: SecretResolver | None = None,
) -> RoutingTable:
    """The routing table for these Functions and Triggers.

    Triggers whose Function is missing are kept: their requests answer 404 naming the
    missing Function. HTTP Triggers that lose their path to an older claim (api.routes)
    are left out and listed in the table's `refused`. `secrets` reads the API keys of
    `apiKey` routes; `jwt` routes carry their authorizer's configuration. Queue and kafka
    Triggers are kept as parsed, in `event_sources`.
    """
    triggers = list(triggers)
    conflicts = route_conflicts(triggers)
    losers = {(c.trigger.namespace, c.trigger.name) for c in conflicts}
    entries = [function_entry(function) for function in functions]
    http: list[HttpRoute] = []
    buckets: list[BucketRoute] = []
    polled = [t for t in triggers if isinstance(t.source, QueueSource | KafkaSource)]
    for trigger in triggers:
        if (trigger.namespace, trigger.name) in losers:
            continue
        source = trigger.source
        if isinstance(source, HttpSource):
            http.append(http_route(trigger, source, secrets))
        elif isinstance(source, BucketSource):
            buckets.append(bucket_route(trigger, source))
    return RoutingTable(
        functions=entries,
        routes=http,
        buckets=buckets,
        default_namespace=default_namespace,
        refused=[(f"{c.trigger.namespace}/{c.trigger.name}", c.message) for c in conflicts],
        event_sources=polled,
    )
