"""`Activator.hold`: a request held without a task (the warm path's, invocation.py's
`Invoker.start`), told its lease or its error through a callback, as `acquire` returns or
raises: at once with a free slot, later with a slot handed over, the deadline's error, the
client's leaving, the platform's failure; its place in the queue and its reserved-concurrency
permit given back whenever it fails. And `acquire`, which awaits it: cancelled, it gives
back its place, or the slot handed over as it was cancelled."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from kubelambda.api import parse_function
from kubelambda.api.identity import FunctionKey
from kubelambda.clock import SystemClock
from kubelambda.gateway.activation import WATCH_AFTER_SECONDS, Activator
from kubelambda.gateway.exceptions import (
    ClientDisconnected,
    DeadlineExceeded,
    HoldQueueFull,
    Throttled,
    Unavailable,
)
from kubelambda.gateway.lease import Lease
from kubelambda.gateway.limits import FunctionLimits
from kubelambda.gateway.platform import FakePlatform
from unit.gateway.activators import CLOCK, FN, activator, instance, queued, soon
from unit.gateway.serving import wait_for

pytestmark = pytest.mark.anyio


class Told:
    """The callback `hold` tells: what it was told, in order."""

    def __init__(self) -> None:
        self.outcomes: list[Lease | BaseException] = []

    def __call__(self, outcome: Lease | BaseException) -> None:
        self.outcomes.append(outcome)

    async def one(self) -> Lease | BaseException:
        await wait_for(lambda: len(self.outcomes) == 1)
        return self.outcomes[0]


def tasks() -> int:
    return len(asyncio.all_tasks())


async def test_a_free_slot_is_told_at_once() -> None:
    platform = FakePlatform()
    platform.set_instances(FN, [instance("a")])
    act = activator(platform)
    told = Told()
    act.hold(FN, deadline=soon(), gone=None, then=told)
    assert len(told.outcomes) == 1  # before hold returned: nothing was held
    lease = told.outcomes[0]
    assert isinstance(lease, Lease) and lease.instance.id == "a"
    assert (lease.waited, lease.cold) == (0.0, False)
    lease.release()


async def test_a_held_request_gets_the_released_slot_without_a_task() -> None:
    platform = FakePlatform()
    platform.set_instances(FN, [instance("a", concurrency=2)])
    act = activator(platform)
    first, second = [await act.acquire(FN, deadline=soon()) for _ in range(2)]
    before = tasks()
    told = Told()
    act.hold(FN, deadline=soon(), gone=None, then=told)
    assert queued(act) == 1 and told.outcomes == []
    # Held without one (nor a wake-up's: 3 held or in flight is no burst for 2 slots).
    assert tasks() == before
    await asyncio.sleep(0.01)
    first.release()
    lease = await told.one()
    assert isinstance(lease, Lease) and lease.instance.id == "a"
    assert lease.waited >= 0.01 and not lease.cold  # a busy instance's wait, not a cold start
    assert queued(act) == 0 and act.snapshot()[FN].in_flight == 2
    lease.release()
    second.release()
    assert act.snapshot()[FN].in_flight == 0


async def test_a_cold_start_is_told_once_an_instance_is_ready() -> None:
    platform = FakePlatform()
    act = activator(platform)
    told = Told()
    act.hold(FN, deadline=soon(), gone=None, then=told)
    await wait_for(lambda: platform.wakes == [FN])  # woken: nothing was ready
    platform.set_instances(FN, [instance("a")])
    lease = await told.one()
    assert isinstance(lease, Lease) and lease.cold and lease.waited > 0
    lease.release()


async def test_held_to_its_deadline_it_is_told_the_deadline_and_leaves_the_queue() -> None:
    platform = FakePlatform()
    platform.set_instances(FN, [instance("a")])
    act = activator(platform)
    busy = await act.acquire(FN, deadline=soon())
    told = Told()
    act.hold(FN, deadline=soon(0.05), gone=None, then=told)
    error = await told.one()
    assert isinstance(error, DeadlineExceeded)
    assert "no instance of default/fn had a free slot within" in str(error)
    assert queued(act) == 0
    busy.release()  # nothing held is handed the slot: it stays free
    assert act.snapshot()[FN].in_flight == 0
    await asyncio.sleep(0.05)
    assert len(told.outcomes) == 1  # told once


async def test_a_held_client_that_leaves_gives_up_its_place() -> None:
    platform = FakePlatform()
    platform.set_instances(FN, [instance("a")])
    act = activator(platform, max_queued=1)
    busy = await act.acquire(FN, deadline=soon())
    left = asyncio.Event()
    told = Told()
    act.hold(FN, deadline=soon(), gone=left.wait, then=told)
    with pytest.raises(HoldQueueFull):  # its place is taken while it waits
        act.hold(FN, deadline=soon(), gone=None, then=Told())
    left.set()
    assert isinstance(await told.one(), ClientDisconnected)
    assert queued(act) == 0
    again = Told()
    act.hold(FN, deadline=soon(), gone=None, then=again)  # the place is free for the next
    assert queued(act) == 1
    busy.release()
    lease = await again.one()
    assert isinstance(lease, Lease)
    lease.release()


async def test_held_requests_are_told_the_platform_failure_when_the_gateway_stops() -> None:
    act = activator(FakePlatform())
    told = Told()
    act.hold(FN, deadline=soon(), gone=None, then=told)
    await act.aclose()
    error = await told.one()
    assert isinstance(error, Unavailable) and "shutting down" in str(error)


async def test_a_client_is_watched_only_once_held_a_while() -> None:
    """Watching costs a task: a request handed a slot within WATCH_AFTER_SECONDS never starts
    one; one held longer is watched from then on."""
    platform = FakePlatform()
    platform.set_instances(FN, [instance("a")])
    act = activator(platform)
    watched: list[str] = []

    def gone(name: str) -> Callable[[], Awaitable[None]]:
        async def wait() -> None:
            watched.append(name)
            await asyncio.Event().wait()

        return wait

    busy = await act.acquire(FN, deadline=soon())
    quick, slow = Told(), Told()
    act.hold(FN, deadline=soon(), gone=gone("quick"), then=quick)
    await asyncio.sleep(WATCH_AFTER_SECONDS / 10)
    busy.release()  # handed over soon
    lease = await quick.one()
    assert isinstance(lease, Lease)
    act.hold(FN, deadline=soon(), gone=gone("slow"), then=slow)
    await asyncio.sleep(WATCH_AFTER_SECONDS * 2)
    assert watched == ["slow"]
    lease.release()
    later = await slow.one()
    assert isinstance(later, Lease)
    later.release()

    def watching() -> list[asyncio.Task[Any]]:
        return [t for t in asyncio.all_tasks() if "gone.<locals>.wait" in repr(t.get_coro())]

    await wait_for(lambda: not watching())  # the watch ended with the hold


def with_reserved(concurrency: int, platform: FakePlatform) -> tuple[Activator, FunctionLimits]:
    """An activator over `platform`, the function's reserved concurrency `concurrency`."""
    spec = parse_function(
        {
            "apiVersion": "kubelambda.dev/v1alpha1",
            "kind": "Function",
            "metadata": {"name": "fn"},
            "spec": {"image": "example.com/fn:1", "reservedConcurrency": concurrency},
        }
    )
    specs: dict[FunctionKey, Any] = {FN: spec}
    limits = FunctionLimits(spec_of=specs.get, clock=SystemClock())
    return Activator(platform=platform, clock=CLOCK, max_queued=10, limits=limits), limits


def reserved_one() -> tuple[Activator, FunctionLimits]:
    """An activator over one instance of concurrency 1, the function's reserved concurrency 2."""
    platform = FakePlatform()
    platform.set_instances(FN, [instance("a")])
    return with_reserved(2, platform)


async def test_a_failed_hold_gives_its_reserved_concurrency_back() -> None:
    platform = FakePlatform()
    act, limits = with_reserved(1, platform)
    told = Told()
    act.hold(FN, deadline=soon(0.05), gone=None, then=told)  # cold: held, one permit taken
    with pytest.raises(Throttled):
        act.hold(FN, deadline=soon(), gone=None, then=Told())
    assert isinstance(await told.one(), DeadlineExceeded)
    assert limits.in_flight(FN) == 0
    # given back: the next is admitted, and gets a lease carrying its permit
    platform.set_instances(FN, [instance("a")])
    after = Told()
    act.hold(FN, deadline=soon(), gone=None, then=after)
    lease = after.outcomes[0]
    assert isinstance(lease, Lease) and limits.in_flight(FN) == 1
    lease.release()
    assert limits.in_flight(FN) == 0


@pytest.mark.parametrize("when", ["before the lease is told", "after, before it resumed"])
async def test_an_acquire_cancelled_as_its_slot_is_handed_over_gives_the_slot_back(
    when: str,
) -> None:
    act, limits = reserved_one()
    lease = await act.acquire(FN, deadline=soon())
    held = asyncio.create_task(act.acquire(FN, deadline=soon()))
    await wait_for(lambda: queued(act) == 1)
    lease.release()  # the slot is handed to the held request...
    if when != "before the lease is told":
        await asyncio.sleep(0)  # ...and told it: its task is to resume
    held.cancel()  # ...which is cancelled first
    with pytest.raises(asyncio.CancelledError):
        await held
    await asyncio.sleep(0)
    assert act.snapshot()[FN].in_flight == 0 and limits.in_flight(FN) == 0
    again = await act.acquire(FN, deadline=soon())  # free at once
    assert again.instance.id == "a" and again.waited == 0
    again.release()


async def test_a_cancelled_acquire_leaves_the_queue_and_gives_back_its_permit() -> None:
    act, limits = reserved_one()
    lease = await act.acquire(FN, deadline=soon())
    held = asyncio.create_task(act.acquire(FN, deadline=soon()))
    await wait_for(lambda: queued(act) == 1)
    assert limits.in_flight(FN) == 2
    held.cancel()
    with pytest.raises(asyncio.CancelledError):
        await held
    await wait_for(lambda: queued(act) == 0)
    assert limits.in_flight(FN) == 1
    lease.release()
    assert act.snapshot()[FN].in_flight == 0 and limits.in_flight(FN) == 0
