"""The scaling decision: how many instances a function needs now, modelled on Knative's KPA.

The autoscaler's loop calls `decide` once per function per tick with the latest metrics,
carries the returned `state` to the next tick and writes `desired` to the Deployment. It
is pure: time comes in as `now`, so tests drive it with tables instead of clocks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

    from kubelambda.api import Function

__all__ = [
    "DEFAULT_TUNING",
    "Decision",
    "Observation",
    "ScalerState",
    "ScalingSpec",
    "Tuning",
    "decide",
]


def _check_non_negative(obj: DataclassInstance) -> None:
    # NaN is what an empty Prometheus division yields; refusing it keeps a broken metric
    # pipeline from reading as "no traffic" and scaling a busy function to zero.
    for f in fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, int | float) and not (0 <= value < math.inf):
            raise ValueError(f"{type(obj).__name__}.{f.name} must be finite and >= 0, not {value}")


@dataclass(frozen=True, slots=True)
class Observation:
    """What the gateway saw for one function.

    Concurrencies are averages of the requests the gateway holds for the function
    (in flight or queued), summed over instances; `queued` is the number waiting for an
    instance right now.
    """

    stable_concurrency: float
    panic_concurrency: float
    stable_rps: float
    panic_rps: float
    queued: int

    def __post_init__(self) -> None:
        _check_non_negative(self)


@dataclass(frozen=True, slots=True)
class ScalingSpec:
    """A Function's `spec.scaling`."""

    target_concurrency: float
    min_replicas: int
    max_replicas: int
    scale_to_zero_after_seconds: float

    @classmethod
    def of(cls, function: Function) -> ScalingSpec:
        scaling = function.scaling
        return cls(
            target_concurrency=float(scaling.target_concurrency),
            min_replicas=scaling.min_replicas,
            max_replicas=scaling.max_replicas,
            scale_to_zero_after_seconds=float(scaling.scale_to_zero_after_seconds),
        )

    def __post_init__(self) -> None:
        _check_non_negative(self)
        if self.target_concurrency <= 0:
            raise ValueError("ScalingSpec.target_concurrency must be > 0")
        if self.min_replicas > self.max_replicas:
            raise ValueError("ScalingSpec.min_replicas must not exceed max_replicas")


@dataclass(frozen=True, slots=True)
class Tuning:
    """Cluster-wide knobs, with Knative's defaults."""

    stable_window_seconds: float = 60.0
    panic_window_seconds: float = 6.0
    # Panic when the panic-window demand needs this many times the current capacity.
    panic_threshold: float = 2.0
    max_scale_up_rate: float = 1000.0
    max_scale_down_rate: float = 2.0

    def __post_init__(self) -> None:
        _check_non_negative(self)
        if self.max_scale_up_rate < 1 or self.max_scale_down_rate < 1:
            raise ValueError("Tuning scale rates must be >= 1")


DEFAULT_TUNING = Tuning()


@dataclass(frozen=True, slots=True)
class ScalerState:
    """What one tick leaves for the next; start with `ScalerState()`."""

    panic_started_at: float | None = None
    # The last tick whose burst met the panic threshold: panic ends a stable window later.
    panic_triggered_at: float | None = None
    panic_peak: int = 0
    last_request_at: float | None = None

    @property
    def panicking(self) -> bool:
        return self.panic_started_at is not None


@dataclass(frozen=True, slots=True)
class Decision:
    """The count to scale to, why (shown to users), and the state for the next tick."""

    desired: int
    reason: str
    state: ScalerState


def _last_request_at(obs: Observation, state: ScalerState, *, now: float, tuning: Tuning) -> float:
    if obs.queued or obs.panic_rps or obs.panic_concurrency:
        return now
    last = state.last_request_at
    if last is None:
        # No memory of traffic (first tick, or the autoscaler restarted): start the idle
        # clock now rather than scale a function to zero on a guess.
        return now
    if (obs.stable_rps or obs.stable_concurrency) and now - last > tuning.stable_window_seconds:
        # Traffic fell between two ticks further apart than the panic window.
        return now
    return last


def _fmt(value: float) -> str:
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


def decide(
    *,
    observation: Observation,
    spec: ScalingSpec,
    current: int,
    state: ScalerState,
    now: float,
    tuning: Tuning = DEFAULT_TUNING,
) -> Decision:
    """Decide the instance count for one function at time `now`.

    Stable mode wants ceil(stable concurrency / target). A burst whose panic-window demand
    needs at least `panic_threshold` times the current capacity starts panic mode: scale
    on the panic window and never below the current count or the panic peak, until a
    whole stable window passes without such a burst. Scale-down is limited to dividing by
    `max_scale_down_rate` per tick and scale-up to multiplying by `max_scale_up_rate`;
    min/max replicas override both. Below one instance only when minReplicas is 0, nothing
    is queued and no request came for `scale_to_zero_after_seconds`; demand with no
    instance (queued, or seen over the panic window) gets one at once.
    """
    if current < 0:
        raise ValueError(f"current must be >= 0, not {current}")
    obs = observation
    target = spec.target_concurrency
    last_request_at = _last_request_at(obs, state, now=now, tuning=tuning)
    # A queued request is demand now, whatever the averages say.
    stable_demand = max(obs.stable_concurrency, obs.queued)
    panic_demand = max(obs.panic_concurrency, obs.queued)
    stable_want = math.ceil(stable_demand / target)
    panic_want = math.ceil(panic_demand / target)
    # Capacity of at least one instance, so an idle function at zero is not "overloaded".
    capacity = max(current, 1) * target
    burst = panic_demand >= tuning.panic_threshold * capacity and panic_demand > 0

    started = state.panic_started_at
    triggered = state.panic_triggered_at
    peak = state.panic_peak
    if burst:
        if started is None:
            started = now
        triggered = now
    elif started is not None and (
        (triggered is not None and now - triggered >= tuning.stable_window_seconds)
        # No request at all for the idle period: there is no burst left to guard against.
        or (
            spec.min_replicas == 0
            and not obs.queued
            and now - last_request_at >= spec.scale_to_zero_after_seconds
        )
    ):
        started, triggered, peak = None, None, 0

    if started is not None:
        want = max(panic_want, peak, current)
        reason = (
            f"panic mode: {_fmt(panic_demand)} concurrent over the last "
            f"{_fmt(tuning.panic_window_seconds)} s against capacity {_fmt(capacity)}"
        )
    else:
        want = stable_want
        reason = (
            f"{_fmt(stable_demand)} concurrent over the last "
            f"{_fmt(tuning.stable_window_seconds)} s at target {_fmt(target)} per instance"
        )
        if (
            want > 0
            and spec.min_replicas == 0
            and not obs.queued
            and now - last_request_at >= spec.scale_to_zero_after_seconds
        ):
            # The stable average still carries an old burst, but nothing came for the
            # whole idle period: scaleToZeroAfterSeconds is what the user asked for.
            want = 0
        if state.panicking:
            reason = f"left panic mode; {reason}"

    notes: list[str] = []
    desired = want
    up_limit = math.ceil(tuning.max_scale_up_rate * max(current, 1))
    down_limit = math.floor(current / tuning.max_scale_down_rate)
    if desired > up_limit:
        desired = up_limit
        notes.append(f"scale-up limited to {up_limit}")
    elif desired < down_limit:
        desired = down_limit
        notes.append(f"scale-down limited to {down_limit}")

    idle = now - last_request_at
    if desired == 0 and current > 0 and spec.min_replicas == 0:
        if idle >= spec.scale_to_zero_after_seconds:
            reason = f"no request for {_fmt(idle)} s"
        else:
            desired = 1
            notes.append(
                f"keeping 1 instance until idle for {_fmt(spec.scale_to_zero_after_seconds)} s"
                f" (idle {_fmt(idle)} s)"
            )
    if current == 0 and panic_demand > 0:
        # Demand with no instance to serve it: one at once, whatever the averages say.
        desired = max(desired, 1)
        waiting = f"{obs.queued} queued" if obs.queued else "requests"
        reason = f"{waiting} with no instance, activating; {reason}"

    if desired > spec.max_replicas:
        desired = spec.max_replicas
        notes.append(f"capped at maxReplicas {spec.max_replicas}")
    elif desired < spec.min_replicas:
        desired = spec.min_replicas
        notes.append(f"raised to minReplicas {spec.min_replicas}")

    if started is not None:
        peak = max(peak, desired)
    new_state = ScalerState(
        panic_started_at=started,
        panic_triggered_at=triggered,
        panic_peak=peak,
        last_request_at=last_request_at,
    )
    sentence = "; ".join([reason, *notes, f"desired {desired}"])
    return Decision(desired=desired, reason=sentence, state=new_state)
