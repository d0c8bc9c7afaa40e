"""replicas.py: reading who owns spec.replicas from managedFields, and when to hand it over."""

from __future__ import annotations

from typing import Any

import pytest

from kubelambda.controller.replicas import (
    needs_handover,
    replicas_claim,
    replicas_owners,
    slim_managed_fields,
)

REPLICAS = {"f:spec": {"f:replicas": {}, "f:template": {}}}
OTHER = {"f:spec": {"f:template": {}}}


def entry(
    manager: str, operation: str, fields: dict[str, Any], subresource: str | None = None
) -> dict[str, Any]:
    found: dict[str, Any] = {"manager": manager, "operation": operation, "fieldsV1": fields}
    if subresource:
        found["subresource"] = subresource
    return found


def deployment(*entries: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {"name": "hello", "namespace": "ns", "managedFields": list(entries)},
        "spec": {"replicas": 3},
    }


@pytest.mark.parametrize(
    ("entries", "handover"),
    [
        ([entry("kubelambda-controller", "Apply", REPLICAS)], True),
        (
            [
                entry("kubelambda-controller", "Apply", REPLICAS),
                entry("kubelambda-initial-replicas", "Apply", {"f:spec": {"f:replicas": {}}}),
            ],
            False,
        ),
        (
            [
                entry("kubelambda-controller", "Apply", OTHER),
                entry("kubelambda-autoscaler", "Update", {"f:spec": {"f:replicas": {}}}, "scale"),
            ],
            False,
        ),
        ([entry("kubelambda-controller", "Apply", OTHER)], False),
        ([], False),
    ],
    ids=["only ours", "shared", "autoscaler took it", "nobody", "no managedFields"],
)
def test_handover_only_when_the_controller_alone_owns_replicas(
    entries: list[dict[str, Any]], handover: bool
) -> None:
    assert needs_handover(deployment(*entries)) is handover


def test_the_claim_keeps_the_current_value() -> None:
    assert replicas_claim(deployment()) == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "hello", "namespace": "ns"},
        "spec": {"replicas": 3},
    }


def test_slimming_keeps_the_owners_and_drops_the_rest() -> None:
    full = deployment(
        entry("kubelambda-controller", "Apply", OTHER),
        entry("kubectl", "Update", {"f:spec": {"f:replicas": {}}}, "scale"),
    )
    slim = slim_managed_fields(full)
    assert replicas_owners(slim) == replicas_owners(full) == {("kubectl", "Update")}
    assert len(slim["metadata"]["managedFields"]) == 1
