"""The reconcile queue: keys of objects to reconcile, each queued once and handled by one
worker at a time, with per-key exponential backoff for failures.

kopf's event handlers and the resync timer ``add`` keys; the operator's workers ``get`` them
and mark them ``done``. Like client-go's workqueue, a key added while it is being handled is
handled again afterwards, so no change is lost and no object is reconciled twice at once.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Hashable
from typing import Generic, TypeVar

__all__ = ["WorkQueue"]

K = TypeVar("K", bound=Hashable)


class WorkQueue(Generic[K]):
    """Deduplicating FIFO of keys. Create and use it on one event loop."""

    def __init__(self, *, base_delay: float = 0.5, max_delay: float = 300.0) -> None:
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._ready: deque[K] = deque()
        self._queued: set[K] = set()
        self._active: set[K] = set()
        self._dirty: set[K] = set()
        self._failures: dict[K, int] = {}
        self._timers: dict[K, asyncio.TimerHandle] = {}
        self._nonempty = asyncio.Event()
        self._drained = asyncio.Event()  # set while no key waits for a worker
        self._drained.set()

    def __len__(self) -> int:
        return len(self._ready)

    async def drained(self) -> None:
        """Returns once no key waits for a worker (keys may still be being handled)."""
        await self._drained.wait()

    def busy(self) -> bool:
        """True while a key is queued or being handled (delayed adds do not count)."""
        return bool(self._ready or self._active)

    def handling(self, key: K) -> bool:
        """True while a worker handles ``key`` (between ``get`` and ``done``)."""
        return key in self._active

    def add(self, key: K) -> None:
        if key in self._queued:
            return
        if key in self._active:
            self._dirty.add(key)
            return
        self._queued.add(key)
        self._ready.append(key)
        self._nonempty.set()
        self._drained.clear()

    def add_after(self, key: K, delay: float) -> None:
        """Add ``key`` in ``delay`` seconds; an earlier pending add of the key wins."""
        loop = asyncio.get_running_loop()
        due = loop.time() + delay
        pending = self._timers.get(key)
        if pending is not None:
            if pending.when() <= due:
                return
            pending.cancel()
        self._timers[key] = loop.call_at(due, self._fire, key)

    def _fire(self, key: K) -> None:
        self._timers.pop(key, None)
        self.add(key)

    async def get(self) -> K:
        """The next key; it counts as being handled until ``done``."""
        while not self._ready:
            self._nonempty.clear()
            await self._nonempty.wait()
        key = self._ready.popleft()
        if not self._ready:
            self._drained.set()
        self._queued.discard(key)
        self._active.add(key)
        return key

    def done(self, key: K) -> None:
        self._active.discard(key)
        if key in self._dirty:
            self._dirty.discard(key)
            self.add(key)

    def retry(self, key: K) -> float:
        """Add ``key`` again after a backoff that doubles with each failure; returns the delay."""
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        delay: float = min(self.base_delay * 2.0**failures, self.max_delay)
        self.add_after(key, delay)
        return delay

    def failing(self) -> list[K]:
        """The keys whose last handling failed (they wait for a retry, or are being retried)."""
        return list(self._failures)

    def forget(self, key: K) -> None:
        """Reset ``key``'s backoff after a success."""
        self._failures.pop(key, None)

    def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
