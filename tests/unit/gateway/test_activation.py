"""Activation and load balancing: slots on ready instances, held requests, deadlines."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from kubelambda.clock import FakeClock
from kubelambda.gateway.activation import Activator
from kubelambda.gateway.exceptions import (
    ClientDisconnected,
    DeadlineExceeded,
    GatewayOverloaded,
    HoldQueueFull,
    Unavailable,
)
from kubelambda.gateway.lease import Lease, Outcome
from kubelambda.gateway.overload import LoopLag
from kubelambda.gateway.platform import FakePlatform
from unit.gateway.activators import CLOCK, FN, activator, instance, queued, soon
from unit.gateway.serving import wait_for

pytestmark = pytest.mark.anyio


async def test_least_in_flight_and_never_above_concurrency() -> None:
    platform = FakePlatform()
    platform.set_instances(FN, [instance("a", concurrency=2), instance("b", concurrency=1)])
    act = activator(platform)
    leases = [await act.acquire(FN, deadline=soon()) for _ in range(3)]
    # a, then b (a has 1 in flight, b 0), then a again (both 1, b is full)
    assert sorted(lease.instance.id for lease in leases) == ["a", "a", "b"]
    assert all(lease.waited == 0 and not lease.cold for lease in leases)
    # capacity (2 + 1) is used up: the next one is held, not sent
    held = asyncio.create_task(act.acquire(FN, deadline=soon()))
    await wait_for(lambda: queued(act) == 1)
    assert act.snapshot()[FN].in_flight == 3
    b_lease = next(lease for lease in leases if lease.instance.id == "b")
    b_lease.release()
    got = await asyncio.wait_for(held, 5)
    assert got.instance.id == "b"
    assert got.waited > 0 and not got.cold  # waited for a busy instance, not a cold one
    assert platform.wakes == []  # instances were ready all along


async def test_spreads_over_idle_instances_in_turn() -> None:
    platform = FakePlatform()
    platform.set_instances(FN, [instance(n, concurrency=4) for n in "abc"])
    act = activator(platform)
    seen = []
    for _ in range(6):
        lease = await act.acquire(FN, deadline=soon())
        seen.append(lease.instance.id)
        lease.release()
    assert sorted(seen) == ["a", "a", "b", "b", "c", "c"]


async def test_held_requests_are_served_first_come_first_served() -> None:
    platform = FakePlatform()
    act = activator(platform)
    order: list[int] = []

    async def request(n: int) -> Lease:
        lease = await act.acquire(FN, deadline=soon())
        order.append(n)
        return lease

    tasks = []
    for n in range(4):
        tasks.append(asyncio.create_task(request(n)))
        await wait_for(lambda n=n: queued(act) == n + 1)
    platform.set_instances(FN, [instance("a", concurrency=1)])
    for n in range(4):
        await wait_for(lambda n=n: len(order) == n + 1)
        assert not any(task.done() for task in tasks[n + 1 :])
        (await tasks[n]).release()
    assert order == [0, 1, 2, 3]


async def test_queue_bound_refuses_with_retry_after() -> None:
    platform = FakePlatform()
    act = activator(platform, max_queued=2, retry_after_seconds=3)
    held = [asyncio.create_task(act.acquire(FN, deadline=soon())) for _ in range(2)]
    await wait_for(lambda: queued(act) == 2)
    with pytest.raises(HoldQueueFull) as caught:
        await act.acquire(FN, deadline=soon())
    assert caught.value.status == 503
    assert caught.value.retry_after == 3
    assert "already holds 2 requests" in caught.value.message
    for task in held:
        task.cancel()
    await asyncio.gather(*held, return_exceptions=True)
    assert queued(act) == 0


async def test_deadline_ends_the_hold_with_504() -> None:
    platform = FakePlatform()
    act = activator(platform)
    with pytest.raises(DeadlineExceeded, match="no instance of default/fn became ready within"):
        await act.acquire(FN, deadline=soon(0.05))
    assert queued(act) == 0
    # when instances exist but are busy, the message says so
    platform.set_instances(FN, [instance("a")])
    lease = await act.acquire(FN, deadline=soon())
    with pytest.raises(DeadlineExceeded, match="had a free slot"):
        await act.acquire(FN, deadline=soon(0.05))
    lease.release()


async def test_a_deadline_already_past_is_refused_at_once() -> None:
    act = activator(FakePlatform())
    with pytest.raises(DeadlineExceeded, match="no time left"):
        await act.acquire(FN, deadline=CLOCK.monotonic() - 1)


async def test_held_requests_get_a_busy_instance_once_it_is_back_after_an_early_timer() -> None:
    """A 429 leaves the instance out briefly; its timer runs on the loop's clock, which may
    fire before the activator's clock says the pause is over (uvloop: milliseconds, read once
    per iteration). The held request must still get the slot when it is back, not wait to its
    deadline (on the cluster, with two gateway replicas, every later request waited 30 s)."""
    clock = FakeClock()
    platform = FakePlatform()
    platform.set_instances(FN, [instance("a")])
    act = Activator(platform=platform, clock=clock, max_queued=10, busy_eject_seconds=0.05)
    first = await act.acquire(FN, deadline=clock.monotonic() + 60)
    held = asyncio.create_task(act.acquire(FN, deadline=clock.monotonic() + 60))
    await wait_for(lambda: queued(act) == 1)
    first.release(Outcome.BUSY)  # left out until the activator's clock + 0.05 s
    await asyncio.sleep(0.2)  # the loop's timers have fired; the activator's clock stood still
    assert not held.done()
    clock.advance(0.06)
    lease = await asyncio.wait_for(held, 2)
    assert lease.instance.id == "a"
    lease.release()


async def test_a_request_held_after_a_busy_answer_gets_the_instance_when_it_is_back() -> None:
    """The invoker releases a 429's slot, then asks again and is held: no release follows to
    hand it the slot, so the hold itself must watch for the instance's return."""
    clock = FakeClock()
    platform = FakePlatform()
    platform.set_instances(FN, [instance("a")])
    act = Activator(platform=platform, clock=clock, max_queued=10, busy_eject_seconds=0.05)
    (await act.acquire(FN, deadline=clock.monotonic() + 60)).release(Outcome.BUSY)
    held = asyncio.create_task(act.acquire(FN, deadline=clock.monotonic() + 60))
    await wait_for(lambda: queued(act) == 1)
    clock.advance(0.06)
    lease = await asyncio.wait_for(held, 2)
    assert lease.instance.id == "a"
    lease.release()


async def test_cancelled_waiter_leaves_the_queue_and_slot_goes_to_the_next() -> None:
    platform = FakePlatform()
    platform.set_instances(FN, [instance("a")])
    act = activator(platform)
    lease = await act.acquire(FN, deadline=soon())
    gone = asyncio.create_task(act.acquire(FN, deadline=soon()))
    await wait_for(lambda: queued(act) == 1)
    staying = asyncio.create_task(act.acquire(FN, deadline=soon()))
    await wait_for(lambda: queued(act) == 2)
    gone.cancel()
    await asyncio.gather(gone, return_exceptions=True)
    lease.release()
    assert (await asyncio.wait_for(staying, 5)).instance.id == "a"
    assert act.snapshot()[FN].in_flight == 1


async def test_instances_keep_their_counts_across_updates_and_leaving_ones_drain() -> None:
    platform = FakePlatform()
    platform.set_instances(FN, [instance("a", 1)])
    act = activator(platform)
    on_a = await act.acquire(FN, deadline=soon())
    platform.set_instances(FN, [instance("a", 1), instance("b", 1)])
    # a is still busy, so the next one goes to b
    on_b = await act.acquire(FN, deadline=soon())
    assert on_b.instance.id == "b"
    platform.set_instances(FN, [instance("b", 1)])  # a leaves while busy
    on_a.release()  # harmless, and frees nothing on b
    assert act.snapshot()[FN].in_flight == 1
    held = asyncio.create_task(act.acquire(FN, deadline=soon()))
    await wait_for(lambda: queued(act) == 1)
    on_b.release()
    assert (await asyncio.wait_for(held, 5)).instance.id == "b"


async def test_snapshot_counts_for_the_autoscaler() -> None:
    platform = FakePlatform()
    platform.set_instances(FN, [instance("a", 2), instance("b", 3)])
    act = activator(platform)
    lease = await act.acquire(FN, deadline=soon())
    load = act.snapshot()[FN]
    assert (load.in_flight, load.queued, load.ready_instances, load.capacity) == (1, 0, 2, 5)
    assert load.requests_total == 1
    assert load.last_request_at is not None
    lease.release()


async def test_close_answers_held_requests() -> None:
    act = activator(FakePlatform())
    held = asyncio.create_task(act.acquire(FN, deadline=soon()))
    await wait_for(lambda: queued(act) == 1)
    await act.aclose()
    with pytest.raises(Unavailable, match="shutting down"):
        await asyncio.wait_for(held, 5)


async def test_a_held_client_that_leaves_gives_up_its_place() -> None:
    act = activator(FakePlatform(), max_queued=1)
    left = asyncio.Event()
    held = asyncio.create_task(act.acquire(FN, deadline=soon(), gone=left.wait))
    await wait_for(lambda: queued(act) == 1)
    left.set()
    with pytest.raises(ClientDisconnected):
        await asyncio.wait_for(held, 5)
    assert queued(act) == 0
    # and the place is free for the next one
    next_one = asyncio.create_task(act.acquire(FN, deadline=soon()))
    await wait_for(lambda: queued(act) == 1)
    next_one.cancel()
    await asyncio.gather(next_one, return_exceptions=True)


async def test_gone_is_not_watched_when_a_slot_is_free() -> None:
    platform = FakePlatform()
    platform.set_instances(FN, [instance("a")])
    act = activator(platform)
    called = []

    async def gone() -> None:
        called.append(True)

    (await act.acquire(FN, deadline=soon(), gone=gone)).release()
    assert called == []


# Overflow is answered at once: a warm function whose queue would not drain in time, and a
# gateway running late. Time is a FakeClock here; the loop lag an injected value.


def warm_activator(
    platform: FakePlatform, clock: FakeClock, *, lag: list[float] | None = None, **options: Any
) -> Activator:
    seen = lag if lag is not None else [0.0]
    return Activator(
        platform=platform,
        clock=clock,
        max_queued=100,
        max_hold_wait_seconds=2.0,
        loop_lag=lambda: seen[0],
        **options,
    )


async def served_in(act: Activator, clock: FakeClock, seconds: float) -> None:
    """One request served in `seconds`, so the activator knows how fast a slot frees up."""
    lease = await act.acquire(FN, deadline=clock.monotonic() + 60)
    clock.advance(seconds)
    lease.release()


async def test_a_warm_function_refuses_at_once_what_its_busy_instances_would_not_reach() -> None:
    clock = FakeClock()
    platform = FakePlatform()
    platform.set_instances(FN, [instance("a", concurrency=2)])
    act = warm_activator(platform, clock, retry_after_seconds=3)
    await served_in(act, clock, 0.5)  # 2 slots, 0.5 s each: 4 requests a second
    busy = [await act.acquire(FN, deadline=clock.monotonic() + 60) for _ in range(2)]
    held = [asyncio.create_task(act.acquire(FN, deadline=clock.monotonic() + 60))]
    for n in range(2, 9):  # up to 8 held: 2 s of work, within the bound
        held.append(asyncio.create_task(act.acquire(FN, deadline=clock.monotonic() + 60)))
        await wait_for(lambda n=n: queued(act) == n)
    # The 9th would wait 2.25 s: held while that is new (a blip, or capacity on its way)...
    held.append(asyncio.create_task(act.acquire(FN, deadline=clock.monotonic() + 60)))
    await wait_for(lambda: queued(act) == 9)
    # ...and once it has lasted the bound, the next is answered at once, not held.
    clock.advance(2.0)
    with pytest.raises(HoldQueueFull) as caught:
        await asyncio.wait_for(act.acquire(FN, deadline=clock.monotonic() + 60), 5)
    assert caught.value.status == 503 and caught.value.retry_after == 3
    assert "every instance of default/fn is busy and the 9 requests held" in caught.value.message
    assert queued(act) == 9  # the held ones keep their places
    for lease in busy:
        lease.release()
    for task in held:
        task.cancel()
    await asyncio.gather(*held, return_exceptions=True)


async def test_a_cold_start_backlog_is_held_not_refused() -> None:
    clock = FakeClock()
    platform = FakePlatform()
    act = warm_activator(platform, clock)
    # From zero: 20 held for the cold start, far more than 2 s of one instance's work.
    held = [asyncio.create_task(act.acquire(FN, deadline=clock.monotonic() + 60))]
    for n in range(1, 20):
        held.append(asyncio.create_task(act.acquire(FN, deadline=clock.monotonic() + 60)))
        await wait_for(lambda n=n: queued(act) == n + 1)
    platform.set_instances(FN, [instance("a")])
    first = await asyncio.wait_for(held[0], 5)
    clock.advance(1.0)  # slow: 1 s a request, 19 s of work ahead
    first.release()
    clock.advance(5.0)
    # Requests held for the cold start are still ahead: the function is still activating
    # (the platform is adding instances), so new ones are held too, however long it lasts.
    late = [asyncio.create_task(act.acquire(FN, deadline=clock.monotonic() + 60))]
    await wait_for(lambda: queued(act) == 19)
    clock.advance(3.0)
    late.append(asyncio.create_task(act.acquire(FN, deadline=clock.monotonic() + 60)))
    await wait_for(lambda: queued(act) == 20)
    assert not any(task.done() for task in late)
    for task in [*held, *late]:
        task.cancel()
    results = await asyncio.gather(*held, *late, return_exceptions=True)
    for result in results:
        if isinstance(result, Lease):
            result.release()


async def test_arriving_instances_get_time_to_drain_the_queue() -> None:
    clock = FakeClock()
    platform = FakePlatform()
    platform.set_instances(FN, [instance("a")])
    act = warm_activator(platform, clock)
    await served_in(act, clock, 1.0)  # one slot, 1 s a request
    busy = [await act.acquire(FN, deadline=clock.monotonic() + 60)]
    held = []
    for n in range(5):  # the 3rd on would wait over 2 s: over the bound from then
        held.append(asyncio.create_task(act.acquire(FN, deadline=clock.monotonic() + 60)))
        await wait_for(lambda n=n: queued(act) == n + 1)
    clock.advance(2.5)
    platform.set_instances(FN, [instance("a"), instance("b")])  # the autoscaler added one
    busy.append(await asyncio.wait_for(held[0], 5))
    clock.advance(0.5)
    # Still over the bound (5 ahead, 2 slots), and for longer than it: but capacity just
    # grew, so the queue gets time to drain before anything is refused.
    held.append(asyncio.create_task(act.acquire(FN, deadline=clock.monotonic() + 60)))
    await wait_for(lambda: queued(act) == 5)
    # No more instances come and the queue stays over: refused once that has lasted.
    clock.advance(2.0)
    held.append(asyncio.create_task(act.acquire(FN, deadline=clock.monotonic() + 60)))
    await wait_for(lambda: queued(act) == 6)
    clock.advance(2.0)
    with pytest.raises(HoldQueueFull, match="is busy"):
        await asyncio.wait_for(act.acquire(FN, deadline=clock.monotonic() + 60), 5)
    for lease in busy:
        lease.release()
    for task in held:
        task.cancel()
    results = await asyncio.gather(*held, return_exceptions=True)
    for result in results:
        if isinstance(result, Lease):
            result.release()


async def test_a_running_late_gateway_refuses_at_once_and_takes_requests_again_after() -> None:
    clock = FakeClock()
    platform = FakePlatform()
    platform.set_instances(FN, [instance("a", concurrency=10)])
    lag = [1.5]
    act = warm_activator(platform, clock, lag=lag, max_loop_lag_seconds=1.0)
    with pytest.raises(GatewayOverloaded) as caught:
        await asyncio.wait_for(act.acquire(FN, deadline=clock.monotonic() + 60), 5)
    assert caught.value.status == 503 and caught.value.retry_after == 1.0
    assert "runs 1.5s behind" in caught.value.message
    assert act.snapshot().get(FN) is None or act.snapshot()[FN].in_flight == 0
    lag[0] = 0.2
    (await act.acquire(FN, deadline=clock.monotonic() + 60)).release()


async def test_loop_lag_reads_a_standing_backlog_not_a_single_stall() -> None:
    lag = LoopLag(interval=0.1)
    assert lag() == 0.0  # starts watching
    loop = asyncio.get_running_loop()
    done = asyncio.Event()

    def block(seconds: float, times: int) -> None:
        # Callbacks that hold the loop, as a flood of requests would; between two, the loop
        # runs its timers once.
        time.sleep(seconds)
        if times > 1:
            loop.call_soon(block, seconds, times - 1)
        else:
            done.set()

    await asyncio.sleep(0.15)
    loop.call_soon(block, 0.4, 1)  # one stall: the next timer is late, the one before was not
    await done.wait()
    await wait_for(lambda: max(lag._recent) >= 0.3)
    assert lag() < 0.2
    done.clear()
    loop.call_soon(block, 0.4, 5)  # a standing backlog: timer after timer runs late
    await done.wait()
    assert lag() >= 0.2
    lag.close()
