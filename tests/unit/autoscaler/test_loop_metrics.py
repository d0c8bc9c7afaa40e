"""The autoscaler loop tells its ScalingObserver (the operator's metrics) each tick's duration
and each replica change it makes, by ticks and by wake-ups."""

from __future__ import annotations

import asyncio
import itertools

from kubelambda.api.identity import FunctionKey
from kubelambda.autoscaler.decider import ScalingSpec
from kubelambda.autoscaler.loop import Autoscaler
from kubelambda.controller.metrics import OperatorMetrics
from unit.autoscaler.test_loop import SPEC, FakeSource, FakeTarget, busy

FN = FunctionKey("ns", "fn")


class Recorder:
    def __init__(self) -> None:
        self.ticks: list[float] = []
        self.scalings: list[tuple[FunctionKey, int, int]] = []

    def ticked(self, seconds: float) -> None:
        self.ticks.append(seconds)

    def scaled(self, function: FunctionKey, *, current: int, desired: int) -> None:
        self.scalings.append((function, current, desired))


def test_ticks_and_scalings_are_reported() -> None:
    source, target, recorder = FakeSource(), FakeTarget(), Recorder()
    clock = itertools.count(step=0.5)  # each reading half a second after the last
    spec = ScalingSpec(
        target_concurrency=1, min_replicas=0, max_replicas=10, scale_to_zero_after_seconds=0
    )
    autoscaler = Autoscaler(
        source=source,
        target=target,
        specs=lambda: {FN: spec},
        clock=lambda: next(clock),
        observer=recorder,
    )
    asyncio.run(autoscaler.wake(FN))  # 0 -> 1
    source.observations[FN] = busy(3)
    asyncio.run(autoscaler.tick(now=100.0))  # 1 -> 3
    asyncio.run(autoscaler.tick(now=101.0))  # no change: nothing reported
    source.observations[FN] = busy(0)
    for now in (200.0, 400.0, 600.0):
        asyncio.run(autoscaler.tick(now=now))
    assert recorder.scalings[:2] == [(FN, 0, 1), (FN, 1, 3)]
    assert recorder.scalings[-1][2] == 0 and len(recorder.ticks) == 5
    assert all(seconds == 0.5 for seconds in recorder.ticks)


def test_the_operator_metrics_count_scalings_by_direction() -> None:
    metrics, target = OperatorMetrics(), FakeTarget()
    target.counts[FN] = 4
    source = FakeSource()
    source.observations[FN] = busy(2)
    autoscaler = Autoscaler(
        source=source, target=target, specs=lambda: {FN: SPEC}, clock=lambda: 0.0, observer=metrics
    )
    asyncio.run(autoscaler.tick(now=100.0))

    def scalings(direction: str) -> float | None:
        labels = {"namespace": FN.namespace, "direction": direction}
        return metrics.registry.get_sample_value("kubelambda_autoscaler_scalings_total", labels)

    assert target.counts[FN] < 4 and scalings("down") == 1 and scalings("up") is None
    assert (
        metrics.registry.get_sample_value("kubelambda_autoscaler_tick_duration_seconds_count") == 1
    )
