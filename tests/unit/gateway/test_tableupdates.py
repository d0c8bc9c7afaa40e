"""Routing tables made from the previous one (gateway/tableupdates.py): over any sequence of
Functions and Triggers added, changed and deleted, each table equals the one `routing_table`
builds from scratch, and a table already served never changes (issue 17)."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubelambda.api import Function, Trigger, parse_function, parse_trigger
from kubelambda.api.identity import FunctionKey
from kubelambda.gateway.exceptions import GatewayError, RouteNotFound
from kubelambda.gateway.routing import RoutingTable, routing_table
from kubelambda.gateway.tableupdates import WHOLESALE, TableUpdates, _Objects

NAMESPACES = ("a", "b")
FUNCTION_NAMES = ("f0", "f1", "f2")
TRIGGER_NAMES = ("t0", "t1", "t2", "t3")
PATHS = ("/", "/x", "/x/", "/x/y", "/x/z", "/y", "/y/x")
HOSTS = (None, "h.example", "g.example")
METHODS = (["ANY"], ["GET"], ["POST"], ["GET", "POST"])
CREATED = ("", "2026-01-01T00:00:00Z", "2026-01-01T00:00:01Z")
PROBES = [
    (method, path, host)
    for method in ("GET", "POST", "PUT")
    for path in ("/", "/x", "/x/y/q", "/x/z", "/y/x", "/q")
    for host in (None, "h.example:80", "G.example", "other")
]


def function(namespace: str, name: str, *, lambda_name: str | None, timeout: int) -> Function:
    annotations = {"kubelambda.dev/function-name": lambda_name} if lambda_name else {}
    return parse_function(
        {
            "apiVersion": "kubelambda.dev/v1alpha1",
            "kind": "Function",
            "metadata": {"name": name, "namespace": namespace, "annotations": annotations},
            "spec": {
                "runtime": "python3.12",
                "handler": "app.handler",
                "timeoutSeconds": timeout,
                "code": {"inline": {"files": {"app.py": "def handler(e, c): return e"}}},
            },
        }
    )


def trigger(namespace: str, name: str, *, source: dict[str, Any], created: str, to: str) -> Trigger:
    metadata = {"name": name, "namespace": namespace}
    if created:
        metadata["creationTimestamp"] = created
    return parse_trigger(
        {
            "apiVersion": "kubelambda.dev/v1alpha1",
            "kind": "Trigger",
            "metadata": metadata,
            "spec": {"function": to, **source},
        }
    )


http_sources = st.builds(
    lambda path, host, methods: {
        "http": {
            "path": path,
            "methods": methods,
            "auth": {"type": "none"},
            **({"host": host} if host else {}),
        }
    },
    st.sampled_from(PATHS),
    st.sampled_from(HOSTS),
    st.sampled_from(METHODS),
)
other_sources = st.sampled_from(
    [
        {"bucket": {"bucket": "photos", "prefix": "in/"}},
        {"bucket": {"bucket": "docs"}},
        {"queue": {"stream": "ORDERS"}},
    ]
)
functions = st.builds(
    function,
    st.sampled_from(NAMESPACES),
    st.sampled_from(FUNCTION_NAMES),
    lambda_name=st.sampled_from([None, "Shared", "Other"]),
    timeout=st.integers(1, 3),
)
triggers = st.builds(
    trigger,
    st.sampled_from(NAMESPACES),
    st.sampled_from(TRIGGER_NAMES),
    source=http_sources | other_sources,
    created=st.sampled_from(CREATED),
    to=st.sampled_from(FUNCTION_NAMES),
)
# A change: put a Function or Trigger (new or changed), or delete one by key.
changes = st.one_of(
    functions,
    triggers,
    st.tuples(st.just("function"), st.sampled_from(NAMESPACES), st.sampled_from(FUNCTION_NAMES)),
    st.tuples(st.just("trigger"), st.sampled_from(NAMESPACES), st.sampled_from(TRIGGER_NAMES)),
)


def snapshot(table: RoutingTable) -> dict[str, object]:
    """Everything a table answers, order included."""
    matched: list[object] = []
    for method, path, host in PROBES:
        try:
            found = table.match(method=method, path=path, host=host)
            matched.append((found.route, found.function, found.route_key))
        except GatewayError as exc:
            matched.append((type(exc).__name__, str(exc)))
    resolved: list[object] = []
    for name in ("a.Shared", "b.Shared", "a.Other", "a.f0", "b.f2"):
        try:
            resolved.append(table.resolve(name).key)
        except GatewayError as exc:
            resolved.append(type(exc).__name__)
    return {
        "functions": [(key, entry, entry.spec) for key, entry in table.functions.items()],
        "routes": table.routes,
        "buckets": table.buckets,
        "refused": table.refused,
        "event_sources": table.event_sources,
        "matched": matched,
        "resolved": resolved,
    }


def apply(change: object, fns: dict[FunctionKey, Function], trigs: dict[Any, Trigger]) -> None:
    """As the gateway's watch keeps them: a dict updated in place."""
    if isinstance(change, Function):
        fns[FunctionKey(change.namespace, change.name)] = change
    elif isinstance(change, Trigger):
        trigs[change.namespace, change.name] = change
    elif isinstance(change, tuple) and change[0] == "function":
        fns.pop(FunctionKey(change[1], change[2]), None)
    elif isinstance(change, tuple):
        trigs.pop((change[1], change[2]), None)


def key_of(change: object) -> tuple[str, str, str]:
    if isinstance(change, Function):
        return ("function", change.namespace, change.name)
    if isinstance(change, Trigger):
        return ("trigger", change.namespace, change.name)
    assert isinstance(change, tuple)
    return change


# Claims decided around each changed path, and (the default, past a share of them) all again.
@pytest.mark.parametrize("wholesale", [math.inf, WHOLESALE])
@settings(max_examples=300, deadline=None)
@given(batches=st.lists(st.lists(changes, min_size=1, max_size=4), min_size=1, max_size=12))
def test_each_table_equals_one_built_from_scratch(
    wholesale: float, batches: list[list[object]]
) -> None:
    updates = TableUpdates(default_namespace="a", wholesale=wholesale)
    fns: dict[FunctionKey, Function] = {}
    trigs: dict[Any, Trigger] = {}
    served: list[tuple[RoutingTable, dict[str, object]]] = []
    for batch in batches:
        # Changes that arrive together touch distinct objects (the watch keeps the last).
        for change in {key_of(change): change for change in batch}.values():
            apply(change, fns, trigs)
        table = updates.update(list(fns.values()), list(trigs.values()))
        expected = routing_table(fns.values(), trigs.values(), default_namespace="a")
        assert snapshot(table) == snapshot(expected)
        served.append((table, snapshot(table)))
    for table, seen in served:  # later updates left every table served as it was
        assert snapshot(table) == seen


def test_nothing_changed_keeps_the_table() -> None:
    updates = TableUpdates()
    fns = [function("a", "f0", lambda_name=None, timeout=3)]
    source = {"http": {"path": "/x", "auth": {"type": "none"}}}
    trigs = [trigger("a", "t0", source=source, created="", to="f0")]
    first = updates.update(fns, trigs)
    assert updates.update(list(fns), list(trigs)) is first


def http(name: str, path: str, *, host: str | None = None, auth: str = "none") -> Trigger:
    source: dict[str, Any] = {"path": path, "auth": {"type": auth}}
    if host:
        source["host"] = host
    if auth == "apiKey":
        source["auth"]["secretRef"] = {"name": "keys", "key": name}
    return trigger("a", name, source={"http": source}, created="", to="f0")


def test_a_change_shares_the_paths_and_hosts_it_does_not_touch() -> None:
    updates = TableUpdates()
    fns = [function("a", "f0", lambda_name=None, timeout=3)]
    trigs = {n: http(f"t{n}", f"/p{n}") for n in range(3)}
    trigs[3] = http("t3", "/q", host="h.example")
    before = updates.update(fns, list(trigs.values()))
    trigs[1] = http("t1", "/moved")
    after = updates.update(fns, list(trigs.values()))
    old_hosts, new_hosts = before._index._hosts, after._index._hosts
    assert old_hosts["h.example"] is new_hosts["h.example"]  # untouched host: shared
    assert old_hosts[""].by_path[("p0",)] is new_hosts[""].by_path[("p0",)]
    assert after.functions is before.functions  # no Function changed
    # The table served before the change still routes as it did: requests finish with it.
    assert before.match(method="GET", path="/p1", host=None).route.trigger == "a/t1"
    with pytest.raises(RouteNotFound):
        before.match(method="GET", path="/moved", host=None)
    assert after.match(method="GET", path="/moved", host=None).route.trigger == "a/t1"
    with pytest.raises(RouteNotFound):
        after.match(method="GET", path="/p1", host=None)


def test_api_keys_are_read_for_changed_triggers_and_all_again_after_a_reset() -> None:
    keys = {"t0": "k0", "t1": "k1"}
    read: list[str] = []

    def secrets(namespace: str, name: str, key: str) -> str | None:
        read.append(key)
        return keys[key]

    updates = TableUpdates(secrets=secrets)
    fns = [function("a", "f0", lambda_name=None, timeout=3)]
    trigs = [http("t0", "/a", auth="apiKey"), http("t1", "/b", auth="apiKey")]
    updates.update(fns, trigs)
    assert sorted(read) == ["t0", "t1"]
    keys.update(t0="new0", t1="new1")
    trigs[1] = http("t1", "/b", auth="apiKey")
    table = updates.update(fns, trigs)
    assert read[2:] == ["t1"]  # only the changed Trigger's key is read
    assert [r.api_keys for r in table.routes] == [frozenset({"k0"}), frozenset({"new1"})]
    updates.reset()
    table = updates.update(fns, trigs)
    assert [r.api_keys for r in table.routes] == [frozenset({"new0"}), frozenset({"new1"})]
    assert snapshot(table) == snapshot(routing_table(fns, trigs, secrets=secrets))


def test_an_update_that_fails_leaves_the_next_to_start_over() -> None:
    updates = TableUpdates()
    fns = [function("a", "f0", lambda_name=None, timeout=3)]
    good = [http("t0", "/a")]
    updates.update(fns, good)

    def failing(namespace: str, name: str, key: str) -> str | None:
        raise RuntimeError("the resolver broke")

    updates.secrets = failing
    with pytest.raises(RuntimeError):
        updates.update(fns, [*good, http("t1", "/b", auth="apiKey")])
    updates.secrets = None
    trigs = [*good, http("t1", "/b")]
    assert snapshot(updates.update(fns, trigs)) == snapshot(routing_table(fns, trigs))


class Obj:
    """An object of the watch: a key, and a new object for each change."""

    def __init__(self, key: int) -> None:
        self.key = key


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.permutations(range(8)).flatmap(
            lambda keys: st.tuples(st.just(keys), st.integers(0, 8), st.sets(st.integers(0, 7)))
        ),
        max_size=8,
    )
)
def test_what_changed_is_found_whatever_the_order_given(
    steps: list[tuple[list[int], int, set[int]]],
) -> None:
    # Lists in any order, of any length, some objects replaced: the changes are exactly the
    # objects not given last time and the keys no longer given.
    objects = _Objects[int, Obj](lambda obj: obj.key)
    held: dict[int, Obj] = {}
    for keys, count, replaced in steps:
        given = [
            Obj(key) if key in replaced or key not in held else held[key] for key in keys[:count]
        ]
        added, gone = objects.take(given)
        assert {id(obj) for obj in added} == {id(obj) for obj in given} - {
            id(obj) for obj in held.values()
        }
        assert [obj.key for obj in added] == [
            obj.key for obj in given if held.get(obj.key) is not obj
        ]
        assert gone == held.keys() - set(keys[:count])
        held = {obj.key: obj for obj in given}
        assert objects.by_key == held
