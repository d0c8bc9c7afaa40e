"""store.Store: the operator's copies of watched objects, which an older copy never replaces,
whichever feed (watch event or the answer to a write) brings it last."""

from __future__ import annotations

from typing import Any

import pytest

from kubelambda.controller.store import Store, newer
from kubelambda.kube.kinds import DEPLOYMENT, FUNCTION


def function(version: str | None, *, reason: str = "ScaledToZero") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "hello", "namespace": "team-a"}
    if version is not None:
        meta["resourceVersion"] = version
    return {
        "apiVersion": "kubelambda.dev/v1alpha1",
        "kind": "Function",
        "metadata": meta,
        "status": {"conditions": [{"type": "Ready", "reason": reason}]},
    }


@pytest.mark.parametrize(
    ("version", "than", "expected"),
    [
        ("802", "795", True),
        ("795", "802", False),
        ("795", "795", False),
        ("1000", "999", True),  # as numbers, not as text
        ("999", "1000", False),
        ("123456789012345678901234567890", "9", True),  # any length (KEP-5504)
        ("0802", "795", False),  # leading zero: not a comparable version
        ("abc", "1", False),
        ("2", "", False),
        ("2", None, False),
        (None, "1", False),
        ("²", "1", False),  # a digit to str.isdigit, not to the API server
    ],
)
def test_newer_compares_resource_versions_as_the_api_server_defines_them(
    version: str | None, than: str | None, expected: bool
) -> None:
    assert newer(version, than) is expected


def test_an_older_copy_does_not_replace_a_newer_one() -> None:
    store = Store()
    store.put(FUNCTION, function("10", reason="Available"))

    # The answer to a write that a watch event of a later change overtook.
    kept = store.put(FUNCTION, function("9", reason="Waking"))

    assert kept["status"]["conditions"][0]["reason"] == "Available"
    stored = store.get(FUNCTION, namespace="team-a", name="hello")
    assert stored is not None and stored["metadata"]["resourceVersion"] == "10"


def test_a_newer_copy_replaces_an_older_one() -> None:
    store = Store()
    store.put(FUNCTION, function("9"))
    kept = store.put(FUNCTION, function("10", reason="Available"))
    assert kept["status"]["conditions"][0]["reason"] == "Available"
    assert store.holds(FUNCTION, function("10"))


@pytest.mark.parametrize(
    ("event", "held"),
    [
        ("10", True),  # the echo of what the store has
        ("9", True),  # overtaken by the answer to a later write
        ("11", False),
        (None, False),
        ("not-a-number", False),
    ],
)
def test_holds_an_event_at_the_stored_version_or_older(event: str | None, held: bool) -> None:
    store = Store()
    store.put(FUNCTION, function("10"))
    assert store.holds(FUNCTION, function(event)) is held


def test_versions_that_do_not_compare_leave_the_last_copy() -> None:
    store = Store()
    store.put(FUNCTION, function("b", reason="Available"))
    store.put(FUNCTION, function("a", reason="Waking"))
    stored = store.get(FUNCTION, namespace="team-a", name="hello")
    assert stored is not None and stored["status"]["conditions"][0]["reason"] == "Waking"


def test_a_kept_deployment_returns_slimmed_like_a_put_one() -> None:
    def deployment(version: str, replicas: int) -> dict[str, Any]:
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": "hello",
                "namespace": "team-a",
                "resourceVersion": version,
                "managedFields": [
                    {"manager": "kubectl", "operation": "Update", "fieldsV1": {"f:spec": {}}}
                ],
            },
            "spec": {"replicas": replicas},
        }

    store = Store()
    first = store.put(DEPLOYMENT, deployment("7", 2))
    kept = store.put(DEPLOYMENT, deployment("6", 1))
    assert kept == first
    assert kept["spec"]["replicas"] == 2 and kept["metadata"]["managedFields"] == []
