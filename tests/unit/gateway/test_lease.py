"""A lease (gateway/lease.py): its slot is given back once, however often it is released, and
an Outcome other than OK leaves its instance out for a while."""

from __future__ import annotations

import pytest

from kubelambda.clock import FakeClock
from kubelambda.gateway.activation import Activator
from kubelambda.gateway.lease import Outcome
from kubelambda.gateway.platform import FakePlatform
from unit.gateway.activators import FN, activator, instance, soon

pytestmark = pytest.mark.anyio


async def test_release_is_idempotent() -> None:
    platform = FakePlatform()
    platform.set_instances(FN, [instance("a", 2)])
    act = activator(platform)
    lease = await act.acquire(FN, deadline=soon())
    lease.release()
    lease.release()
    assert act.snapshot()[FN].in_flight == 0


async def test_refused_instance_is_left_out_then_comes_back() -> None:
    clock = FakeClock()
    platform = FakePlatform()
    platform.set_instances(FN, [instance("a", 4), instance("b", 4)])
    act = Activator(platform=platform, clock=clock, max_queued=10, eject_seconds=1.0)
    first = await act.acquire(FN, deadline=clock.monotonic() + 5)
    bad = first.instance.id
    first.release(Outcome.REFUSED)
    for _ in range(4):
        lease = await act.acquire(FN, deadline=clock.monotonic() + 5)
        assert lease.instance.id != bad
        lease.release()
    clock.advance(1.01)
    seen = set()
    for _ in range(4):
        lease = await act.acquire(FN, deadline=clock.monotonic() + 5)
        seen.add(lease.instance.id)
        lease.release()
    assert bad in seen
