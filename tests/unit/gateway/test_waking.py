"""Waking a function for held requests (gateway/waking.py): once per interval however many are
held, again when every instance was left out, and a platform that cannot start it fails them."""

from __future__ import annotations

import asyncio

import pytest

from kubelambda.gateway import waking
from kubelambda.gateway.exceptions import Unavailable
from kubelambda.gateway.lease import Outcome
from kubelambda.gateway.platform import FakePlatform, PlatformError
from unit.gateway.activators import FN, activator, instance, queued, soon
from unit.gateway.serving import wait_for

pytestmark = pytest.mark.anyio


async def test_held_requests_wake_the_function_once_and_all_proceed_when_ready() -> None:
    platform = FakePlatform()
    act = activator(platform)
    held = [asyncio.create_task(act.acquire(FN, deadline=soon())) for _ in range(5)]
    await wait_for(lambda: queued(act) == 5 and platform.wakes)
    assert platform.wakes == [FN]  # one wake per interval, not one per request
    platform.set_instances(FN, [instance("a", concurrency=5)])
    leases = await asyncio.wait_for(asyncio.gather(*held), 5)
    assert [lease.instance.id for lease in leases] == ["a"] * 5
    assert all(lease.cold and lease.waited > 0 for lease in leases)
    assert queued(act) == 0
    assert act.snapshot()[FN].in_flight == 5


async def test_platform_error_fails_held_requests_with_its_message() -> None:
    platform = FakePlatform()
    platform.wake_error = PlatformError("image missing")
    act = activator(platform)
    with pytest.raises(Unavailable, match="cannot start: image missing") as caught:
        await act.acquire(FN, deadline=soon())
    assert caught.value.retry_after is not None


async def test_when_every_instance_refuses_requests_wait_and_wake() -> None:
    platform = FakePlatform()
    platform.set_instances(FN, [instance("a")])
    act = activator(platform, eject_seconds=10)
    (await act.acquire(FN, deadline=soon())).release(Outcome.REFUSED)
    held = asyncio.create_task(act.acquire(FN, deadline=soon()))
    await wait_for(lambda: platform.wakes == [FN])
    platform.set_instances(FN, [instance("b")])  # the platform replaced it
    lease = await asyncio.wait_for(held, 5)
    assert lease.instance.id == "b"


async def test_a_burst_behind_busy_instances_wakes_with_what_the_gateway_holds() -> None:
    """Held and in flight at twice what the ready instances take at once: the autoscaler is
    told now how many (its panic threshold), not once Prometheus has scraped them."""
    platform = FakePlatform()
    platform.set_instances(FN, [instance("a", concurrency=2)])
    act = activator(platform)
    leases = [await act.acquire(FN, deadline=soon()) for _ in range(2)]
    held = [asyncio.create_task(act.acquire(FN, deadline=soon()))]
    await wait_for(lambda: queued(act) == 1)
    await asyncio.sleep(0.01)
    assert platform.wakes == []  # 3 against 2: held, not a burst
    held.append(asyncio.create_task(act.acquire(FN, deadline=soon())))
    await wait_for(lambda: platform.wakes == [FN])
    assert platform.concurrencies == [4]
    for lease in leases:
        lease.release(Outcome.OK)
    await asyncio.wait_for(asyncio.gather(*held), 5)


async def test_held_requests_ask_every_interval_while_an_ask_waits_3_at_most() -> None:
    """An ask that scaled a Function from zero waits for its first pod (up to 3 s on a cluster):
    the asks after it go on every interval meanwhile, with the count held then, and no more
    than MAX_ASKING wait at once."""
    answer = asyncio.Event()
    platform = FakePlatform(on_wake=lambda _: answer.wait())
    act = activator(platform, wake_interval_seconds=0.02)
    held = [asyncio.create_task(act.acquire(FN, deadline=soon()))]
    await wait_for(lambda: len(platform.wakes) == 1)
    held += [asyncio.create_task(act.acquire(FN, deadline=soon())) for _ in range(4)]
    await wait_for(lambda: len(platform.wakes) == waking.MAX_ASKING)
    await asyncio.sleep(0.1)  # five intervals: still no more than MAX_ASKING asks
    assert len(platform.wakes) == waking.MAX_ASKING
    assert platform.concurrencies[0] == 1 and platform.concurrencies[-1] == 5
    answer.set()
    await wait_for(lambda: len(platform.wakes) > waking.MAX_ASKING)  # asking again
    platform.set_instances(FN, [instance("a", concurrency=5)])
    await asyncio.wait_for(asyncio.gather(*held), 5)
