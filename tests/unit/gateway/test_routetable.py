"""`RouteIndex.changed` (gateway/routetable.py): the next index, made from this one by adding
and removing routes, equals one built from scratch over the routes that are left, in their
order, and leaves this one as it was (issue 17)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from kubelambda.api.identity import FunctionKey
from kubelambda.gateway.routetable import CompiledRoute, RouteIndex
from kubelambda.gateway.routing import HttpRoute

# Overlapping routes on purpose: the index keeps them all (conflicts are settled before it).
routes = st.builds(
    HttpRoute,
    function=st.sampled_from([FunctionKey("a", "f"), FunctionKey("b", "g")]),
    path=st.sampled_from(["/", "/x", "/x/", "/x/y", "/x/y/z", "/y"]),
    methods=st.sampled_from([frozenset(), frozenset({"GET"}), frozenset({"GET", "POST"})]),
    host=st.sampled_from([None, "h.example"]),
)
REQUESTS = [
    (path, host)
    for path in ([], ["x"], ["x", "y"], ["x", "y", "z", "w"], ["y"], ["q"])
    for host in ("", "h.example", "other")
]


def answers(index: RouteIndex[HttpRoute]) -> object:
    """What an index answers: every route in order, each request's candidates, the depths."""
    return (
        [(c.route, c.rank) for c in index.ordered],
        [[c.route for c in index.candidates(path, host)] for path, host in REQUESTS],
        {host: paths.depth for host, paths in index._hosts.items()},
    )


@settings(max_examples=300, deadline=None)
@given(
    first=st.lists(routes, max_size=8),
    steps=st.lists(
        st.tuples(st.sets(st.integers(0, 20)), st.lists(routes, max_size=3)), max_size=6
    ),
)
def test_a_changed_index_equals_one_built_from_scratch(
    first: list[HttpRoute], steps: list[tuple[set[int], list[HttpRoute]]]
) -> None:
    index = RouteIndex(first)
    held = sorted(index.ordered, key=lambda c: c.order)
    given = len(first)
    seen = []
    for drop, add in steps:
        removed = [c for n, c in enumerate(held) if n in drop]
        added = [CompiledRoute(route, order=given + n) for n, route in enumerate(add)]
        given += len(add)
        before = answers(index)
        index_after = index.changed(removed=removed, added=added)
        assert answers(index) == before  # the old index is left as it was
        held = [c for c in held if all(c is not r for r in removed)] + added
        index = index_after
        assert answers(index) == answers(RouteIndex(c.route for c in held))
        seen.append((index, answers(index)))
    for old, then in seen:
        assert answers(old) == then
