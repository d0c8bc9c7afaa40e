"""How late the gateway's event loop runs: the activator refuses new requests at once
(GatewayOverloaded, 503 with Retry-After) while it runs late lastingly, since holding more would
only make every answer later (activation.py)."""

from __future__ import annotations

import asyncio
from collections import deque

__all__ = ["LoopLag"]


class LoopLag:
    """How late the running event loop runs, lastingly: every request waits about that long for
    its turn, whatever its function does. A timer is set every `interval` seconds; the lag is
    the least lateness of the last `ticks` timers, so a single stall (a pause of the process, a
    slow callback) reads as on time and only a standing backlog reads as late.
    """

    def __init__(self, *, interval: float = 0.05, ticks: int = 2) -> None:
        self._interval = interval
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._due = 0.0
        self._recent: deque[float] = deque([0.0] * ticks, maxlen=ticks)

    def __call__(self) -> float:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # first use, or a new loop (tests)
            self.close()
            self._loop = loop
            self._recent.extend([0.0] * len(self._recent))
            self._arm(loop)
        return min(self._recent)

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        self._due = loop.time() + self._interval
        self._timer = loop.call_at(self._due, self._tick, loop)

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        self._recent.append(loop.time() - self._due)
        self._arm(loop)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
