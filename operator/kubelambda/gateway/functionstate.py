"""One function as the activator (activation.py) sees it: its ready instances as slots, the
requests it holds, its counters; and the choice of a slot for a request: the one with the
fewest requests in flight, rotating among equals, never above an instance's concurrency, and
leaving out for a while those that refused a connection or answered 429."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from kubelambda.api.identity import FunctionKey
from kubelambda.gateway.platform import Instance

__all__ = ["BURST", "FunctionLoad", "FunctionState", "Slot", "Waiter"]

# Requests held and in flight, over what the ready instances take at once, that make a burst:
# the autoscaler's panic threshold (autoscaler/decider.py's Tuning), by default.
BURST = 2


@dataclass(frozen=True, slots=True)
class FunctionLoad:
    """One function's counters, for the metrics and local mode's autoscaler."""

    in_flight: int
    queued: int
    ready_instances: int
    capacity: int
    requests_total: int
    last_request_at: float | None  # on the activator's clock (monotonic)


class Slot:
    """One ready instance: its requests in flight, and until when it is left out."""

    __slots__ = ("ejected_until", "in_flight", "instance")

    def __init__(self, instance: Instance) -> None:
        self.instance = instance
        self.in_flight = 0
        self.ejected_until = 0.0


class Waiter:
    """A held request: its future gets a slot; `cold` when no instance was ready."""

    __slots__ = ("cold", "future", "since")

    def __init__(self, future: asyncio.Future[Slot], since: float, cold: bool) -> None:
        self.future = future
        self.since = since
        self.cold = cold


class FunctionState:
    """One function's ready instances as slots, in the order they are tried, its held
    requests, and what the Activator counts and times for it."""

    __slots__ = (
        "asking",
        "grew_at",
        "in_flight",
        "key",
        "last_request",
        "last_wake",
        "order",
        "over_since",
        "redispatch",
        "requests",
        "rewake",
        "rotation",
        "service",
        "slots",
        "waiters",
    )

    def __init__(self, key: FunctionKey) -> None:
        self.key = key
        self.slots: dict[str, Slot] = {}
        self.order: tuple[Slot, ...] = ()
        self.waiters: deque[Waiter] = deque()
        self.in_flight = 0
        self.requests = 0
        self.last_request: float | None = None
        self.last_wake = float("-inf")
        self.asking = 0  # wake-ups of it under way (waking.py)
        self.rewake: asyncio.TimerHandle | None = None
        # Dispatches again when the first left-out slot with room is back (Activator).
        self.redispatch: asyncio.TimerHandle | None = None
        self.rotation = 0
        # Mean seconds a lease is held (moving average): how fast a busy slot frees up.
        self.service = 0.0
        # When the ready instances last grew: capacity may still be arriving after that.
        self.grew_at = float("-inf")
        # Since when held requests would wait over the bound for a busy instance.
        self.over_since: float | None = None

    def pick(self, clock: Callable[[], float]) -> Slot | None:
        """The usable slot with the fewest requests in flight, rotating among equals; `clock`
        is read only if a slot is left out."""
        order = self.order
        count = len(order)
        if count == 0:
            return None
        start = self.rotation
        best: Slot | None = None
        now = 0.0
        for offset in range(count):
            slot = order[(start + offset) % count]
            if slot.in_flight >= slot.instance.concurrency:
                continue
            if slot.ejected_until:
                now = now or clock()
                if slot.ejected_until > now:
                    continue
                slot.ejected_until = 0.0
            if best is None or slot.in_flight < best.in_flight:
                best = slot
                if slot.in_flight == 0:
                    break
        if best is not None:
            self.rotation = (start + 1) % count
        return best

    def usable(self, now: float) -> bool:
        """Whether any ready instance is not left out."""
        return any(slot.ejected_until <= now for slot in self.order)

    def bursting(self) -> bool:
        """Whether the requests held and in flight are at least BURST times what the ready
        instances take at once: the autoscaler's panic threshold, which a wake-up carrying
        them lets it act on now (waking.py)."""
        capacity = sum(slot.instance.concurrency for slot in self.order)
        return self.in_flight + len(self.waiters) >= BURST * capacity

    def assign(self, slot: Slot) -> None:
        slot.in_flight += 1
        self.in_flight += 1
        self.requests += 1

    def set_instances(self, instances: Sequence[Instance]) -> None:
        """The ready instances now. Slots keep their in-flight counts across updates; requests
        on an instance that left finish (or fail) on their own and release a slot nobody picks
        any more."""
        previous = self.slots
        slots: dict[str, Slot] = {}
        for instance in instances:
            slot = previous.get(instance.id)
            if slot is None:
                slot = Slot(instance)
            else:
                slot.instance = instance
            slots[instance.id] = slot
        self.slots = slots
        self.order = tuple(slots.values())
        self.rotation = 0

    def load(self) -> FunctionLoad:
        return FunctionLoad(
            in_flight=self.in_flight,
            queued=len(self.waiters),
            ready_instances=len(self.order),
            capacity=sum(slot.instance.concurrency for slot in self.order),
            requests_total=self.requests,
            last_request_at=self.last_request,
        )
