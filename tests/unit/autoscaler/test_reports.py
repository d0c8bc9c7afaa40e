"""autoscaler/reports.py: the decisions recorded in status.autoscaler apart from the tick. A
tick offers them and returns; a few writers take them, the latest of each Function once; one
already recorded is not written again and withdraws a different one waiting, a failed one is
offered again, losing the lead drops what waits, and a deleted Function is forgotten."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from kubelambda.api.identity import FunctionKey
from kubelambda.autoscaler.decider import Decision, Observation, ScalerState
from kubelambda.autoscaler.reports import StatusReports
from kubelambda.autoscaler.service import AutoscalerService, WakeEndpoint
from support.waiting import wait_for_async

F = FunctionKey("ns", "fn")


class Target:
    """Records what is reported; each write waits for `opened` and may fail once."""

    def __init__(self, *, fail_first: bool = False) -> None:
        self.opened = asyncio.Event()
        self.opened.set()
        self.written: list[tuple[FunctionKey, int]] = []
        self.at_once = 0
        self.most_at_once = 0
        self.fail_first = fail_first

    async def report(self, function: FunctionKey, *, desired: int, reason: str) -> None:
        self.at_once += 1
        self.most_at_once = max(self.most_at_once, self.at_once)
        try:
            await self.opened.wait()
            await asyncio.sleep(0.005)
            if self.fail_first:
                self.fail_first = False
                raise ConnectionError("the API server is away")
            self.written.append((function, desired))
        finally:
            self.at_once -= 1


async def drained(reports: StatusReports) -> None:
    await wait_for_async(lambda: reports.unwritten == 0, seconds=10, what="every report written")


def test_no_more_than_the_writers_write_at_once_and_every_decision_is_written() -> None:
    async def body() -> Target:
        target = Target()
        reports = StatusReports(target, writers=2)
        for n in range(10):
            reports.offer(FunctionKey("ns", f"fn-{n}"), desired=n, reason="r")
        running = asyncio.create_task(reports.run())
        await drained(reports)
        running.cancel()
        return target

    target = asyncio.run(body())
    assert target.most_at_once == 2
    assert sorted(target.written) == [(FunctionKey("ns", f"fn-{n}"), n) for n in range(10)]


def test_a_decision_that_changes_while_it_waits_is_written_once_as_it_is_then() -> None:
    async def body() -> Target:
        target = Target()
        reports = StatusReports(target)
        reports.offer(F, desired=2, reason="r")
        reports.offer(F, desired=3, reason="r")
        assert reports.unwritten == 1
        running = asyncio.create_task(reports.run())
        await drained(reports)
        running.cancel()
        return target

    assert asyncio.run(body()).written == [(F, 3)]


def test_a_decision_recorded_is_not_written_again_and_a_new_one_is() -> None:
    async def body() -> Target:
        target = Target()
        reports = StatusReports(target)
        running = asyncio.create_task(reports.run())
        reports.offer(F, desired=2, reason="r")
        await drained(reports)
        assert reports.recorded(F, 2)
        reports.offer(F, desired=2, reason="again")
        assert reports.unwritten == 0
        reports.offer(F, desired=4, reason="r")
        await drained(reports)
        running.cancel()
        return target

    assert asyncio.run(body()).written == [(F, 2), (F, 4)]


def test_a_write_that_failed_is_not_taken_as_recorded() -> None:
    async def body() -> tuple[bool, Target]:
        target = Target(fail_first=True)
        reports = StatusReports(target)
        running = asyncio.create_task(reports.run())
        reports.offer(F, desired=2, reason="r")
        await drained(reports)
        failed_recorded = reports.recorded(F, 2)
        reports.offer(F, desired=2, reason="r")  # the next tick's offer
        await drained(reports)
        running.cancel()
        return failed_recorded, target

    failed_recorded, target = asyncio.run(body())
    assert not failed_recorded
    assert target.written == [(F, 2)]


class NoMetrics:
    async def observe(self, *, now: float) -> Mapping[FunctionKey, Observation]:
        return {}


class Replicas(Target):
    """A cluster of 100 Functions at one replica each, whose status writes wait for `opened`."""

    def known(self, function: FunctionKey) -> bool:
        return True

    def replicas(self, function: FunctionKey) -> int:
        return 1

    async def refresh(self, function: FunctionKey) -> None:
        pass

    async def fetch_function(self, function: FunctionKey) -> None:
        return None

    async def scale(self, function: FunctionKey, replicas: int, *, reason: str) -> None:
        pass


def _service(replicas: Replicas, lead: list[bool]) -> AutoscalerService:
    async def hold_lease() -> bool:
        return lead[0]

    service = AutoscalerService(
        source=NoMetrics(), replicas=replicas, hold_lease=hold_lease, wake=WakeEndpoint()
    )
    for n in range(100):
        service.function_event(
            "ADDED",
            {
                "apiVersion": "kubelambda.dev/v1alpha1",
                "kind": "Function",
                "metadata": {"name": f"fn-{n}", "namespace": "ns"},
                "spec": {
                    "runtime": "python3.12",
                    "handler": "app.handler",
                    "code": {"inline": {"files": {"app.py": "def handler(e, c):\n  return 1\n"}}},
                },
            },
        )
    return service


def test_a_tick_does_not_wait_for_its_decisions_to_be_recorded() -> None:
    """A new leader's first tick has a decision to record for every Function; it returns with
    them offered, and they are written after it."""

    async def body() -> tuple[int, Replicas]:
        replicas = Replicas()
        replicas.opened.clear()  # every status write hangs until opened
        service = _service(replicas, [True])
        running = asyncio.create_task(service.reports.run())
        await asyncio.wait_for(service._tick(), 2)
        waiting = service.reports.unwritten
        replicas.opened.set()
        await drained(service.reports)
        running.cancel()
        return waiting, replicas

    waiting, replicas = asyncio.run(body())
    assert waiting == 100
    assert len(replicas.written) == 100


def test_losing_the_lead_drops_the_decisions_that_wait() -> None:
    async def body() -> tuple[int, int]:
        replicas = Replicas()
        lead = [True]
        service = _service(replicas, lead)
        await service._tick()  # no writer runs: all 100 wait
        waiting = service.reports.unwritten
        lead[0] = False
        await service._tick()
        return waiting, service.reports.unwritten

    assert asyncio.run(body()) == (100, 0)


def test_a_decision_back_to_the_recorded_one_withdraws_the_one_waiting() -> None:
    """Recorded 2 for fn-0; then 3 decided, waiting while the writers are busy; then 2 again:
    the tick offers the recorded decision too, and 3 is never written."""
    function = FunctionKey("ns", "fn-0")

    async def body() -> Replicas:
        replicas = Replicas()
        service = _service(replicas, [True])

        async def no_tick() -> None:  # the decisions are set here, not computed
            pass

        service.autoscaler.tick = no_tick  # type: ignore[method-assign]
        decisions = service.autoscaler.decisions

        def decide(name: str, desired: int) -> None:
            decisions[FunctionKey("ns", name)] = Decision(desired, "r", ScalerState())

        running = asyncio.create_task(service.reports.run())
        decide("fn-0", 2)
        await service._tick()
        await drained(service.reports)
        replicas.opened.clear()
        decide("fn-1", 1)
        decide("fn-2", 1)
        await service._tick()  # both writers now wait on these two
        await asyncio.sleep(0.01)
        decide("fn-0", 3)
        await service._tick()  # 3 waits
        decide("fn-0", 2)
        await service._tick()  # back to what is recorded
        replicas.opened.set()
        await drained(service.reports)
        running.cancel()
        return replicas

    written = asyncio.run(body()).written
    assert (function, 2) in written
    assert (function, 3) not in written


def test_a_deleted_function_is_neither_recorded_nor_remembered() -> None:
    async def body() -> tuple[bool, int]:
        replicas = Replicas()
        service = _service(replicas, [True])
        running = asyncio.create_task(service.reports.run())
        await service._tick()
        await drained(service.reports)
        recorded = service.reports.recorded(FunctionKey("ns", "fn-0"), 1)
        service.function_event("DELETED", {"metadata": {"name": "fn-0", "namespace": "ns"}})
        running.cancel()
        return recorded, len(service.reports._written)

    assert asyncio.run(body()) == (True, 99)
