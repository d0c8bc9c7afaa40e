"""The console's arithmetic: Prometheus's histogram_quantile, the words for a function's way
to zero, and an invocation's lines picked out of a log."""

from __future__ import annotations

import math

import pytest

from kubelambda.api.identity import FunctionKey
from kubelambda.console.figures import (
    Figures,
    FunctionState,
    invocations_of,
    path_to_zero,
    quantile,
)

INF = math.inf


@pytest.mark.parametrize(
    ("q", "buckets", "expected"),
    [
        # 10 observations, all in (0.1, 0.5]: linear within the bucket, as Prometheus does.
        (0.5, [(0.1, 0), (0.5, 10), (INF, 10)], 0.3),
        (0.99, [(0.1, 0), (0.5, 10), (INF, 10)], 0.496),
        # The first bucket interpolates from 0.
        (0.5, [(0.1, 4), (INF, 4)], 0.05),
        # Falling into +Inf: the highest finite bound.
        (0.99, [(0.1, 1), (1.0, 1), (INF, 10)], 1.0),
        # Nothing observed, or no buckets: unknown.
        (0.5, [(0.1, 0), (INF, 0)], None),
        (0.5, [], None),
    ],
)
def test_quantile_is_prometheus_histogram_quantile(
    q: float, buckets: list[tuple[float, float]], expected: float | None
) -> None:
    found = quantile(q, buckets)
    if expected is None:
        assert found is None
    else:
        assert found == pytest.approx(expected)


def _state(**changes: object) -> FunctionState:
    values: dict[str, object] = {
        "key": FunctionKey("default", "hello"),
        "desired": 1,
        "ready": 1,
        "min_replicas": 0,
        "max_replicas": 5,
        "scale_to_zero_after_seconds": 30.0,
        "idle_seconds": None,
    }
    values.update(changes)
    return FunctionState(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("state", "figures", "words"),
    [
        (_state(min_replicas=2), Figures(), "kept at 2 or more (minReplicas)"),
        (_state(desired=0, ready=0), Figures(), "at zero: the next request starts an instance"),
        (_state(idle_seconds=1.0), Figures(in_flight=1), "busy: scales to zero once idle"),
        (_state(idle_seconds=1.0), Figures(held=2), "busy: scales to zero once idle"),
        (_state(idle_seconds=12.4), Figures(), "idle 12s: to zero in 18s"),
        (_state(idle_seconds=31.0), Figures(), "idle: scaling to zero"),
        (_state(), Figures(), "to zero after 30s without requests"),
    ],
)
def test_path_to_zero_in_words(state: FunctionState, figures: Figures, words: str) -> None:
    assert path_to_zero(state, figures) == words


LOG = [
    "init line of the instance",
    "START RequestId: a Version: $LATEST",
    "[INFO]\t2026-01-01T00:00:00Z\ta\tfirst",
    "END RequestId: a",
    "REPORT RequestId: a\tDuration: 1.00 ms",
    "START RequestId: b Version: $LATEST",
    "[INFO]\t2026-01-01T00:00:01Z\tb\tsecond",
    "END RequestId: b",
    "REPORT RequestId: b\tDuration: 2.00 ms",
    "START RequestId: c Version: $LATEST",
    "still running",
]


def test_invocations_are_the_latest_first_each_from_start_to_report() -> None:
    found = invocations_of(LOG, last=2)
    assert [i.request_id for i in found] == ["c", "b"]
    assert found[0].lines == ["START RequestId: c Version: $LATEST", "still running"]
    assert found[0].report == ""
    assert found[1].lines == LOG[5:9]
    assert found[1].report == "REPORT RequestId: b\tDuration: 2.00 ms"


def test_lines_before_the_first_start_and_ends_of_unseen_starts_are_left_out() -> None:
    found = invocations_of(["END RequestId: z", "REPORT RequestId: z", *LOG[:5]], last=5)
    assert [(i.request_id, i.lines) for i in found] == [("a", LOG[1:5])]
    assert invocations_of(LOG, last=0) == []
