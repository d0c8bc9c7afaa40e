"""The in-memory delivery store: bounded, due-time ordered, retries put jobs back."""

from __future__ import annotations

import asyncio

import pytest

from kubelambda.api.identity import FunctionKey
from kubelambda.clock import SystemClock
from kubelambda.delivery.jobs import DeliveryJob, DeliveryPolicy
from kubelambda.delivery.store import MemoryDeliveryStore

pytestmark = pytest.mark.anyio

CLOCK = SystemClock()


def job(name: str) -> DeliveryJob:
    return DeliveryJob(
        id=name,
        payload=b"{}",
        policy=DeliveryPolicy(),
        invoked_arn="arn",
        enqueued_at=0.0,
        function=FunctionKey("default", "fn"),
    )


async def test_bound_counts_waiting_and_taken_jobs() -> None:
    store = MemoryDeliveryStore(capacity=2, clock=CLOCK)
    assert store.offer(job("a")) and store.offer(job("b"))
    assert not store.offer(job("c"))
    taken = await asyncio.wait_for(store.take(), 1)
    assert not store.offer(job("c"))  # a taken job still holds its place
    await store.done(taken)
    assert store.offer(job("c"))
    assert len(store) == 2


async def test_jobs_come_out_first_in_first_out_when_due() -> None:
    store = MemoryDeliveryStore(capacity=10, clock=CLOCK)
    for name in "abc":
        store.offer(job(name))
    assert [(await asyncio.wait_for(store.take(), 1)).id for _ in range(3)] == ["a", "b", "c"]


async def test_a_retried_job_waits_for_its_due_time() -> None:
    store = MemoryDeliveryStore(capacity=10, clock=CLOCK)
    store.offer(job("later"))
    later = await asyncio.wait_for(store.take(), 1)
    await store.retry(later, due=CLOCK.monotonic() + 0.1)
    store.offer(job("now"))
    assert (await asyncio.wait_for(store.take(), 1)).id == "now"
    started = CLOCK.monotonic()
    assert (await asyncio.wait_for(store.take(), 1)).id == "later"
    assert CLOCK.monotonic() - started >= 0.05


async def test_take_waits_for_an_offer() -> None:
    store = MemoryDeliveryStore(capacity=10, clock=CLOCK)
    waiting = asyncio.create_task(store.take())
    await asyncio.sleep(0)
    assert not waiting.done()
    store.offer(job("x"))
    assert (await asyncio.wait_for(waiting, 1)).id == "x"


async def test_a_cancelled_take_takes_nothing() -> None:
    store = MemoryDeliveryStore(capacity=10, clock=CLOCK)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(store.take(), 0.01)
    store.offer(job("x"))
    assert (await asyncio.wait_for(store.take(), 1)).id == "x"
