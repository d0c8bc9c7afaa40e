"""api/routes.py: a path and the paths below it belong to one namespace, the oldest claim's;
within a namespace two Triggers may not route the same host, path and methods."""

from __future__ import annotations

import pytest

from kubelambda.api import HttpSource, Trigger
from kubelambda.api.routes import ClaimedPaths, claim_segments, route_conflicts
from kubelambda.gateway.routing import routing_table


def http(
    ref: str,
    path: str,
    *,
    created: str = "",
    host: str | None = None,
    methods: tuple[str, ...] = ("ANY",),
) -> Trigger:
    namespace, name = ref.split("/")
    return Trigger(
        name=name,
        namespace=namespace,
        function="fn",
        source=HttpSource(path=path, methods=methods, host=host),
        delivery=None,
        created=created,
    )


def refused(*triggers: Trigger) -> list[str]:
    return [f"{c.trigger.namespace}/{c.trigger.name}" for c in route_conflicts(triggers)]


@pytest.mark.parametrize(
    ("triggers", "losers"),
    [
        # another namespace below, on, or above a path that is taken
        ([http("pay/a", "/payments"), http("other/b", "/payments/charge")], ["other/b"]),
        ([http("other/b", "/payments/charge"), http("pay/a", "/payments")], ["pay/a"]),
        ([http("pay/a", "/payments"), http("other/b", "/payments")], ["other/b"]),
        ([http("pay/a", "/"), http("other/b", "/anything")], ["other/b"]),
        # siblings, whole segments, other hosts: no overlap
        ([http("pay/a", "/payments"), http("other/b", "/pay")], []),
        ([http("pay/a", "/payments"), http("other/b", "/payments-v2")], []),
        ([http("pay/a", "/p", host="a.example"), http("other/b", "/p", host="b.example")], []),
        # a route for every host overlaps a host's own
        ([http("pay/a", "/p"), http("other/b", "/p/q", host="b.example")], ["other/b"]),
        # the oldest claim wins, whatever the input order
        (
            [
                http("other/b", "/payments", created="2026-12-04T10:00:00Z"),
                http("pay/a", "/payments", created="2026-12-01T10:00:00Z"),
            ],
            ["other/b"],
        ),
        # created in the same second: namespace/name decides, so every process agrees
        (
            [
                http("zed/b", "/payments", created="2026-12-04T10:00:00Z"),
                http("abc/a", "/payments", created="2026-12-04T10:00:00Z"),
            ],
            ["zed/b"],
        ),
        # one namespace: paths below its own are fine; the same route twice is not
        ([http("pay/a", "/payments"), http("pay/b", "/payments/charge")], []),
        ([http("pay/a", "/payments"), http("pay/b", "/payments")], ["pay/b"]),
        (
            [
                http("pay/a", "/orders", methods=("GET",)),
                http("pay/b", "/orders", methods=("POST",)),
            ],
            [],
        ),
        (
            [http("pay/a", "/orders", methods=("GET",)), http("pay/b", "/orders")],
            ["pay/b"],
        ),
        ([http("pay/a", "/o", host="a.example"), http("pay/b", "/o")], []),
    ],
)
def test_who_owns_a_path(triggers: list[Trigger], losers: list[str]) -> None:
    assert refused(*triggers) == losers


def test_the_refusal_names_the_owner_and_the_rule() -> None:
    [conflict] = route_conflicts([http("pay/a", "/payments"), http("other/b", "/payments/x")])
    assert conflict.owner.name == "a"
    assert "belongs to namespace pay (Trigger pay/a, the older claim)" in conflict.message


def test_the_routing_table_never_sends_one_namespaces_path_to_another() -> None:
    table = routing_table([], [http("other/b", "/payments/charge"), http("pay/a", "/payments")])
    assert [route.trigger for route in table.routes] == ["other/b"]
    assert [name for name, _ in table.refused] == ["pay/a"]


def _claimed(*claims: tuple[str, str]) -> ClaimedPaths:
    tree = ClaimedPaths()
    for path, name in claims:
        tree.add(claim_segments(path), ("ns", name))
    return tree


@pytest.mark.parametrize(
    ("claims", "path", "around"),
    [
        # the shortest claimed path at or above decides what is around: all below it
        ([("/a", "a"), ("/a/b", "ab"), ("/a/c/d", "acd"), ("/e", "e")], "/a/b", {"a", "ab", "acd"}),
        # nothing claimed above: the claims on and below the path
        ([("/a/b", "ab"), ("/a/b/c", "abc"), ("/a/c", "ac")], "/a/b", {"ab", "abc"}),
        ([("/a/b", "ab"), ("/a/c", "ac")], "/a", {"ab", "ac"}),
        # the root's claim meets every path
        ([("/", "root"), ("/a", "a"), ("/e/f", "ef")], "/a", {"root", "a", "ef"}),
        ([("/a", "a")], "/b/c", set()),
        ([("/a%2Fb/", "ab")], "/a%2fb/c", {"ab"}),
    ],
)
def test_the_claims_around_a_path(
    claims: list[tuple[str, str]], path: str, around: set[str]
) -> None:
    found = _claimed(*claims).around(claim_segments(path))
    assert found == {("ns", name) for name in around}


def test_a_removed_claim_leaves_no_empty_path_behind() -> None:
    tree = _claimed(("/a/b/c", "abc"), ("/a", "a"))
    tree.remove(claim_segments("/a/b/c"), ("ns", "abc"))
    tree.remove(claim_segments("/a"), ("ns", "a"))
    tree.remove(claim_segments("/never/claimed"), ("ns", "x"))
    assert tree.around(()) == set()
    assert tree._below == {}
