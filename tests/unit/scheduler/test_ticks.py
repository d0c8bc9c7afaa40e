"""scheduler/ticks.py on a fake clock and the memory store: each tick once, EventBridge's
Scheduled Event, only the latest missed tick after an absence, nothing again after a restart
that knows the last tick, and a tick the store could not take fired on the next pass."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from kubelambda.api import Function, ScheduleSource, Trigger, parse_function
from kubelambda.clock import FakeClock
from kubelambda.delivery.jobs import DeliveryJob
from kubelambda.delivery.store import MemoryDeliveryStore
from kubelambda.scheduler.ticks import Scheduler, tick_id

pytestmark = pytest.mark.anyio

START = datetime(2026, 12, 4, 10, 0, 0, tzinfo=UTC)
TRIGGER = Trigger(
    name="nightly",
    namespace="team-a",
    function="report",
    source=ScheduleSource(expression="rate(1 minute)"),
    delivery=None,
    created="2026-12-04T10:00:00Z",
)
FUNCTION = parse_function(
    {
        "apiVersion": "kubelambda.dev/v1alpha1",
        "kind": "Function",
        "metadata": {"name": "report", "namespace": "team-a"},
        "spec": {
            "runtime": "python3.12",
            "handler": "app.handler",
            "code": {"inline": {"files": {"app.py": "def handler(e, c):\n    return 1\n"}}},
            "delivery": {"retries": 1},
        },
    }
)


def scheduler(
    clock: FakeClock,
    store: MemoryDeliveryStore,
    *,
    last: datetime | None = None,
    functions: Sequence[Function] = (FUNCTION,),
) -> Scheduler:
    return Scheduler(
        store=store,
        clock=clock,
        triggers=lambda: [TRIGGER],
        function=lambda key: next(
            (f for f in functions if (f.namespace, f.name) == (key.namespace, key.name)), None
        ),
        region="eu-west-1",
        account_id="123456789012",
        last_tick=lambda trigger: last,
    )


async def drain(store: MemoryDeliveryStore) -> list[DeliveryJob]:
    jobs = []
    while len(store):
        job = await asyncio.wait_for(store.take(), 1)
        await store.done(job)
        jobs.append(job)
    return jobs


def at(minutes: float) -> float:
    return START.timestamp() + minutes * 60


async def test_each_tick_fires_once_with_eventbridges_scheduled_event() -> None:
    clock = FakeClock(wall=at(0.5))
    store = MemoryDeliveryStore(capacity=100, clock=clock)
    ticks = scheduler(clock, store)
    await ticks.run_once()
    assert await drain(store) == []  # the first tick is a period after creation
    clock.advance(31)
    await ticks.run_once()
    await ticks.run_once()  # a second pass within the same tick fires nothing more
    [job] = await drain(store)
    event = json.loads(job.payload)
    assert event == {
        "version": "0",
        "id": job.id,
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": "2026-12-04T10:01:00Z",
        "region": "eu-west-1",
        "resources": ["arn:aws:events:eu-west-1:123456789012:rule/team-a.nightly"],
        "detail": {},
    }
    assert job.id == tick_id(TRIGGER, datetime(2026, 12, 4, 10, 1, tzinfo=UTC))
    assert job.invoked_arn == "arn:aws:lambda:eu-west-1:123456789012:function:team-a.report"
    assert job.policy.retries == 1  # the Function's delivery
    assert job.enqueued_at == at(1)


async def test_a_scheduler_away_fires_only_the_latest_missed_tick() -> None:
    clock = FakeClock(wall=at(0.5))
    store = MemoryDeliveryStore(capacity=100, clock=clock)
    ticks = scheduler(clock, store)
    await ticks.run_once()
    clock.advance(10 * 60)  # ten ticks pass while nothing runs
    await ticks.run_once()
    [job] = await drain(store)
    assert json.loads(job.payload)["time"] == "2026-12-04T10:10:00Z"
    clock.advance(60)
    await ticks.run_once()
    assert [json.loads(j.payload)["time"] for j in await drain(store)] == ["2026-12-04T10:11:00Z"]


async def test_a_restarted_scheduler_that_knows_the_last_tick_does_not_fire_it_again() -> None:
    clock = FakeClock(wall=at(5.5))
    store = MemoryDeliveryStore(capacity=100, clock=clock)
    fresh = scheduler(clock, store, last=datetime(2026, 12, 4, 10, 5, tzinfo=UTC))
    await fresh.run_once()
    assert await drain(store) == []
    clock.advance(30)
    await fresh.run_once()
    assert [json.loads(j.payload)["time"] for j in await drain(store)] == ["2026-12-04T10:06:00Z"]


async def test_a_tick_the_store_cannot_take_is_fired_on_the_next_pass() -> None:
    clock = FakeClock(wall=at(1.2))

    class Down(MemoryDeliveryStore):
        up = False

        async def admit(self, jobs: Sequence[DeliveryJob]) -> bool:
            if not self.up:
                raise OSError("the broker is down")
            return await super().admit(jobs)

    store = Down(capacity=100, clock=clock)
    ticks = scheduler(clock, store, last=datetime(2026, 12, 4, 10, 0, tzinfo=UTC))
    await ticks.run_once()
    assert len(store) == 0
    store.up = True
    await ticks.run_once()
    assert [json.loads(j.payload)["time"] for j in await drain(store)] == ["2026-12-04T10:01:00Z"]


async def test_no_function_no_invocation() -> None:
    clock = FakeClock(wall=at(1.5))
    store = MemoryDeliveryStore(capacity=100, clock=clock)
    ticks = scheduler(clock, store, functions=())
    await ticks.run_once()
    assert len(store) == 0 and ticks.fired == 0
