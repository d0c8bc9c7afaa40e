"""Local mode's figures and charts from samples of a real gateway metrics registry, on a clock
the test moves."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from kubelambda.api.identity import FunctionKey
from kubelambda.console.samples import SampleRing, snapshot_of
from kubelambda.gateway.activation import FunctionLoad
from kubelambda.gateway.metrics import GatewayMetrics

HELLO = FunctionKey("default", "hello")
OTHER = FunctionKey("team-a", "other")


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def _metrics(load: Mapping[FunctionKey, FunctionLoad] | None = None) -> GatewayMetrics:
    return GatewayMetrics(load=lambda: load or {})


def _ring(metrics: GatewayMetrics, clock: Clock, **options: float) -> SampleRing:
    return SampleRing(metrics.registry.collect, wall=clock, **options)


def test_a_snapshot_reads_the_gateways_families_per_function() -> None:
    load = {HELLO: FunctionLoad(2, 1, 1, 1, 9, None)}
    metrics = _metrics(load)
    for code in (200, 200, 502, 503):
        metrics.request(HELLO, code, 0.2)
    metrics.request(None, 404, 0.001)  # matched no function: not anyone's
    metrics.cold_start(HELLO, 1.5)
    metrics.billed(HELLO, duration_ms=10, memory_mb=128)
    found = snapshot_of(metrics.registry.collect())
    assert set(found) == {HELLO}
    hello = found[HELLO]
    assert (hello.requests, hello.errors, hello.invocations) == (4, 2, 1)
    assert hello.gb_seconds == pytest.approx(0.01 * 128 / 1024)  # billed as Lambda bills
    assert (hello.cold_starts, hello.cold_start_sum) == (1, 1.5)
    assert (hello.in_flight, hello.held) == (2, 1)
    assert hello.duration[0.25] == 4 and hello.duration[float("inf")] == 4


def test_figures_count_from_the_oldest_sample_of_the_last_hour() -> None:
    clock, metrics = Clock(), _metrics()
    ring = _ring(metrics, clock, interval=600)
    ring.sample()  # at start: nothing yet
    for _ in range(5):
        metrics.request(HELLO, 200, 0.02)
        metrics.billed(HELLO, duration_ms=20, memory_mb=128)
    clock.now += 3000
    ring.sample()
    metrics.request(HELLO, 500, 2.0)
    metrics.billed(HELLO, duration_ms=2000, memory_mb=128)
    metrics.cold_start(HELLO, 0.4)
    metrics.cold_start(HELLO, 0.6)
    clock.now += 300
    _, figures, _ = ring.read()
    hello = figures[HELLO]
    # Within the hour: everything since the start sample.
    assert (hello.invocations, hello.errors, hello.cold_starts) == (6, 1, 2)
    # Usage: 5 x 20 ms and 2,000 ms at 128 MB, in GB-seconds.
    assert hello.gb_seconds == pytest.approx((5 * 0.02 + 2.0) * 128 / 1024)
    assert hello.cold_start_seconds == pytest.approx(0.5)
    assert hello.p50_seconds is not None and hello.p50_seconds <= 0.025
    assert hello.p99_seconds is not None and hello.p99_seconds > 1
    # Once the samples before the 5xx are more than an interval older than the hour, only
    # what came after the first sample within it counts.
    for _ in range(7):
        clock.now += 600
        ring.sample()
    clock.now += 1
    metrics.request(HELLO, 200, 0.02)
    _, figures, _ = ring.read()
    assert figures[HELLO].errors == 0
    assert figures[HELLO].invocations == 0
    assert len(ring) <= 3600 / 600 + 2  # bounded


def test_charts_have_a_rate_point_per_sample_interval_and_the_gauges() -> None:
    clock = Clock()
    load: dict[FunctionKey, FunctionLoad] = {}
    metrics = _metrics(load)
    ring = _ring(metrics, clock, interval=10)
    ring.sample()
    for step in range(3):
        for _ in range(step + 1):
            metrics.request(HELLO, 200, 0.01)
        metrics.request(HELLO, 503, 0.01)
        load[HELLO] = FunctionLoad(step, 0, 1, 1, 0, None)
        clock.now += 30
        ring.sample()
    clock.now += 0.5  # less than a second after the last sample: it ends the charts
    now, _, charts = ring.read()
    requests_chart, concurrency = charts[HELLO]
    requests, errors = requests_chart.series
    assert [v for _, v in requests.points] == [4.0, 6.0, 8.0]  # per minute, 5xx included
    assert [v for _, v in errors.points] == [2.0, 2.0, 2.0]
    assert [t for t, _ in requests.points] == [now - 60.5, now - 30.5, now - 0.5]
    assert [v for _, v in concurrency.series[0].points] == [0, 1, 2]


def test_the_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="interval"):
        SampleRing(list, wall=Clock(), interval=0)


def test_function_errors_are_counted_over_the_window_only_when_read() -> None:
    clock, metrics = Clock(), _metrics()
    totals = {HELLO: 2.0}
    ring = SampleRing(metrics.registry.collect, wall=clock, function_errors=lambda: totals)
    ring.sample()
    totals[HELLO] = 5.0
    clock.now += 60
    _, figures, _ = ring.read()
    assert figures[HELLO].function_errors == 3
    metrics.request(HELLO, 200, 0.01)
    _, figures, _ = _ring(metrics, clock).read()
    assert figures[HELLO].function_errors is None  # not read: not known, rather than 0
