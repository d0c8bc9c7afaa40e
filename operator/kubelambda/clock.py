"""The data path's clock: monotonic time for deadlines, wall time for the headers that carry them.

Every component of the data path that measures or waits (the gateway, the delivery
stores, the dispatcher) takes a `Clock`, so tests can pin time; `SystemClock` is what
the processes run with.
"""

from __future__ import annotations

import time
from typing import Final, Protocol

__all__ = ["Clock", "FakeClock", "ScaledClock", "SystemClock"]


class Clock(Protocol):
    """Where the data path reads time; waits themselves run on the event loop's timer."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back; deadlines are on this clock."""
        ...

    def wall(self) -> float:
        """Seconds since the epoch, for deadlines sent to instances and event timestamps."""
        ...


# Bound once: compiled (setup.py), `time.monotonic()` is a lookup on the module at every call,
# and the data path reads the clock several times per request.
_monotonic: Final = time.monotonic
_time: Final = time.time


class SystemClock:
    """The process's clocks."""

    def monotonic(self) -> float:
        return _monotonic()

    def wall(self) -> float:
        return _time()


class FakeClock:
    """A clock that moves only when told to, for tests of deadline arithmetic."""

    def __init__(self, *, monotonic: float = 1000.0, wall: float = 1_700_000_000.0) -> None:
        self._monotonic = monotonic
        self._wall = wall

    def monotonic(self) -> float:
        return self._monotonic

    def wall(self) -> float:
        return self._wall

    def advance(self, seconds: float) -> None:
        self._monotonic += seconds
        self._wall += seconds


class ScaledClock:
    """Time running `speed` times as fast as the system's since an origin: a test or a demo
    drives a schedule's ticks faster through the same code that runs in production.

    The wall clock's origin is the day's start (UTC) unless given, so processes started at
    different moments (an operator and its replacement) read the same scaled time."""

    def __init__(
        self, speed: float, base: Clock | None = None, *, origin: float | None = None
    ) -> None:
        self._base = base or SystemClock()
        self._speed = speed
        self._monotonic0 = self._base.monotonic()
        now = self._base.wall()
        self._wall0 = origin if origin is not None else now - now % 86400

    def monotonic(self) -> float:
        return self._monotonic0 + (self._base.monotonic() - self._monotonic0) * self._speed

    def wall(self) -> float:
        return self._wall0 + (self._base.wall() - self._wall0) * self._speed
