"""autoscaler/arrivals.py: announced pods are handed to wake-ups for a while, a scale from zero
makes wake-ups wait for the first (bounded), and nothing is kept past its time."""

from __future__ import annotations

import asyncio

from kubelambda.api.identity import FunctionKey
from kubelambda.autoscaler.arrivals import ARRIVAL_SECONDS, EXPECT_SECONDS, Arrivals, Instance

KEY = FunctionKey("ns", "fn")
OTHER = FunctionKey("ns", "other")
POD = Instance("fn-abc", "10.0.0.9", 8080)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_an_announced_pod_is_handed_out_until_its_time_is_up() -> None:
    clock = Clock()

    async def body() -> None:
        arrivals = Arrivals(clock)
        arrivals.arrived(KEY, POD)
        assert await arrivals.wait(KEY, 0) == POD
        assert await arrivals.wait(OTHER, 0) is None
        clock.now += ARRIVAL_SECONDS
        assert await arrivals.wait(KEY, 0) is None

    asyncio.run(body())


def test_wake_ups_wait_for_an_expected_pod_and_only_so_long() -> None:
    clock = Clock()

    async def body() -> None:
        arrivals = Arrivals(clock)
        assert await asyncio.wait_for(arrivals.wait(KEY, 5), 1) is None  # none expected
        arrivals.expect(KEY)
        assert await arrivals.wait(KEY, 0.01) is None
        first = asyncio.ensure_future(arrivals.wait(KEY, 5))
        second = asyncio.ensure_future(arrivals.wait(KEY, 5))
        await asyncio.sleep(0)
        arrivals.arrived(KEY, POD)
        assert await asyncio.wait_for(asyncio.gather(first, second), 1) == [POD, POD]

    asyncio.run(body())


def test_an_expectation_nobody_meets_is_dropped() -> None:
    clock = Clock()

    async def body() -> None:
        arrivals = Arrivals(clock)
        arrivals.expect(KEY)
        clock.now += EXPECT_SECONDS
        assert await asyncio.wait_for(arrivals.wait(KEY, 5), 1) is None

    asyncio.run(body())
