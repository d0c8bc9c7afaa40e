"""Routing tables made from the previous one, so that a Function or Trigger change costs the
gateway what it changes, not what the table holds (issue 17: 15,000 routes, a change served
within a second). ``kubelambda gateway`` hands `TableUpdates.update` every valid Function and
Trigger its watch holds (platforms/kubernetes/specs.py) and serves the table it returns.

Each table equals `routing.routing_table` over the same Functions and Triggers in this
builder's order (`functions`, `triggers`): that of a dict updated in place, as the watch's
are. A table is never changed once made: requests already routed finish with the old one,
which shares with the new one every host, path and mapping the change did not touch.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from itertools import compress
from operator import is_not
from typing import Generic, TypeVar

from kubelambda.api import BucketSource, Function, HttpSource, Trigger
from kubelambda.api.identity import FunctionKey
from kubelambda.api.routes import ClaimedPaths, claim_age, claim_segments, route_conflicts
from kubelambda.api.streams import KafkaSource, QueueSource
from kubelambda.gateway.routetable import CompiledRoute, RouteIndex
from kubelambda.gateway.routing import (
    BucketRoute,
    FunctionEntry,
    HttpRoute,
    RoutingTable,
    SecretResolver,
    bucket_route,
    function_entry,
    http_route,
)

__all__ = ["WHOLESALE", "TableUpdates"]

TriggerKey = tuple[str, str]  # (namespace, name)
LambdaName = tuple[str, str]  # (namespace, Lambda name)
K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
# Past this share of the HTTP Triggers changed at once, their claims are decided again all
# together rather than around each changed path (the first listing, a large apply).
WHOLESALE = 0.125


class _Objects(Generic[K, V]):
    """The objects last given, by key in this builder's order. The watch replaces an object
    that changes and keeps its place in the list it gives (a dict's values), so what changed
    is found by comparing the two lists position by position, by identity, in one C loop
    (about 0.2 ms for 15,000): only the objects that differ are looked at one by one."""

    def __init__(self, key: Callable[[V], K]) -> None:
        self.key = key
        self.by_key: dict[K, V] = {}
        self._last: list[V] = []

    def take(self, given: Sequence[V]) -> tuple[list[V], set[K]]:
        """Hold `given` (every object now, one per key): (the objects new or changed, in the
        order given; the keys gone). A changed object keeps its key's place; new keys come
        last, in the order given. Exact whatever the order given; cheapest when the lists
        line up (a change in place, additions at the end)."""
        last = self._last
        common = min(len(given), len(last))
        differ = list(compress(range(common), map(is_not, given, last)))
        if not differ and len(given) == len(last):
            return [], set()
        # An object at a position where both lists hold the same one is neither new nor
        # gone; any other object of `last` can only be gone or elsewhere among `new`.
        old = [last[i] for i in differ] + last[common:]
        new = [given[i] for i in differ] + list(given[common:])
        old_ids, new_ids = set(map(id, old)), set(map(id, new))
        added = [obj for obj in new if id(obj) not in old_ids]
        gone = {self.key(obj) for obj in old if id(obj) not in new_ids}
        for obj in added:
            key = self.key(obj)
            gone.discard(key)
            self.by_key[key] = obj
        for key in gone:
            del self.by_key[key]
        self._last = list(given)
        return added, gone


def _trigger_key(trigger: Trigger) -> TriggerKey:
    return (trigger.namespace, trigger.name)


def _function_key(function: Function) -> FunctionKey:
    return FunctionKey(function.namespace, function.name)


class TableUpdates:
    """The gateway's routing tables, each made from the one before by what changed.

    `secrets` reads apiKey routes' keys when their Trigger is new or changed; when the keys
    themselves change, `reset` and update again (every route is made anew). When more than
    `wholesale` of the HTTP Triggers changed at once, every claim is decided again.
    """

    def __init__(
        self,
        *,
        default_namespace: str = "default",
        secrets: SecretResolver | None = None,
        wholesale: float = WHOLESALE,
    ) -> None:
        self.default_namespace = default_namespace
        self.secrets = secrets
        self.wholesale = wholesale
        self.reset()

    def reset(self) -> None:
        """Forget what was given: the next update builds every part anew."""
        self._functions: _Objects[FunctionKey, Function] = _Objects(_function_key)
        self._triggers: _Objects[TriggerKey, Trigger] = _Objects(_trigger_key)
        # Each Trigger's place in the order given (new ones last), for ties as routing_table
        # breaks them: equal ranks, manifests' claims without a creation time.
        self._order: dict[TriggerKey, int] = {}
        self._next = 0
        self._claims = ClaimedPaths()
        self._paths: dict[TriggerKey, tuple[str, ...]] = {}  # each HTTP Trigger's claim
        self._routed: dict[TriggerKey, CompiledRoute[HttpRoute]] = {}
        self._refused: dict[TriggerKey, tuple[tuple[str, str, str, int], tuple[str, str]]] = {}
        self._buckets: dict[TriggerKey, BucketRoute] = {}
        self._polled: dict[TriggerKey, Trigger] = {}
        self._carriers: dict[LambdaName, set[FunctionKey]] = {}
        # The parts of the table served now; replaced, never changed, once it has them.
        self._entries: dict[FunctionKey, FunctionEntry] = {}
        self._names: dict[LambdaName, FunctionKey] = {}
        self._index: RouteIndex[HttpRoute] = RouteIndex(())
        self._bucket_routes: tuple[BucketRoute, ...] = ()
        self._refusals: tuple[tuple[str, str], ...] = ()
        self._event_sources: tuple[Trigger, ...] = ()
        self._table = self._assemble()

    @property
    def table(self) -> RoutingTable:
        return self._table

    def functions(self) -> list[Function]:
        return list(self._functions.by_key.values())

    def triggers(self) -> list[Trigger]:
        return list(self._triggers.by_key.values())

    def update(self, functions: Sequence[Function], triggers: Sequence[Trigger]) -> RoutingTable:
        """The table for every valid Function and Trigger now (one object per key; an object
        that changed is a new object): the last one when none changed."""
        try:
            added_functions, gone_functions = self._functions.take(functions)
            added_triggers, gone_triggers = self._triggers.take(triggers)
            if not (added_functions or gone_functions or added_triggers or gone_triggers):
                return self._table
            if added_functions or gone_functions:
                self._change_functions(added_functions, gone_functions)
            if added_triggers or gone_triggers:
                self._change_triggers(added_triggers, gone_triggers)
        except BaseException:
            self.reset()  # half-applied: the next update starts over
            raise
        self._table = self._assemble()
        return self._table

    def _assemble(self) -> RoutingTable:
        return RoutingTable.assembled(
            functions=self._entries,
            lambda_names=self._names,
            index=self._index,
            buckets=self._bucket_routes,
            default_namespace=self.default_namespace,
            refused=self._refusals,
            event_sources=self._event_sources,
        )

    def _change_functions(self, added: list[Function], gone: set[FunctionKey]) -> None:
        entries = dict(self._entries)  # copied: the table served now keeps its own
        names: set[LambdaName] = set()
        for key in gone:
            names |= self._carry(entries.pop(key), carried=False)
        for function in added:
            entry = function_entry(function)
            old = entries.get(entry.key)
            if old is not None:
                names |= self._carry(old, carried=False)
            entries[entry.key] = entry  # a changed Function keeps its place
            names |= self._carry(entry, carried=True)
        if names:
            # As routing._lambda_names: a name two Functions of a namespace carry names neither.
            self._names = dict(self._names)
            for name in names:
                carriers = self._carriers.get(name)
                if carriers is not None and len(carriers) == 1:
                    self._names[name] = next(iter(carriers))
                else:
                    self._names.pop(name, None)
                if not carriers:
                    self._carriers.pop(name, None)
        self._entries = entries

    def _carry(self, entry: FunctionEntry, *, carried: bool) -> set[LambdaName]:
        if entry.lambda_name is None:
            return set()
        name = (entry.key.namespace, entry.lambda_name)
        carriers = self._carriers.setdefault(name, set())
        if carried:
            carriers.add(entry.key)
        else:
            carriers.discard(entry.key)
        return {name}

    def _change_triggers(self, added: list[Trigger], gone: set[TriggerKey]) -> None:
        changed: dict[TriggerKey, Trigger | None] = dict.fromkeys(gone)
        for new in added:
            changed[_trigger_key(new)] = new
        claimed: list[tuple[str, ...]] = []
        buckets = polled = False
        removed: list[CompiledRoute[HttpRoute]] = []
        refused = False
        for key, trigger in changed.items():
            path = self._paths.pop(key, None)
            if path is not None:
                self._claims.remove(path, key)
                claimed.append(path)
            route = self._routed.pop(key, None)
            if route is not None:
                removed.append(route)
            refused |= self._refused.pop(key, None) is not None
            buckets |= self._buckets.pop(key, None) is not None
            polled |= self._polled.pop(key, None) is not None
            if trigger is None:
                del self._order[key]
                continue
            if key not in self._order:
                self._order[key] = self._next
                self._next += 1
            source = trigger.source
            if isinstance(source, HttpSource):
                path = claim_segments(source.path)
                self._claims.add(path, key)
                self._paths[key] = path
                claimed.append(path)
            elif isinstance(source, BucketSource):
                self._buckets[key] = bucket_route(trigger, source)
                buckets = True
            elif isinstance(source, QueueSource | KafkaSource):
                self._polled[key] = trigger
                polled = True
        added_routes, refused_again = self._decide(claimed, removed)
        if refused or refused_again:
            ranked = sorted(self._refused.values(), key=lambda refusal: refusal[0])
            self._refusals = tuple(why for _, why in ranked)
        if removed or added_routes:
            self._index = self._index.changed(removed=removed, added=added_routes)
        if buckets:
            self._bucket_routes = tuple(self._in_order(self._buckets))
        if polled:
            self._event_sources = tuple(self._in_order(self._polled))

    def _decide(
        self, claimed: list[tuple[str, ...]], removed: list[CompiledRoute[HttpRoute]]
    ) -> tuple[list[CompiledRoute[HttpRoute]], bool]:
        """Decide again the claims around the `claimed` paths (api.routes' rules); routes
        refused now join `removed`. Returns the routes to add, whether a refusal changed."""
        around: set[TriggerKey] = set()
        if len(claimed) > self.wholesale * len(self._paths):
            around = set(self._paths)
        else:
            for path in claimed:
                around |= self._claims.around(path)
        members = sorted(around, key=self._order.__getitem__)
        triggers = self._triggers.by_key
        losers = {
            _trigger_key(c.trigger): c.message
            for c in route_conflicts(triggers[key] for key in members)
        }
        added: list[CompiledRoute[HttpRoute]] = []
        refused = False
        for key in members:
            trigger = triggers[key]
            message = losers.get(key)
            if message is None:
                refused |= self._refused.pop(key, None) is not None
                source = trigger.source  # an HttpSource: only HTTP Triggers claim paths
                if key not in self._routed and isinstance(source, HttpSource):
                    compiled = CompiledRoute(
                        http_route(trigger, source, self.secrets), order=self._order[key]
                    )
                    self._routed[key] = compiled
                    added.append(compiled)
                continue
            route = self._routed.pop(key, None)
            if route is not None:
                removed.append(route)
            refusal = (claim_age(trigger, self._order[key]), (f"{key[0]}/{key[1]}", message))
            if self._refused.get(key) != refusal:
                self._refused[key] = refusal
                refused = True
        return added, refused

    def _in_order(self, routes: dict[TriggerKey, V]) -> Iterable[V]:
        order = self._order
        return (value for _, value in sorted(routes.items(), key=lambda item: order[item[0]]))
