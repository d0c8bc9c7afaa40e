"""A lease: one instance's slot, granted by the activator (activation.py) for one upstream call,
and given back exactly once with how the call went (Outcome). The invoker (invocation.py) holds
it from `Activator.acquire` until the instance has answered.
"""

from __future__ import annotations

import enum

from kubelambda.clock import Clock
from kubelambda.gateway.functionstate import FunctionState, Slot
from kubelambda.gateway.limits import Permit
from kubelambda.gateway.platform import Instance

__all__ = ["Lease", "Lessor", "Outcome"]


class Outcome(enum.Enum):
    """How an upstream call went, as far as choosing instances is concerned."""

    OK = "ok"
    REFUSED = "refused"  # could not connect: leave the instance out for a while
    BUSY = "busy"  # the instance answered 429: leave it out briefly


class Lessor:
    """What grants leases and takes their slots back: the Activator (activation.py) is its
    subclass. A base class, so that this module need not import activation.py, which imports
    it; compiled, giving a slot back stays a native call. `clock` is the one its leases time
    their calls by."""

    clock: Clock

    def give_back(self, state: FunctionState, slot: Slot, outcome: Outcome) -> None:
        raise NotImplementedError


class Lease:
    """A slot on one instance, held for one upstream call; release it exactly once.

    `waited` is how long the request was held (0 when a slot was free); `cold` says
    whether it was held because no instance was ready (a cold start).
    """

    __slots__ = (
        "_activator",
        "_released",
        "_slot",
        "_started",
        "_state",
        "cold",
        "permit",
        "waited",
    )

    def __init__(
        self,
        activator: Lessor,
        state: FunctionState,
        slot: Slot,
        *,
        started: float,
        waited: float,
        cold: bool,
    ) -> None:
        self._activator = activator
        self._state = state
        self._slot = slot
        self._released = False
        self._started = started  # when the slot was granted, on the activator's clock
        self.waited = waited
        self.cold = cold
        self.permit: Permit | None = None  # counted against the function's limits

    @property
    def instance(self) -> Instance:
        return self._slot.instance

    def give_up(self) -> None:
        """Release a lease never used (its holder went away first): its slot and permit back,
        no service time measured."""
        if self._released:
            return
        self._released = True
        if self.permit is not None:
            self.permit.release()
        self._activator.give_back(self._state, self._slot, Outcome.OK)

    def release(self, outcome: Outcome = Outcome.OK, *, now: float | None = None) -> None:
        if self._released:  # `now`: the activator's clock, when the caller has just read it
            return
        self._released = True
        if outcome is Outcome.OK:
            now = self._activator.clock.monotonic() if now is None else now
            # A moving average of how long a slot stays taken: the rate held requests drain at.
            state, seconds, service = self._state, now - self._started, self._state.service
            state.service = seconds if not service else service + 0.1 * (seconds - service)
        if self.permit is not None:
            # An instance that refused did not run it: the invoker's retry takes a new permit.
            self.permit.release(refund=outcome is not Outcome.OK)
        self._activator.give_back(self._state, self._slot, outcome)
