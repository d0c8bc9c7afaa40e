"""The scaling decision as tables: stable and panic modes, rate limits, scale to zero, waking."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import pytest

from kubelambda.autoscaler.decider import (
    Decision,
    Observation,
    ScalerState,
    ScalingSpec,
    Tuning,
    decide,
)

NOW = 10_000.0
SPEC = ScalingSpec(
    target_concurrency=10, min_replicas=0, max_replicas=50, scale_to_zero_after_seconds=300
)
# A function that has seen traffic just now and is not panicking.
BUSY = ScalerState(last_request_at=NOW)


def obs(
    stable: float = 0.0,
    panic: float | None = None,
    *,
    queued: int = 0,
    stable_rps: float | None = None,
    panic_rps: float | None = None,
) -> Observation:
    """Concurrency over both windows; rates follow concurrency unless given."""
    panic = stable if panic is None else panic
    return Observation(
        stable_concurrency=stable,
        panic_concurrency=panic,
        stable_rps=stable if stable_rps is None else stable_rps,
        panic_rps=panic if panic_rps is None else panic_rps,
        queued=queued,
    )


def run(
    observation: Observation,
    *,
    current: int,
    spec: ScalingSpec = SPEC,
    state: ScalerState = BUSY,
    now: float = NOW,
    **spec_changes: Any,
) -> Decision:
    return decide(
        observation=observation,
        spec=replace(spec, **spec_changes),
        current=current,
        state=state,
        now=now,
    )


@pytest.mark.parametrize(
    ("stable", "current", "desired"),
    [
        (10, 1, 1),
        (10.01, 1, 2),
        (15, 1, 2),
        (20, 2, 2),
        (35, 3, 4),
        (0.5, 1, 1),
        (90, 5, 9),
        (19.99, 10, 5),
        (0, 2, 1),
    ],
    ids=[
        "exactly-target",
        "just-over",
        "one-and-a-half",
        "steady",
        "grow-by-one",
        "light-load",
        "double",
        "halve",
        "idle-keeps-one",
    ],
)
def test_stable_mode_wants_ceil_of_concurrency_over_target(
    stable: float, current: int, desired: int
) -> None:
    # Panic-window demand equal to the stable one never reaches 2x capacity here.
    decision = run(obs(stable), current=current)
    assert decision.desired == desired
    assert not decision.state.panicking


@pytest.mark.parametrize(
    ("stable", "current", "changes", "desired", "note"),
    [
        (500, 10, {"max_replicas": 30}, 30, "capped at maxReplicas 30"),
        (0, 1, {"min_replicas": 3}, 3, "raised to minReplicas 3"),
        (0, 0, {"min_replicas": 2}, 2, "raised to minReplicas 2"),
        (40, 4, {"min_replicas": 4, "max_replicas": 4}, 4, "desired 4"),
        # minReplicas and maxReplicas win over the rate limits.
        (0, 20, {"max_replicas": 3}, 3, "capped at maxReplicas 3"),
        (10, 1, {"min_replicas": 5000, "max_replicas": 5000}, 5000, "raised to minReplicas"),
    ],
)
def test_min_and_max_clamp(
    stable: float, current: int, changes: dict[str, int], desired: int, note: str
) -> None:
    decision = run(obs(stable, 0), current=current, spec=replace(SPEC, **changes))
    assert decision.desired == desired
    assert note in decision.reason


@pytest.mark.parametrize(
    ("stable", "current", "desired"),
    [
        (0, 10, 5),
        (0, 9, 4),
        (10, 8, 4),
        (30, 8, 4),
        (50, 8, 5),
        (0, 3, 1),
    ],
)
def test_scale_down_is_at_most_halving_per_tick(stable: float, current: int, desired: int) -> None:
    decision = run(obs(stable, 0), current=current)
    assert decision.desired == desired
    limited = math.ceil(stable / 10) < desired
    assert ("scale-down limited" in decision.reason) is limited


def test_scale_up_is_limited_by_the_up_rate() -> None:
    tuning = Tuning(max_scale_up_rate=3)
    spec = replace(SPEC, max_replicas=1000)
    decision = decide(
        observation=obs(1000, 0), spec=spec, current=2, state=BUSY, now=NOW, tuning=tuning
    )
    assert decision.desired == 6
    assert "scale-up limited to 6" in decision.reason


def test_default_up_rate_is_a_thousandfold() -> None:
    spec = replace(SPEC, max_replicas=10**6, target_concurrency=1)
    assert run(obs(5000, 0), current=2, spec=spec).desired == 2000
    assert run(obs(5000, 0), current=0, spec=spec).desired == 1000


# --- panic mode ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("panic", "current", "panicking", "desired"),
    [
        (19.99, 1, False, 1),
        (20, 1, True, 2),
        (39.99, 2, False, 2),
        (40, 2, True, 4),
        (95, 3, True, 10),
        # At zero instances the capacity of one instance is the yardstick.
        (20, 0, True, 2),
        (19, 0, False, 1),
    ],
)
def test_panic_starts_at_twice_the_current_capacity(
    panic: float, current: int, panicking: bool, desired: int
) -> None:
    # Stable demand matches the current count, so any growth comes from panic mode.
    decision = run(obs(current * 10, panic), current=current)
    assert decision.state.panicking is panicking
    assert decision.desired == desired
    assert ("panic mode" in decision.reason) is panicking
    if panicking:
        assert decision.state.panic_started_at == NOW
        assert decision.state.panic_triggered_at == NOW
        assert decision.state.panic_peak == desired


def panic_state(*, started: float, triggered: float, peak: int) -> ScalerState:
    return ScalerState(
        panic_started_at=started, panic_triggered_at=triggered, panic_peak=peak, last_request_at=NOW
    )


@pytest.mark.parametrize(
    ("panic", "current", "peak", "desired"),
    [
        (5, 8, 8, 8),
        (5, 6, 8, 8),
        (5, 10, 8, 10),
        (150, 8, 8, 15),
    ],
    ids=["holds-current", "holds-peak", "keeps-above-peak", "still-grows"],
)
def test_panic_never_scales_down(panic: float, current: int, peak: int, desired: int) -> None:
    state = panic_state(started=NOW - 20, triggered=NOW - 20, peak=peak)
    decision = run(obs(0, panic), current=current, state=state)
    assert decision.desired == desired
    assert decision.state.panicking
    assert decision.state.panic_started_at == NOW - 20
    assert decision.state.panic_peak == max(peak, desired)


@pytest.mark.parametrize(
    ("since_trigger", "panicking"),
    [(59.9, True), (60.0, False), (120.0, False)],
)
def test_panic_ends_a_stable_window_after_the_last_burst(
    since_trigger: float, panicking: bool
) -> None:
    state = panic_state(started=NOW - 200, triggered=NOW - since_trigger, peak=8)
    decision = run(obs(10, 10), current=8, state=state)
    assert decision.state.panicking is panicking
    if panicking:
        assert decision.desired == 8
    else:
        # Back on the stable window: 1 wanted, but only halving allowed.
        assert decision.desired == 4
        assert decision.reason.startswith("left panic mode")
        assert decision.state == ScalerState(last_request_at=NOW)


def test_a_new_burst_extends_panic_but_keeps_its_start() -> None:
    state = panic_state(started=NOW - 100, triggered=NOW - 59, peak=4)
    decision = run(obs(40, 80), current=4, state=state)
    assert decision.state.panic_started_at == NOW - 100
    assert decision.state.panic_triggered_at == NOW
    assert decision.desired == 8


def test_panic_is_capped_by_max_replicas_and_remembers_the_cap() -> None:
    decision = run(obs(10, 400), current=1, max_replicas=5)
    assert decision.desired == 5
    assert decision.state.panic_peak == 5


def test_a_burst_sequence_scales_up_holds_then_comes_down() -> None:
    """Ticks 2 s apart through a burst: up at once, hold while it lasts, then halve."""
    state = BUSY
    current = 1
    seen: list[int] = []
    timeline = [(10, 10), (30, 200), (30, 200)] + [(5, 5)] * 34
    for tick, (stable, panic) in enumerate(timeline):
        decision = run(obs(stable, panic), current=current, state=state, now=NOW + 2 * tick)
        state, current = decision.state, decision.desired
        seen.append(current)
    assert seen[0] == 1
    # Tick 1 is the only burst measured against the old capacity: 20 instances at once,
    # held for a full stable window (60 s = 30 ticks) although load falls at tick 3.
    assert seen[1:31] == [20] * 30
    assert seen[31:] == [10, 5, 2, 1, 1, 1]


# --- scale to zero and activation ------------------------------------------------------


@pytest.mark.parametrize(
    ("idle", "min_replicas", "queued", "current", "desired"),
    [
        (299.9, 0, 0, 1, 1),
        (300, 0, 0, 1, 0),
        (1000, 0, 0, 1, 0),
        (1000, 1, 0, 1, 1),
        (1000, 0, 0, 0, 0),
        # Halving still applies on the way down to zero.
        (1000, 0, 0, 4, 2),
    ],
)
def test_scale_to_zero_after_idle(
    idle: float, min_replicas: int, queued: int, current: int, desired: int
) -> None:
    state = ScalerState(last_request_at=NOW - idle)
    decision = run(obs(0), current=current, state=state, min_replicas=min_replicas)
    assert decision.desired == desired
    assert decision.state.last_request_at == NOW - idle
    if current == 1 and desired == 0:
        assert "no request for" in decision.reason


def test_an_idle_period_ends_panic_mode() -> None:
    panicking = ScalerState(
        panic_started_at=NOW - 20,
        panic_triggered_at=NOW - 12,
        panic_peak=4,
        last_request_at=NOW - 10,
    )
    decision = run(
        obs(0.5, 0, panic_rps=0), current=4, state=panicking, scale_to_zero_after_seconds=10
    )
    assert not decision.state.panicking
    assert decision.desired == 2  # on its way to zero, halving per tick
    busy = run(obs(0.5, 0, panic_rps=0), current=4, state=panicking, scale_to_zero_after_seconds=30)
    assert busy.state.panicking
    assert busy.desired == 4


@pytest.mark.parametrize(
    ("idle", "desired"),
    [(9, 1), (10, 0), (45, 0)],
)
def test_an_old_burst_in_the_stable_window_does_not_outlast_the_idle_period(
    idle: float, desired: int
) -> None:
    # Nothing for `idle` seconds, but the 60 s stable window still averages an old burst.
    state = ScalerState(last_request_at=NOW - idle)
    decision = run(
        obs(0.4, 0, stable_rps=0.1, panic_rps=0),
        current=1,
        state=state,
        scale_to_zero_after_seconds=10,
    )
    assert decision.desired == desired


@pytest.mark.parametrize(
    "observation",
    [
        obs(0, 0, queued=1),
        obs(0, 0, panic_rps=0.2),
        obs(0, 0.1, panic_rps=0),
    ],
    ids=["queued", "recent-request", "request-in-flight"],
)
def test_recent_activity_blocks_scale_to_zero(observation: Observation) -> None:
    state = ScalerState(last_request_at=NOW - 1000)
    decision = run(observation, current=1, state=state)
    assert decision.desired == 1
    assert decision.state.last_request_at == NOW


@pytest.mark.parametrize(
    ("last", "stable_rps", "expected_last"),
    [
        (None, 0, NOW),
        (NOW - 30, 0.5, NOW - 30),
        (NOW - 61, 0.5, NOW),
        (NOW - 61, 0, NOW - 61),
    ],
    ids=["first-tick-starts-clock", "seen-recently", "missed-between-ticks", "quiet"],
)
def test_last_request_bookkeeping(
    last: float | None, stable_rps: float, expected_last: float
) -> None:
    observation = obs(0, 0, stable_rps=stable_rps, panic_rps=0)
    decision = run(observation, current=1, state=ScalerState(last_request_at=last))
    assert decision.state.last_request_at == expected_last


def test_fresh_autoscaler_does_not_scale_to_zero_on_first_tick() -> None:
    decision = run(obs(0), current=1, state=ScalerState(), scale_to_zero_after_seconds=0.5)
    assert decision.desired == 1
    follow_up = run(
        obs(0), current=1, state=decision.state, now=NOW + 1, scale_to_zero_after_seconds=0.5
    )
    assert follow_up.desired == 0


@pytest.mark.parametrize(
    ("queued", "target", "desired"),
    [(1, 10, 1), (10, 10, 1), (11, 10, 2), (25, 1, 25)],
)
def test_queued_requests_activate_from_zero_at_once(
    queued: int, target: float, desired: int
) -> None:
    state = ScalerState(last_request_at=NOW - 10_000)
    decision = run(obs(0, 0, queued=queued), current=0, state=state, target_concurrency=target)
    assert decision.desired == desired
    assert decision.reason.startswith(f"{queued} queued with no instance")


def test_queued_requests_raise_demand_when_averages_lag() -> None:
    assert run(obs(10, 10, queued=30), current=1).desired == 3


def test_reason_is_one_readable_sentence() -> None:
    decision = run(obs(35, 35), current=3)
    assert (
        decision.reason == "35 concurrent over the last 60 s at target 10 per instance; desired 4"
    )
    decision = run(obs(0), current=1, state=ScalerState(last_request_at=NOW - 42.25))
    assert "idle 42.2 s" in decision.reason or "idle 42.3 s" in decision.reason


def test_decide_is_pure() -> None:
    args: dict[str, Any] = {"observation": obs(35, 80), "current": 3, "state": BUSY}
    assert run(**args) == run(**args)
    assert ScalerState(last_request_at=NOW) == BUSY


# --- bad input -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "build",
    [
        lambda: obs(-1),
        lambda: obs(math.nan),
        lambda: obs(1, math.inf),
        lambda: obs(0, queued=-1),
        lambda: ScalingSpec(
            target_concurrency=0, min_replicas=0, max_replicas=1, scale_to_zero_after_seconds=1
        ),
        lambda: ScalingSpec(
            target_concurrency=1, min_replicas=3, max_replicas=2, scale_to_zero_after_seconds=1
        ),
        lambda: ScalingSpec(
            target_concurrency=1, min_replicas=-1, max_replicas=2, scale_to_zero_after_seconds=1
        ),
        lambda: ScalingSpec(
            target_concurrency=1, min_replicas=0, max_replicas=2, scale_to_zero_after_seconds=-1
        ),
        lambda: Tuning(max_scale_down_rate=0.5),
        lambda: Tuning(stable_window_seconds=math.nan),
        lambda: run(obs(0), current=-1),
    ],
    ids=[
        "negative-concurrency",
        "nan-concurrency",
        "infinite-concurrency",
        "negative-queue",
        "zero-target",
        "min-over-max",
        "negative-min",
        "negative-idle",
        "down-rate-below-one",
        "nan-window",
        "negative-current",
    ],
)
def test_bad_input_raises_value_error(build: Any) -> None:
    with pytest.raises(ValueError, match=r"must"):
        build()
