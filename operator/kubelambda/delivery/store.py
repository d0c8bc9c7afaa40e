"""Where asynchronous invocations wait for delivery: the `DeliveryStore` seam and its
bounded in-memory implementation.

The gateway's sources offer (or admit) accepted events; the dispatcher takes due ones and
reports each try's outcome. A durable store (`files.py`, surviving gateway restarts) or a
broker-backed one replaces the memory one behind the same calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
from collections.abc import Sequence
from typing import Protocol

from kubelambda.clock import Clock
from kubelambda.delivery.jobs import DeliveryJob

__all__ = ["DeliveryStore", "DueJobs", "MemoryDeliveryStore"]


class DeliveryStore(Protocol):
    """A bounded set of jobs, each either waiting (until its due time) or taken.

    Every call may wait on a disk or a broker, so every call is awaited.
    """

    async def admit(self, jobs: Sequence[DeliveryJob]) -> bool:
        """Accept all of `jobs` (due now) once they are as durable as the store makes
        them, or none: False when they do not fit. Raises OSError when they cannot be
        recorded; the caller answers so that its client sends them again."""
        ...

    async def take(self) -> DeliveryJob:
        """The next due job, waiting for one; callers bound the wait with asyncio.timeout,
        and a cancelled take takes nothing."""
        ...

    async def retry(self, job: DeliveryJob, *, due: float) -> None:
        """Put a taken job back, due at `due` (store clock)."""
        ...

    async def done(self, job: DeliveryJob) -> None:
        """Forget a taken job: delivered, dead-lettered or given up."""
        ...

    def __len__(self) -> int:
        """Jobs this process holds, waiting or taken (a broker holds the rest)."""
        ...


class DueJobs:
    """Jobs ordered by due time, and a wait for the next one to fall due.

    Both stores keep their jobs here; they differ only in what they write down besides.
    """

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._heap: list[tuple[float, int, DeliveryJob]] = []
        self._sequence = itertools.count()
        self._changed = asyncio.Event()
        self.taken = 0

    def __len__(self) -> int:
        return len(self._heap) + self.taken

    def push(self, job: DeliveryJob) -> None:
        heapq.heappush(self._heap, (job.due, next(self._sequence), job))
        self._changed.set()

    async def take(self) -> DeliveryJob:
        while True:
            now = self._clock.monotonic()
            if self._heap and self._heap[0][0] <= now:
                _, _, job = heapq.heappop(self._heap)
                self.taken += 1
                return job
            self._changed.clear()
            if not self._heap:
                await self._changed.wait()
                continue
            # Sleep until the earliest job falls due, or until a new one arrives.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._heap[0][0] - now):
                    await self._changed.wait()

    def release(self) -> None:
        """A taken job is back in the heap or gone."""
        self.taken -= 1


class MemoryDeliveryStore:
    """Jobs in a heap by due time; lost when the gateway stops."""

    def __init__(self, *, capacity: int, clock: Clock) -> None:
        self.capacity = capacity
        self._clock = clock
        self._jobs = DueJobs(clock)

    def __len__(self) -> int:
        return len(self._jobs)

    def offer(self, job: DeliveryJob) -> bool:
        """Accept a new job, due now; False when the store is full."""
        if len(self) >= self.capacity:
            return False
        job.due = self._clock.monotonic()
        self._jobs.push(job)
        return True

    async def admit(self, jobs: Sequence[DeliveryJob]) -> bool:
        if len(self) + len(jobs) > self.capacity:
            return False
        for job in jobs:
            self.offer(job)
        return True

    async def take(self) -> DeliveryJob:
        return await self._jobs.take()

    async def retry(self, job: DeliveryJob, *, due: float) -> None:
        self._jobs.release()
        job.due = due
        self._jobs.push(job)

    async def done(self, job: DeliveryJob) -> None:
        self._jobs.release()
