"""The chart's warm pool values: off (the default) renders no pool flag and no right to change
pods; on, the operator gets its flags and, where it is bound, rights to read, relabel and delete
pods and to create the pool's token Secret."""

from __future__ import annotations

from typing import Any

import pytest

from integration.chart.test_render import find, render

POOL_FLAGS = (
    "--warm-pool-size",
    "--warm-pool-runtimes",
    "--warm-pool-memory",
    "--operator-selector",
)


def operator_args(docs: list[dict[str, Any]]) -> list[str]:
    deployment = find(docs, "Deployment", "kubelambda-operator")
    return list(deployment["spec"]["template"]["spec"]["containers"][0]["args"])


def rules_on(
    docs: list[dict[str, Any]],
    resource: str,
    names: tuple[str, ...] = ("kubelambda-operator", "kubelambda-operator-pool"),
) -> list[dict[str, Any]]:
    roles = [
        doc for doc in docs if doc["kind"] == "ClusterRole" and doc["metadata"]["name"] in names
    ]
    return [rule for role in roles for rule in role["rules"] if resource in rule["resources"]]


def pool_bindings(docs: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    """(kind, namespace) of every binding of the pool's rights."""
    return [
        (doc["kind"], doc["metadata"].get("namespace"))
        for doc in docs
        if doc["kind"] in ("RoleBinding", "ClusterRoleBinding")
        and doc["roleRef"]["name"] == "kubelambda-operator-pool"
    ]


def test_without_a_pool_the_operator_gets_no_flag_and_no_right_to_change_pods() -> None:
    docs = render()
    assert not [arg for arg in operator_args(docs) if arg.startswith(POOL_FLAGS)]
    # Reading one by name only, to verify announcements (operator.announce, test_render.py).
    assert [rule["verbs"] for rule in rules_on(docs, "pods")] == [["get"]]
    assert rules_on(render("operator.announce=false"), "pods") == []
    # Creating Secrets: each Function's announcement key (docs/contracts.md "Announcements").
    assert [rule["verbs"] for rule in rules_on(docs, "secrets")] == [["get", "create"]]
    quiet = render("operator.announce=false")
    assert [rule["verbs"] for rule in rules_on(quiet, "secrets")] == [["get"]]


def test_a_pool_gives_the_operator_its_flags_and_rights_on_pods() -> None:
    docs = render(
        "warmPool.size=2",
        "warmPool.runtimes={python3.12,python3.13}",
        "warmPool.memoryMB=256",
        "functionNamespaces={team-a}",
    )
    args = operator_args(docs)
    assert "--warm-pool-size=2" in args
    assert "--warm-pool-runtimes=python3.12,python3.13" in args
    assert "--warm-pool-memory=256" in args
    assert (
        "--operator-selector=app.kubernetes.io/name=kubelambda,app.kubernetes.io/instance=kubelambda,"
        "app.kubernetes.io/component=operator"
    ) in args
    [pods] = rules_on(docs, "pods", ("kubelambda-operator-pool",))
    assert pods["apiGroups"] == [""]
    assert sorted(pods["verbs"]) == ["delete", "get", "list", "patch", "watch"]
    # The pool's token (its own role) and each Function's announcement key.
    assert sorted(verb for rule in rules_on(docs, "secrets") for verb in rule["verbs"]) == [
        "create",
        "create",
        "get",
    ]
    # Bound in the function namespaces only, as the rest of the operator's rights.
    binding = find(docs, "RoleBinding", "kubelambda-operator")
    assert binding["metadata"]["namespace"] == "team-a"
    assert pool_bindings(docs) == [("RoleBinding", "team-a")]
    # The operator's pods carry the labels the pool's NetworkPolicy admits.
    operator = find(docs, "Deployment", "kubelambda-operator")
    labels = operator["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/instance"] == "kubelambda"
    assert labels["app.kubernetes.io/component"] == "operator"


@pytest.mark.parametrize(
    ("values", "named", "bindings"),
    [
        # Opted in by namespace: rights on pods there alone, whatever else the operator serves.
        (
            ("warmPool.namespaces={warm,team-b}",),
            ["warm", "team-b"],
            [("RoleBinding", "warm"), ("RoleBinding", "team-b")],
        ),
        (
            ("warmPool.namespaces={warm}", "functionNamespaces={warm,team-a}"),
            ["warm"],
            [("RoleBinding", "warm")],
        ),
        # None named: the operator's own namespaces; serving every one, bound cluster-wide.
        (("functionNamespaces={team-a}",), [], [("RoleBinding", "team-a")]),
        ((), [], [("ClusterRoleBinding", None)]),
    ],
)
def test_the_pools_namespaces_bound_its_rights_on_pods(
    values: tuple[str, ...], named: list[str], bindings: list[tuple[str, str | None]]
) -> None:
    docs = render("warmPool.size=1", *values)
    assert pool_bindings(docs) == bindings
    flags = [arg for arg in operator_args(docs) if arg.startswith("--warm-pool-namespace=")]
    assert flags == [f"--warm-pool-namespace={namespace}" for namespace in named]
