"""autoscaler/service.py's wake endpoint and the warm pool: a wake-up of a function at zero also
asks for a warm start, one that has replicas does not, and either way the Deployment is scaled
as before; the answer names the warm start's pod when it serves within a bound."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, MutableMapping
from typing import Any

import pytest

from kubelambda.api.identity import FunctionKey
from kubelambda.autoscaler import service as service_module
from kubelambda.autoscaler.decider import Observation
from kubelambda.autoscaler.service import (
    AutoscalerService,
    WakeEndpoint,
    WarmInstance,
    WarmStart,
)
from support.waiting import wait_for_async

FUNCTION = {
    "apiVersion": "kubelambda.dev/v1alpha1",
    "kind": "Function",
    "metadata": {"name": "fn", "namespace": "ns"},
    "spec": {
        "runtime": "python3.12",
        "handler": "app.handler",
        "code": {"inline": {"files": {"app.py": "def handler(e, c):\n    return 1\n"}}},
    },
}
KEY = FunctionKey("ns", "fn")


class NoMetrics:
    async def observe(self, *, now: float) -> Mapping[FunctionKey, Observation]:
        return {}


class Replicas:
    def __init__(self, count: int) -> None:
        self.count = count
        self.scaled: list[int] = []

    def known(self, function: FunctionKey) -> bool:
        return True

    async def refresh(self, function: FunctionKey) -> None:
        pass

    async def report(self, function: FunctionKey, *, desired: int, reason: str) -> None:
        pass

    async def fetch_function(self, function: FunctionKey) -> Mapping[str, Any] | None:
        return FUNCTION

    def replicas(self, function: FunctionKey) -> int:
        return self.count

    async def scale(self, function: FunctionKey, replicas: int, *, reason: str) -> None:
        self.count = replicas
        self.scaled.append(replicas)


def leading(*, replicas: Replicas, warm_start: WarmStart) -> AutoscalerService:
    """The service as the Lease holder, knowing FUNCTION."""
    service = AutoscalerService(
        source=NoMetrics(),
        replicas=replicas,
        hold_lease=lambda: asyncio.sleep(0, True),
        wake=WakeEndpoint(),
        warm_start=warm_start,
    )
    service.leading = True
    service.function_event("ADDED", FUNCTION)
    return service


async def wake(service: AutoscalerService) -> tuple[int, dict[str, Any]]:
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> MutableMapping[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/wake/ns/fn", "headers": []}
    await service.wake_app(scope, receive, send)
    return int(sent[0]["status"]), json.loads(sent[1]["body"])


@pytest.mark.parametrize(("replicas", "warm_starts", "scaled"), [(0, [KEY], [1]), (2, [], [])])
def test_a_wake_up_at_zero_asks_for_a_warm_start_and_still_scales(
    replicas: int, warm_starts: list[FunctionKey], scaled: list[int]
) -> None:
    asked: list[FunctionKey] = []
    target = Replicas(replicas)

    async def body() -> None:
        service = leading(replicas=target, warm_start=asked.append)
        assert await wake(service) == (202, {"replicas": max(replicas, 1)})

    asyncio.run(body())
    assert asked == warm_starts
    assert target.scaled == scaled


def test_a_failing_warm_start_leaves_the_deployment_path() -> None:
    target = Replicas(0)

    def broken(function: FunctionKey) -> None:
        raise RuntimeError("the pool is away")

    async def body() -> tuple[int, dict[str, Any]]:
        service = leading(replicas=target, warm_start=broken)
        return await wake(service)

    assert asyncio.run(body()) == (202, {"replicas": 1})
    assert target.scaled == [1]


def test_the_answer_names_the_pod_a_warm_start_made_and_the_deployment_scales_after_it() -> None:
    """The gateway sends to the named pod at once; the /scale read and the scale-up come after
    the answer (a trip to the API server, and a pod's start sharing the cores with the
    specialisation), and still come."""
    order: list[str] = []

    class Recorded(Replicas):
        async def refresh(self, function: FunctionKey) -> None:
            order.append("refresh")

    async def warm() -> WarmInstance | None:
        return WarmInstance(pod="pool-abc", ip="10.0.0.7", port=8080)

    def start(function: FunctionKey) -> asyncio.Future[WarmInstance | None]:
        order.append("warm start")
        return asyncio.ensure_future(warm())

    target = Recorded(0)

    async def body() -> None:
        service = leading(replicas=target, warm_start=start)
        assert await wake(service) == (
            202,
            {"replicas": 0, "instance": {"pod": "pool-abc", "ip": "10.0.0.7", "port": 8080}},
        )
        assert order == ["warm start"]
        await wait_for_async(lambda: target.scaled == [1], seconds=2, what="the scale-up")
        assert order == ["warm start", "refresh"]

    asyncio.run(body())


def test_a_slow_warm_start_is_not_waited_for_nor_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service_module, "WARM_ANSWER_SECONDS", 0.01)
    release = asyncio.Event()

    async def warm() -> WarmInstance | None:
        await release.wait()
        return WarmInstance(pod="pool-abc", ip="10.0.0.7", port=8080)

    async def body() -> None:
        task = asyncio.ensure_future(warm())
        service = leading(replicas=Replicas(0), warm_start=lambda function: task)
        assert await wake(service) == (202, {"replicas": 1})
        release.set()
        # It went on after the answer.
        assert await task == WarmInstance("pool-abc", "10.0.0.7", 8080)

    asyncio.run(body())
