"""Per-function limits (gateway/limits.py): the token bucket, reserved concurrency counted
over held and running invocations, released on success, error and cancellation, shared by
gateway replicas, and wired into the activator."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from kubelambda.api import parse_function
from kubelambda.api.function import Function
from kubelambda.api.identity import FunctionKey
from kubelambda.clock import FakeClock, SystemClock
from kubelambda.gateway.activation import Activator
from kubelambda.gateway.exceptions import DeadlineExceeded, Throttled
from kubelambda.gateway.lease import Outcome
from kubelambda.gateway.limits import CONCURRENCY, RATE, FunctionLimits, TokenBucket
from kubelambda.gateway.platform import FakePlatform, Instance
from unit.gateway.serving import wait_for

pytestmark = pytest.mark.anyio

FN = FunctionKey("default", "fn")
OTHER = FunctionKey("default", "other")


def function(**spec: Any) -> Function:
    return parse_function(
        {
            "apiVersion": "kubelambda.dev/v1alpha1",
            "kind": "Function",
            "metadata": {"name": "fn"},
            "spec": {"image": "example.com/fn:1", **spec},
        }
    )


class Specs:
    """The routing table's view of each function's spec, changed by the test."""

    def __init__(self, **by_name: Function) -> None:
        self.by_name = dict(by_name)

    def __call__(self, key: FunctionKey) -> Function | None:
        return self.by_name.get(key.name)


def limits(specs: Specs, clock: FakeClock, **options: Any) -> FunctionLimits:
    return FunctionLimits(spec_of=specs, clock=clock, **options)


# the token bucket


def test_bucket_starts_full_spends_the_burst_then_refills_at_the_rate() -> None:
    bucket = TokenBucket(rate=2.0, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(0.0) == pytest.approx(0.5)  # one token comes in 1/rate
    assert bucket.take(0.25) == pytest.approx(0.25)  # half of one has come
    assert bucket.take(0.5) == 0.0
    # a long quiet spell refills to the burst, never beyond
    assert [bucket.take(100.0) for _ in range(4)] == [0.0, 0.0, 0.0, pytest.approx(0.5)]


def test_refund_gives_a_token_back_up_to_the_burst() -> None:
    bucket = TokenBucket(rate=1.0, burst=1, now=0.0)
    assert bucket.take(0.0) == 0.0
    bucket.refund()
    assert bucket.take(0.0) == 0.0
    bucket.refund()
    bucket.refund()  # not above the burst
    assert bucket.take(0.0) == 0.0
    assert bucket.take(0.0) > 0


# reserved concurrency


def test_reserved_concurrency_admits_that_many_then_refuses_at_once() -> None:
    clock = FakeClock()
    gate = limits(Specs(fn=function(reservedConcurrency=2)), clock)
    first, second = gate.admit(FN), gate.admit(FN)
    with pytest.raises(Throttled) as refused:
        gate.admit(FN)
    assert refused.value.status == 429
    assert refused.value.reason == CONCURRENCY
    assert refused.value.message == "Rate Exceeded."
    assert refused.value.retry_after == 1.0
    first.release()
    third = gate.admit(FN)  # a freed place is taken at once
    assert gate.in_flight(FN) == 2
    second.release()
    third.release()
    third.release()  # a second release changes nothing
    assert gate.in_flight(FN) == 0
    assert gate.throttles() == {FN: {CONCURRENCY: 1}}


def test_reserved_zero_throttles_everything_without_retry_after() -> None:
    gate = limits(Specs(fn=function(reservedConcurrency=0)), FakeClock())
    for _ in range(3):
        with pytest.raises(Throttled) as refused:
            gate.admit(FN)
        assert refused.value.retry_after is None  # waiting cannot help
    assert gate.throttles() == {FN: {CONCURRENCY: 3}}


def test_no_limits_for_a_function_without_them_or_unknown() -> None:
    gate = limits(Specs(fn=function()), FakeClock())
    permits = [gate.admit(FN) for _ in range(100)] + [gate.admit(OTHER) for _ in range(100)]
    assert len(permits) == 200
    assert gate.throttles() == {}


def test_a_spec_change_takes_effect_and_keeps_the_count_in_flight() -> None:
    specs = Specs(fn=function(reservedConcurrency=1))
    gate = limits(specs, FakeClock())
    permit = gate.admit(FN)
    with pytest.raises(Throttled):
        gate.admit(FN)
    specs.by_name["fn"] = function(reservedConcurrency=2)
    gate.admit(FN)  # the second place the new spec gives
    with pytest.raises(Throttled):
        gate.admit(FN)
    specs.by_name["fn"] = function()
    gate.admit(FN)  # no limit any more
    permit.release()


# rate


def test_rate_limit_refuses_beyond_the_burst_with_the_wait_as_retry_after() -> None:
    clock = FakeClock()
    gate = limits(Specs(fn=function(throttling={"rateLimit": 4, "burstLimit": 2})), clock)
    for permit in [gate.admit(FN), gate.admit(FN)]:
        permit.release()  # finished invocations still spent their tokens
    with pytest.raises(Throttled) as refused:
        gate.admit(FN)
    assert refused.value.reason == RATE
    assert refused.value.retry_after == pytest.approx(0.25)
    clock.advance(0.25)
    gate.admit(FN)
    assert gate.throttles() == {FN: {RATE: 1}}


def test_burst_defaults_to_one_seconds_worth() -> None:
    gate = limits(Specs(fn=function(throttling={"rateLimit": 3})), FakeClock())
    for _ in range(3):
        gate.admit(FN)
    with pytest.raises(Throttled):
        gate.admit(FN)


def test_a_concurrency_refusal_spends_no_token() -> None:
    spec = function(reservedConcurrency=1, throttling={"rateLimit": 1, "burstLimit": 2})
    gate = limits(Specs(fn=spec), FakeClock())
    permit = gate.admit(FN)  # token 1 of 2
    with pytest.raises(Throttled) as refused:
        gate.admit(FN)
    assert refused.value.reason == CONCURRENCY
    permit.release()
    gate.admit(FN)  # token 2 of 2 is still there


def test_a_refunded_permit_gives_its_token_back() -> None:
    gate = limits(Specs(fn=function(throttling={"rateLimit": 1, "burstLimit": 1})), FakeClock())
    gate.admit(FN).release(refund=True)  # an instance refused: it did not run
    gate.admit(FN)


# replicas


@pytest.mark.parametrize(
    ("reserved", "replicas", "each"), [(10, 1, 10), (10, 3, 4), (10, 10, 1), (1, 3, 1)]
)
def test_each_replica_enforces_its_rounded_up_share(
    reserved: int, replicas: int, each: int
) -> None:
    gate = limits(Specs(fn=function(reservedConcurrency=reserved)), FakeClock(), replicas=replicas)
    for _ in range(each):
        gate.admit(FN)
    with pytest.raises(Throttled):
        gate.admit(FN)


def test_replicas_share_the_rate_and_the_burst() -> None:
    clock = FakeClock()
    spec = function(throttling={"rateLimit": 10, "burstLimit": 5})
    gate = limits(Specs(fn=spec), clock, replicas=2)
    for _ in range(3):  # ceil(5 / 2)
        gate.admit(FN)
    with pytest.raises(Throttled) as refused:
        gate.admit(FN)
    assert refused.value.retry_after == pytest.approx(0.2)  # 5 tokens a second here


def test_replicas_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        limits(Specs(), FakeClock(), replicas=0)


# wired into the activator


def instance(name: str, concurrency: int = 1) -> Instance:
    return Instance(id=name, host="127.0.0.1", port=1, concurrency=concurrency)


def activator(platform: FakePlatform, gate: FunctionLimits) -> Activator:
    return Activator(platform=platform, clock=SystemClock(), max_queued=10, limits=gate)


def soon(seconds: float = 5.0) -> float:
    return SystemClock().monotonic() + seconds


async def test_activator_refuses_beyond_the_reservation_instead_of_holding() -> None:
    platform = FakePlatform()
    platform.set_instances(FN, [instance("a", concurrency=1)])
    gate = limits(Specs(fn=function(reservedConcurrency=2)), FakeClock())
    act = activator(platform, gate)
    running = await act.acquire(FN, deadline=soon())
    # the instance is full: the second is held, and counts against the reservation
    held = asyncio.create_task(act.acquire(FN, deadline=soon()))
    await wait_for(lambda: act.snapshot()[FN].queued == 1)
    with pytest.raises(Throttled):
        await act.acquire(FN, deadline=soon())
    assert act.snapshot()[FN].queued == 1  # the refused one was never held
    running.release()
    second = await asyncio.wait_for(held, 5)
    assert gate.in_flight(FN) == 1
    second.release()
    assert gate.in_flight(FN) == 0


async def test_activator_releases_the_permit_when_a_held_request_is_cancelled() -> None:
    platform = FakePlatform()  # no instance: every request is held
    gate = limits(Specs(fn=function(reservedConcurrency=1)), FakeClock())
    act = activator(platform, gate)
    held = asyncio.create_task(act.acquire(FN, deadline=soon()))
    await wait_for(lambda: gate.in_flight(FN) == 1)
    held.cancel()
    with pytest.raises(asyncio.CancelledError):
        await held
    assert gate.in_flight(FN) == 0
    await act.aclose()


async def test_activator_releases_the_permit_when_the_hold_fails() -> None:
    platform = FakePlatform()
    gate = limits(Specs(fn=function(reservedConcurrency=1)), FakeClock())
    act = activator(platform, gate)
    with pytest.raises(DeadlineExceeded):
        await act.acquire(FN, deadline=soon(0.05))
    assert gate.in_flight(FN) == 0
    await act.aclose()


async def test_lease_release_frees_the_place_and_refunds_a_refused_attempt() -> None:
    platform = FakePlatform()
    platform.set_instances(FN, [instance("a", concurrency=4), instance("b", concurrency=4)])
    spec = function(reservedConcurrency=1, throttling={"rateLimit": 1, "burstLimit": 1})
    gate = limits(Specs(fn=spec), FakeClock())
    act = activator(platform, gate)
    lease = await act.acquire(FN, deadline=soon())
    lease.release(Outcome.REFUSED)  # the instance refused: the invoker tries again
    retry = await act.acquire(FN, deadline=soon())  # neither the place nor the token is lost
    retry.release(Outcome.OK)
    with pytest.raises(Throttled) as refused:
        await act.acquire(FN, deadline=soon())  # the one token was spent by the OK call
    assert refused.value.reason == RATE
    assert gate.in_flight(FN) == 0


async def test_a_lease_taken_now_or_not_at_all_spends_nothing_when_not() -> None:
    platform = FakePlatform()
    platform.set_instances(FN, [instance("a", concurrency=1)])
    spec = function(throttling={"rateLimit": 1, "burstLimit": 2})
    gate = limits(Specs(fn=spec), FakeClock())
    act = activator(platform, gate)
    assert act.lease_now(FN) is None  # new to the activator: acquire reads its instances
    running = await act.acquire(FN, deadline=soon())  # the first token
    assert act.lease_now(FN) is None  # the one slot is taken: it would be held
    assert gate.in_flight(FN) == 1
    running.release()
    now = act.lease_now(FN)  # the second token: not spent by the refusal before
    assert now is not None and now.instance.id == "a"
    now.release()
    with pytest.raises(Throttled):
        act.lease_now(FN)  # refused at once, as acquire refuses
    assert gate.in_flight(FN) == 0
