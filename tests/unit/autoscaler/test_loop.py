"""The autoscaler loop over fakes: a source of observations and a replica target."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from kubelambda.api.identity import FunctionKey
from kubelambda.autoscaler.decider import Observation, ScalingSpec
from kubelambda.autoscaler.loop import Autoscaler
from kubelambda.autoscaler.sources import DirectSource, Load

FN = ("ns", "fn")
SPEC = ScalingSpec(
    target_concurrency=1, min_replicas=0, max_replicas=10, scale_to_zero_after_seconds=5
)


class FakeSource:
    def __init__(self) -> None:
        self.observations: dict[FunctionKey, Observation] = {}

    async def observe(self, *, now: float) -> Mapping[FunctionKey, Observation]:
        return self.observations


class FakeTarget:
    def __init__(self) -> None:
        self.counts: dict[FunctionKey, int] = {}
        self.calls: list[tuple[FunctionKey, int, str]] = []

    def replicas(self, function: FunctionKey) -> int:
        return self.counts.get(function, 0)

    async def scale(self, function: FunctionKey, replicas: int, *, reason: str) -> None:
        self.counts[function] = replicas
        self.calls.append((function, replicas, reason))


def busy(concurrency: float) -> Observation:
    return Observation(
        stable_concurrency=concurrency,
        panic_concurrency=concurrency,
        stable_rps=concurrency,
        panic_rps=concurrency,
        queued=0,
    )


def scaler(source, target, spec=SPEC):  # type: ignore[no-untyped-def]
    return Autoscaler(source=source, target=target, specs=lambda: {FN: spec}, clock=lambda: 0.0)


def test_wake_scales_from_zero_at_once_and_only_from_zero():
    target = FakeTarget()
    autoscaler = scaler(FakeSource(), target)
    asyncio.run(autoscaler.wake(FN))
    asyncio.run(autoscaler.wake(FN))
    assert target.calls == [(FN, 1, "woken by a request")]


def test_ticks_follow_demand_and_only_call_scale_on_change():
    source, target = FakeSource(), FakeTarget()
    target.counts[FN] = 1
    autoscaler = scaler(source, target)
    source.observations[FN] = busy(3)
    asyncio.run(autoscaler.tick(now=100.0))
    asyncio.run(autoscaler.tick(now=101.0))
    assert [call[1] for call in target.calls] == [3]
    assert "concurrent" in autoscaler.decisions[FN].reason


def test_missing_metrics_never_scale_down():
    target = FakeTarget()
    target.counts[FN] = 2
    autoscaler = scaler(FakeSource(), target)
    for now in (100.0, 200.0, 300.0):
        asyncio.run(autoscaler.tick(now=now))
    assert target.calls == []
    assert "no metrics" in autoscaler.decisions[FN].reason


def test_min_replicas_hold_even_without_metrics():
    target = FakeTarget()
    spec = ScalingSpec(
        target_concurrency=1, min_replicas=2, max_replicas=10, scale_to_zero_after_seconds=5
    )
    asyncio.run(scaler(FakeSource(), target, spec).tick(now=1.0))
    assert target.counts[FN] == 2


def test_direct_source_averages_over_the_windows():
    loads = {FN: Load(in_flight=0, queued=0, requests_total=0)}
    source = DirectSource(lambda: loads)
    asyncio.run(source.observe(now=0.0))
    loads[FN] = Load(in_flight=4, queued=2, requests_total=30)
    latest = asyncio.run(source.observe(now=10.0))[FN]
    assert latest.queued == 2
    assert latest.panic_concurrency == 6  # only the newest sample is inside 6 s
    assert latest.stable_concurrency == 3  # (0 + 6) / 2 over 60 s
    assert latest.stable_rps == 3  # 30 requests in 10 s
