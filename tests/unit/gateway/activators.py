"""What the activation tests share (test_activation, test_lease, test_waking): one function,
its instances, an activator on the system clock, and how many requests it holds."""

from __future__ import annotations

from typing import Any

from kubelambda.api.identity import FunctionKey
from kubelambda.clock import SystemClock
from kubelambda.gateway.activation import Activator
from kubelambda.gateway.platform import FakePlatform, Instance

FN = FunctionKey("default", "fn")
CLOCK = SystemClock()


def activator(platform: FakePlatform, *, max_queued: int = 10, **options: Any) -> Activator:
    return Activator(platform=platform, clock=CLOCK, max_queued=max_queued, **options)


def soon(seconds: float = 5.0) -> float:
    return CLOCK.monotonic() + seconds


def instance(name: str, concurrency: int = 1) -> Instance:
    return Instance(id=name, host="127.0.0.1", port=1, concurrency=concurrency)


def queued(act: Activator) -> int:
    load = act.snapshot().get(FN)
    return load.queued if load is not None else 0
