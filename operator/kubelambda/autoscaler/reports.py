"""The autoscaler's decisions written to each Function's status (``status.autoscaler``), apart
from its tick.

The status is for people (``kubectl get fn`` shows why a Function has the replicas it has);
scaling must not wait for it. Written in the tick, one after another, a new leader's first tick
had a decision to record for every Function: with 15,000 Functions that tick took 79 s at 5 ms
a write (benchmarks/scale_autoscaler_tick.py), and no Function scaled meanwhile. So the tick
only offers each decision here, and a few writers take them in the background: the latest
decision of each Function waits (one entry a Function, so what waits is bounded by the
Functions), and one that changes while it waits is written once, as it is by then.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final, Protocol

from kubelambda.api.identity import FunctionKey

__all__ = ["REPORT_WRITERS", "ReportTarget", "StatusReports"]

logger = logging.getLogger(__name__)

# Status writes at once: the operator runs the autoscaler's cluster calls on 4 threads, and
# the lease and the scale calls keep the other two.
REPORT_WRITERS: Final = 2


class ReportTarget(Protocol):
    """Where a decision is recorded (platforms/kubernetes/replicas.py: status.autoscaler)."""

    async def report(self, function: FunctionKey, *, desired: int, reason: str) -> None: ...


class StatusReports:
    """Decisions waiting to be written to `target`, `writers` at a time, while `run` runs."""

    def __init__(self, target: ReportTarget, *, writers: int = REPORT_WRITERS) -> None:
        self._target = target
        self._writers = writers
        self._waiting: dict[FunctionKey, tuple[int, str]] = {}
        self._written: dict[FunctionKey, int] = {}  # the replicas last recorded, by Function
        self._writing = 0
        self._more = asyncio.Event()

    @property
    def unwritten(self) -> int:
        """Decisions waiting or being written."""
        return len(self._waiting) + self._writing

    def recorded(self, function: FunctionKey, desired: int) -> bool:
        """Whether `desired` is what was last recorded for `function`."""
        return self._written.get(function) == desired

    def offer(self, function: FunctionKey, *, desired: int, reason: str) -> None:
        """Record `desired` for `function` unless it is what was last recorded; a decision of
        the same Function still waiting is replaced."""
        if self.recorded(function, desired):
            self._waiting.pop(function, None)
            return
        self._waiting[function] = (desired, reason)
        self._more.set()

    def remove(self, function: FunctionKey) -> None:
        """`function` is gone: nothing to record for it, nor to remember."""
        self._waiting.pop(function, None)
        self._written.pop(function, None)

    def forget(self) -> None:
        """Drop what waits (the lead is lost: the next leader records its own decisions)."""
        self._waiting.clear()

    async def run(self) -> None:
        """Write what is offered, until cancelled."""
        await asyncio.gather(*(self._write() for _ in range(self._writers)))

    async def _write(self) -> None:
        while True:
            while not self._waiting:
                self._more.clear()
                await self._more.wait()
            function = next(iter(self._waiting))  # the longest waiting
            desired, reason = self._waiting.pop(function)
            self._writing += 1
            try:
                await self._target.report(function, desired=desired, reason=reason)
            except Exception as exc:  # offered again at the next tick
                logger.warning("recording the decision for %s failed: %s", function, exc)
            else:
                self._written[function] = desired
            finally:
                self._writing -= 1
