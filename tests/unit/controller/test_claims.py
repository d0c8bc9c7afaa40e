"""controller/claims.RouteClaims: the controller's incremental view of route ownership gives
the same refusals as deciding all Triggers at once (api.routes, what the gateway does), and
names exactly the Triggers whose refusal changed."""

from __future__ import annotations

from kubelambda.api import HttpSource, Trigger
from kubelambda.api.routes import route_conflicts
from kubelambda.controller.claims import RouteClaims


def http(ref: str, path: str, created: str) -> Trigger:
    namespace, name = ref.split("/")
    return Trigger(
        name=name,
        namespace=namespace,
        function="fn",
        source=HttpSource(path=path),
        delivery=None,
        created=f"2026-12-0{created}T00:00:00Z",
    )


def refused(claims: RouteClaims, triggers: list[Trigger]) -> list[str]:
    return sorted(
        f"{t.namespace}/{t.name}" for t in triggers if claims.refusal(t.namespace, t.name)
    )


def test_changes_are_decided_as_the_whole_set_would_be() -> None:
    a = http("pay/a", "/payments", "1")
    b = http("other/b", "/payments/charge", "2")
    c = http("other/c", "/orders", "3")
    root = http("root/r", "/", "4")
    claims = RouteClaims()
    for t in (a, b, c):
        claims.put(t)
    assert claims.settle() == {("other", "b")}
    assert refused(claims, [a, b, c]) == ["other/b"]
    assert claims.settle() == set()  # nothing changed since

    claims.put(root)  # "/" meets every path: the youngest claim, refused
    assert claims.settle() == {("root", "r")}
    expected = sorted(
        f"{x.trigger.namespace}/{x.trigger.name}" for x in route_conflicts([a, b, c, root])
    )
    assert refused(claims, [a, b, c, root]) == expected == ["other/b", "root/r"]

    claims.remove(("pay", "a"))  # b now holds /payments/charge; "/" still meets it
    claims.remove(("root", "r"))
    assert claims.settle() == {("other", "b"), ("root", "r")}
    assert refused(claims, [b, c]) == []

    moved = http("other/b", "/orders/x", "2")  # b moves under c's path: same namespace, fine
    claims.put(moved)
    claims.put(http("pay/a", "/orders/x/y", "5"))  # another namespace below other's path
    assert claims.settle() == {("pay", "a")}
    assert claims.refusal("pay", "a") is not None
