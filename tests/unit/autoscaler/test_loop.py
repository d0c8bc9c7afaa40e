"""The autoscaler loop over fakes: a source of observations and a replica target."""

from __future__ import annotations

import asyncio

import pytest

from kubelambda.api.identity import FunctionKey
from kubelambda.autoscaler import loop
from kubelambda.autoscaler.decider import Observation, ScalingSpec
from kubelambda.autoscaler.loop import Autoscaler
from kubelambda.autoscaler.sources import DirectSource, Load, Observations

FN = ("ns", "fn")
SPEC = ScalingSpec(
    target_concurrency=1, min_replicas=0, max_replicas=10, scale_to_zero_after_seconds=5
)


class FakeSource:
    """Hands out `observations`; `complete` says a function missing from them is idle."""

    def __init__(self, *, complete: bool = False) -> None:
        self.observations: dict[FunctionKey, Observation] = {}
        self.complete = complete

    async def observe(self, *, now: float) -> Observations:
        return Observations(functions=dict(self.observations), complete=self.complete)


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


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def reporting_scaler(target: FakeTarget, clock: Clock, spec: ScalingSpec = SPEC) -> Autoscaler:
    return Autoscaler(source=FakeSource(), target=target, specs=lambda: {FN: spec}, clock=clock)


def test_wake_ups_carrying_a_burst_scale_out_at_once_on_every_gateways_sum():
    """The gateways' reports are added up: 0 -> 1 on the first, then out to what their sum
    needs (panic mode: twice the capacity or more), without waiting for a tick."""
    target, clock = FakeTarget(), Clock()
    autoscaler = reporting_scaler(target, clock)
    asyncio.run(autoscaler.wake(FN, concurrency=1, gateway="gw-a"))
    assert [call[1] for call in target.calls] == [1]  # one request: no burst, one instance
    clock.now += 0.5
    asyncio.run(autoscaler.wake(FN, concurrency=3, gateway="gw-a"))
    assert [call[1] for call in target.calls] == [1, 3]
    clock.now += 0.5
    asyncio.run(autoscaler.wake(FN, concurrency=4, gateway="gw-b"))  # 3 + 4 against 3
    assert [call[1] for call in target.calls] == [1, 3, 7]
    assert "7 requests held or in flight at the gateways now (2 reporting)" in target.calls[-1][2]
    assert autoscaler.decisions[FN].state.panicking


def test_a_report_that_is_no_burst_leaves_the_count_to_the_tick():
    target, clock = FakeTarget(), Clock()
    target.counts[FN] = 4
    autoscaler = reporting_scaler(target, clock)
    asyncio.run(autoscaler.wake(FN, concurrency=1, gateway="gw-a"))  # never down
    asyncio.run(autoscaler.wake(FN, concurrency=6, gateway="gw-b"))  # 7: under twice 4
    assert target.calls == []


def test_a_gateways_report_counts_for_three_seconds_and_the_cap_holds():
    target, clock = FakeTarget(), Clock()
    target.counts[FN] = 1
    autoscaler = reporting_scaler(target, clock)
    asyncio.run(autoscaler.wake(FN, concurrency=1, gateway="gw-a"))
    clock.now += loop.REPORT_SECONDS + 0.1
    asyncio.run(autoscaler.wake(FN, concurrency=1, gateway="gw-b"))  # gw-a's is stale: 1
    assert target.calls == []
    asyncio.run(autoscaler.wake(FN, concurrency=50, gateway="gw-a"))
    assert target.calls[-1][1] == SPEC.max_replicas
    assert "(maxReplicas 10)" in target.calls[-1][2]


def test_the_tick_after_a_reported_burst_keeps_its_count_until_the_metrics_come():
    """Prometheus has not scraped the burst yet: the tick must not scale back down."""
    source, target, clock = FakeSource(), FakeTarget(), Clock()
    target.counts[FN] = 1
    autoscaler = Autoscaler(source=source, target=target, specs=lambda: {FN: SPEC}, clock=clock)
    asyncio.run(autoscaler.wake(FN, concurrency=6, gateway="gw-a"))
    assert target.counts[FN] == 6
    source.observations[FN] = busy(1)  # the series as it was before the burst
    asyncio.run(autoscaler.tick(now=clock.now + 1))
    assert target.counts[FN] == 6


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
    loads = {FN: Load(in_flight=1, queued=0, requests_total=0)}
    source = DirectSource(lambda: loads)
    asyncio.run(source.observe(now=0.0))
    loads[FN] = Load(in_flight=0, queued=0, requests_total=10)
    asyncio.run(source.observe(now=5.0))
    loads[FN] = Load(in_flight=4, queued=2, requests_total=30)
    latest = asyncio.run(source.observe(now=10.0))[FN]
    assert latest.queued == 2
    assert latest.panic_concurrency == 3  # (0 + 6) / 2: the samples at 5 s and 10 s
    assert latest.stable_concurrency == pytest.approx(7 / 3)  # (1 + 0 + 6) / 3 over 60 s
    assert latest.stable_rps == 3  # 30 requests in 10 s


def test_idle_time_before_a_function_is_woken_is_not_its_load():
    """A minute at zero, then a burst: its averages start with the burst, so that the stable
    window does not read a sixtieth of it and scale it down under it (as Knative averages over
    the data a window has)."""
    loads = {FN: Load(in_flight=0, queued=0, requests_total=0)}
    source = DirectSource(lambda: loads)
    for now in range(60):
        asyncio.run(source.observe(now=float(now)))
    loads[FN] = Load(in_flight=1, queued=5, requests_total=40)
    asyncio.run(source.observe(now=60.0))
    loads[FN] = Load(in_flight=2, queued=0, requests_total=90)
    latest = asyncio.run(source.observe(now=61.0))[FN]
    assert latest.stable_concurrency == 4  # (6 + 2) / 2, not 8 / 61
    assert latest.panic_concurrency == 4
    assert latest.stable_rps == pytest.approx(90 / 60)  # rates still span the window


@pytest.mark.parametrize(
    ("complete", "counts"),
    [
        # Fresh scrapes list only loaded functions: absent is idle, and the idle clock that
        # the wake-up started keeps the instance for scaleToZeroAfterSeconds (5 s), no less.
        pytest.param(True, [1, 1, 1, 1, 0, 0], id="absent from a complete answer: idle"),
        # A gateway down or late: absent is not known to be idle; never scale down on it.
        pytest.param(False, [1, 1, 1, 1, 1, 1], id="absent from an incomplete answer: kept"),
    ],
)
def test_a_woken_function_absent_from_the_answer(complete, counts):
    target = FakeTarget()
    clock = [100.0]
    autoscaler = Autoscaler(
        source=FakeSource(complete=complete),
        target=target,
        specs=lambda: {FN: SPEC},
        clock=lambda: clock[0],
    )
    asyncio.run(autoscaler.wake(FN))
    seen = []
    for now in (101.0, 103.0, 104.0, 104.9, 105.0, 120.0):
        asyncio.run(autoscaler.tick(now=now))
        seen.append(target.counts[FN])
    assert seen == counts


def test_idle_functions_at_zero_are_decided_once_then_when_something_changes(monkeypatch):
    decided: list[ScalingSpec] = []
    real = loop.decide

    def counting(**kwargs):  # type: ignore[no-untyped-def]
        decided.append(kwargs["spec"])
        return real(**kwargs)

    monkeypatch.setattr(loop, "decide", counting)
    specs = {FunctionKey("ns", f"fn-{n}"): SPEC for n in range(1000)}
    source, target = FakeSource(complete=True), FakeTarget()
    autoscaler = Autoscaler(source=source, target=target, specs=lambda: specs, clock=lambda: 0.0)
    for now in (1.0, 2.0, 3.0):
        asyncio.run(autoscaler.tick(now=now))
    assert len(decided) == 1000  # the first tick; then nothing changed for them
    first = FunctionKey("ns", "fn-0")
    reason = autoscaler.decisions[first].reason

    busy_one, changed = FunctionKey("ns", "fn-1"), FunctionKey("ns", "fn-2")
    source.observations[busy_one] = busy(2)
    specs[changed] = ScalingSpec(
        target_concurrency=1, min_replicas=1, max_replicas=10, scale_to_zero_after_seconds=5
    )
    decided.clear()
    asyncio.run(autoscaler.tick(now=4.0))
    assert len(decided) == 2
    assert (target.counts[busy_one], target.counts[changed]) == (2, 1)
    assert autoscaler.decisions[first].reason == reason

    # Idle again: decided until it is at zero and settled (5: kept by panic mode; 20: out of
    # it, 2 -> 1, the scale-down rate; 21: 1 -> 0; 22: decided at zero), then no more.
    del source.observations[busy_one]
    del specs[changed]
    decided.clear()
    for now in (5.0, 20.0, 21.0, 22.0, 23.0):
        asyncio.run(autoscaler.tick(now=now))
    assert target.counts[busy_one] == 0
    assert len(decided) == 4
