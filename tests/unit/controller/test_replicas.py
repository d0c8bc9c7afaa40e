"""replicas.py: reading who owns spec.replicas from managedFields, and when to hand it over."""

from __future__ import annotations

from typing import Any

import pytest

from kubelambda.controller.replicas import needs_handover, replicas_claim
from unit.controller.reconciling import managed_entry as entry
from unit.controller.reconciling import with_managed_fields as deployment

REPLICAS = {"f:spec": {"f:replicas": {}, "f:template": {}}}
OTHER = {"f:spec": {"f:template": {}}}


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
