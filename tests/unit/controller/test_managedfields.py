"""managedfields.py: what the store keeps of managedFields, and the creation entry made the
controller's apply entry."""

from __future__ import annotations

from typing import Any

import pytest

from kubelambda.controller.managedfields import (
    applied_entries,
    created_not_applied,
    slim_managed_fields,
)
from kubelambda.controller.replicas import replicas_owners
from unit.controller.reconciling import managed_entry as entry
from unit.controller.reconciling import with_managed_fields as deployment

CONTROLLER = "kubelambda-controller"
REPLICAS = {"f:spec": {"f:replicas": {}, "f:template": {}}}
OTHER = {"f:spec": {"f:template": {}}}


@pytest.mark.parametrize(
    ("entries", "created"),
    [
        ([entry(CONTROLLER, "Update", REPLICAS)], True),  # a POST's fields
        ([entry(CONTROLLER, "Apply", REPLICAS)], False),  # applied from the start
        (
            [entry(CONTROLLER, "Update", OTHER), entry(CONTROLLER, "Apply", OTHER)],
            False,
        ),
        ([entry(CONTROLLER, "Update", {}, "status")], False),  # a status write
        ([entry("kubectl", "Update", REPLICAS)], False),
        ([], False),
    ],
)
def test_the_creation_entry_is_the_controller_s_update_without_an_apply(
    entries: list[dict[str, Any]], created: bool
) -> None:
    assert created_not_applied(deployment(*entries)) is created


def test_the_creation_entry_becomes_the_apply_entry_and_nothing_else_changes() -> None:
    entries = [
        entry(CONTROLLER, "Update", REPLICAS),
        entry(CONTROLLER, "Update", {}, "status"),
        entry("kube-controller-manager", "Update", OTHER),
    ]
    assert applied_entries(entries) == [entry(CONTROLLER, "Apply", REPLICAS), *entries[1:]]
    assert not created_not_applied(deployment(*applied_entries(entries)))


@pytest.mark.parametrize(
    ("entries", "kept"),
    [
        (
            [
                entry(CONTROLLER, "Apply", OTHER),
                entry("kubectl", "Update", REPLICAS, "scale"),
            ],
            1,
        ),
        (
            [
                entry(CONTROLLER, "Update", OTHER),
                entry("kube-controller-manager", "Update", OTHER),
            ],
            1,
        ),
        ([entry(CONTROLLER, "Update", REPLICAS)], 1),  # the replicas owner is the creation
        ([entry(CONTROLLER, "Apply", OTHER)], 0),
    ],
)
def test_slimming_keeps_the_replicas_owners_and_the_creation_entry(
    entries: list[dict[str, Any]], kept: int
) -> None:
    full = deployment(*entries)
    slim = slim_managed_fields(full)
    assert replicas_owners(slim) == replicas_owners(full)
    assert created_not_applied(slim) is created_not_applied(full)
    assert len(slim["metadata"].get("managedFields", [])) == kept
    assert slim["spec"] == full["spec"]
