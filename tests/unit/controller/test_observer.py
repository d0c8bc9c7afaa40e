"""observer.SourceObserver with fake probes: at most `concurrency` looks at once however many
Triggers; a source looked at again only after the interval (a new or changed one at once); a
probe that hangs or fails is an Unknown observation, never a stuck or dead loop; a look at a
source forgotten meanwhile is dropped; `run` keeps looking until cancelled."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from kubelambda.api import parse_trigger
from kubelambda.api.streams import QueueSource
from kubelambda.api.trigger import Trigger
from kubelambda.controller.cluster import FakeCluster
from kubelambda.controller.observer import SourceObserver
from kubelambda.delivery.observe import (
    OBSERVE_FAILED,
    Consuming,
    KafkaTarget,
    Observation,
    QueueTarget,
    SourceProblem,
)
from unit.controller.conftest import NOW
from unit.controller.reconciling import FakeProbe


def queue_trigger(name: str, stream: str = "ORDERS", **queue: Any) -> tuple[Trigger, QueueSource]:
    trigger = parse_trigger(
        {
            "apiVersion": "kubelambda.dev/v1alpha1",
            "kind": "Trigger",
            "metadata": {"name": name, "namespace": "team-a"},
            "spec": {"function": "hello", "queue": {"stream": stream, **queue}},
        }
    )
    assert isinstance(trigger.source, QueueSource)
    return trigger, trigger.source


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def observer(
    probe: Any, *, changed: list[tuple[str, str]] | None = None, **kwargs: Any
) -> SourceObserver:
    noted = changed if changed is not None else []
    return SourceObserver(
        probe=probe,
        cluster=FakeCluster(),
        clock=lambda: NOW,
        changed=lambda namespace, name: noted.append((namespace, name)),
        **kwargs,
    )


class GatedProbe:
    """Holds every look until `gate` opens, counting the looks in flight."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.in_flight = 0
        self.most = 0
        self.done = 0

    async def queue(self, target: QueueTarget) -> Observation:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        try:
            await self.gate.wait()
        finally:
            self.in_flight -= 1
        self.done += 1
        return Consuming(consumer=target.consumer, lag=0, position=0)

    async def kafka(self, target: KafkaTarget) -> Observation:
        raise AssertionError("no kafka Trigger here")


def test_at_most_concurrency_looks_run_at_once() -> None:
    async def scenario() -> None:
        probe = GatedProbe()
        watcher = observer(probe, concurrency=3)
        for n in range(20):
            watcher.observe(*queue_trigger(f"t{n}"))
        looking = asyncio.create_task(watcher.look_due())
        deadline = time.monotonic() + 5
        while probe.in_flight < 3:
            assert time.monotonic() < deadline, "three looks never started"
            await asyncio.sleep(0.01)
        for _ in range(10):  # the others wait for a slot, however long the three take
            await asyncio.sleep(0)
        assert probe.most == 3
        probe.gate.set()
        await asyncio.wait_for(looking, 5)
        assert (probe.done, probe.most) == (20, 3)

    asyncio.run(scenario())


def test_a_source_is_looked_at_again_after_the_interval_and_a_change_at_once() -> None:
    clock = Clock()
    probe = FakeProbe()
    changed: list[tuple[str, str]] = []
    watcher = observer(probe, changed=changed, interval_seconds=30, monotonic=clock)
    trigger, source = queue_trigger("orders")

    async def scenario() -> None:
        assert watcher.observe(trigger, source) is None  # new: due at once
        await watcher.look_due()
        observed = watcher.observe(trigger, source)
        assert observed is not None and observed.at == NOW
        assert changed == [("team-a", "orders")]
        await watcher.look_due()
        clock.now += 29
        await watcher.look_due()
        assert len(probe.looked) == 1
        clock.now += 1
        await watcher.look_due()
        assert len(probe.looked) == 2
        assert changed == [("team-a", "orders")]  # the same answer: nothing to write

        # A change of what the look depends on: the last observation is of something else.
        other, moved = queue_trigger("orders", stream="REFUNDS")
        assert watcher.observe(other, moved) is None
        await watcher.look_due()
        assert [t.stream for t in probe.looked if isinstance(t, QueueTarget)] == [
            "ORDERS",
            "ORDERS",
            "REFUNDS",
        ]

    asyncio.run(scenario())


def test_a_probe_that_hangs_or_fails_is_an_unknown_observation() -> None:
    class Hanging:
        async def queue(self, target: QueueTarget) -> Observation:
            await asyncio.Event().wait()
            raise AssertionError("unreachable")

        async def kafka(self, target: KafkaTarget) -> Observation:
            raise AssertionError("no kafka Trigger here")

    class Failing(Hanging):
        async def queue(self, target: QueueTarget) -> Observation:
            raise RuntimeError("the probe broke")

    async def outcome(probe: Any) -> Observation:
        watcher = observer(probe, deadline_seconds=0.05)
        trigger, source = queue_trigger("orders")
        watcher.observe(trigger, source)
        await asyncio.wait_for(watcher.look_due(), 5)
        observed = watcher.observe(trigger, source)
        assert observed is not None
        return observed.observation

    assert asyncio.run(outcome(Hanging())) == SourceProblem(
        OBSERVE_FAILED, "the look at the source took over 0.05 s"
    )
    assert asyncio.run(outcome(Failing())) == SourceProblem(
        OBSERVE_FAILED, "observing the source failed: RuntimeError('the probe broke')"
    )


def test_a_look_at_a_forgotten_source_is_dropped() -> None:
    async def scenario() -> None:
        probe = GatedProbe()
        changed: list[tuple[str, str]] = []
        watcher = observer(probe, changed=changed)
        trigger, source = queue_trigger("orders")
        watcher.observe(trigger, source)
        looking = asyncio.create_task(watcher.look_due())
        deadline = time.monotonic() + 5
        while probe.in_flight < 1:
            assert time.monotonic() < deadline, "the look never started"
            await asyncio.sleep(0.01)
        watcher.forget("team-a", "orders")
        probe.gate.set()
        await asyncio.wait_for(looking, 5)
        assert (len(watcher), changed) == (0, [])

    asyncio.run(scenario())


def test_run_keeps_looking_until_cancelled() -> None:
    async def scenario() -> None:
        probe = FakeProbe()
        watcher = observer(probe, interval_seconds=0.02)
        running = asyncio.create_task(watcher.run())
        await asyncio.sleep(0)
        watcher.observe(*queue_trigger("orders"))  # wakes the loop: looked at at once
        deadline = time.monotonic() + 5
        while len(probe.looked) < 3:
            assert time.monotonic() < deadline, f"looked {len(probe.looked)} times in 5 s"
            await asyncio.sleep(0.01)
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        assert running.cancelled()

    asyncio.run(scenario())
