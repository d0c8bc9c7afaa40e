"""spec.reservedConcurrency and spec.throttling: parsed, defaulted, bounded, and capping the
pods the autoscaler may run (ceil(reservedConcurrency / concurrency))."""

from __future__ import annotations

from typing import Any

import pytest

from kubelambda.api import SpecError, parse_function
from kubelambda.api.function import Function
from kubelambda.api.limits import Throttling, pods_for
from kubelambda.autoscaler.decider import ScalingSpec


def function(**spec: Any) -> Function:
    return parse_function(
        {
            "apiVersion": "kubelambda.dev/v1alpha1",
            "kind": "Function",
            "metadata": {"name": "fn"},
            "spec": {"image": "example.com/fn:1", **spec},
        }
    )


def problems(**spec: Any) -> dict[str, str]:
    with pytest.raises(SpecError) as caught:
        function(**spec)
    return {p.path: p.message for p in caught.value.problems}


def test_unset_means_no_limits() -> None:
    parsed = function()
    assert parsed.reserved_concurrency is None
    assert parsed.throttling is None
    assert parsed.scaling.max_replicas == 10


def test_throttling_burst_defaults_to_one_seconds_worth() -> None:
    assert function(throttling={"rateLimit": 7}).throttling == Throttling(
        rate_limit=7, burst_limit=7
    )
    assert function(throttling={"rateLimit": 7, "burstLimit": 20}).throttling == Throttling(
        rate_limit=7, burst_limit=20
    )


@pytest.mark.parametrize(
    ("reserved", "concurrency", "max_replicas", "pods"),
    [
        (0, 1, 10, 0),  # throttled entirely: no pod at all
        (5, 1, 10, 5),
        (5, 2, 10, 3),  # ceil(5 / 2)
        (8, 4, 10, 2),
        (100, 1, 10, 10),  # maxReplicas is the lower cap
    ],
)
def test_reserved_concurrency_caps_the_pods(
    reserved: int, concurrency: int, max_replicas: int, pods: int
) -> None:
    parsed = function(
        reservedConcurrency=reserved,
        concurrency=concurrency,
        scaling={"maxReplicas": max_replicas},
    )
    assert parsed.reserved_concurrency == reserved
    assert parsed.scaling.max_replicas == pods


@pytest.mark.parametrize(
    ("spec", "field", "phrase"),
    [
        ({"reservedConcurrency": -1}, "spec.reservedConcurrency", "at least 0"),
        ({"reservedConcurrency": "5"}, "spec.reservedConcurrency", "integer"),
        ({"throttling": {}}, "spec.throttling.rateLimit", ""),
        ({"throttling": {"rateLimit": 0}}, "spec.throttling.rateLimit", "at least 1"),
        ({"throttling": {"rateLimit": 1, "burstLimit": 0}}, "spec.throttling.burstLimit", ""),
        ({"throttling": {"rateLimit": 1, "burst": 3}}, "spec.throttling.burst", "burstLimit"),
        (
            {"reservedConcurrency": 4, "concurrency": 2, "scaling": {"minReplicas": 3}},
            "spec.scaling.minReplicas",
            "must not exceed the 2 pods spec.reservedConcurrency (4) can keep busy",
        ),
    ],
)
def test_refused_naming_the_field(spec: dict[str, Any], field: str, phrase: str) -> None:
    found = problems(**spec)
    assert field in found, found
    assert phrase in found[field]


@pytest.mark.parametrize(
    ("reserved", "concurrency", "pods"), [(0, 1, 0), (1, 4, 1), (4, 4, 1), (5, 4, 2)]
)
def test_pods_for_rounds_up(reserved: int, concurrency: int, pods: int) -> None:
    assert pods_for(reserved, concurrency) == pods


def test_warm_pods_within_the_reservation_are_fine() -> None:
    parsed = function(reservedConcurrency=3, concurrency=2, scaling={"minReplicas": 2})
    assert (parsed.scaling.min_replicas, parsed.scaling.max_replicas) == (2, 2)


def test_the_autoscaler_reads_the_capped_bound() -> None:
    spec = ScalingSpec.of(function(reservedConcurrency=3, concurrency=2))
    assert spec.max_replicas == 2  # ceil(3 / 2), not the default maxReplicas 10
