"""Waking a function for the requests the activator (activation.py) holds: the platform is asked
for an instance at most once per interval per function, asked again while requests are still
held, and when it says the function cannot start, the held requests are answered 503. Asked
when no instance is ready or usable, and during a burst (FunctionState.bursting): each ask
carries the requests this gateway holds and has in flight for the function, which the
autoscaler adds up over the gateways and scales out on at once.
"""

from __future__ import annotations

import asyncio
import logging

from kubelambda.clock import Clock
from kubelambda.gateway.exceptions import Unavailable
from kubelambda.gateway.functionstate import FunctionState
from kubelambda.gateway.platform import Platform, PlatformError

__all__ = ["MAX_ASKING", "Waker"]

# Asks of one function under way at once: each is bounded (5 s on a cluster), so this bounds
# what a function that holds requests for long keeps open.
MAX_ASKING = 3

log = logging.getLogger(__name__)


class Waker:
    """Asks the platform to start an instance of a function that holds requests, and answers
    them when it cannot; the Activator calls it when no instance of the function is usable."""

    def __init__(
        self,
        *,
        platform: Platform,
        clock: Clock,
        interval_seconds: float,
        retry_after_seconds: float,
    ) -> None:
        self._platform = platform
        self._clock = clock
        self._interval = interval_seconds
        self._retry_after = retry_after_seconds
        self._tasks: set[asyncio.Task[None]] = set()

    def wake(self, state: FunctionState, now: float) -> None:
        """Ask the platform for an instance, at most once per wake interval per function, and
        at most MAX_ASKING asks of it at once."""
        loop = asyncio.get_running_loop()
        # Held requests keep asking every interval, in case the platform lost the ask, and to
        # report how many they are now: while an ask waits (one that scaled a Function from
        # zero waits up to 3 s for its first pod), a burst grows tenfold.
        if state.rewake is None:
            state.rewake = loop.call_later(self._interval, self._rewake, state)
        if now - state.last_wake < self._interval or state.asking >= MAX_ASKING:
            return
        state.last_wake = now
        state.asking += 1
        task = loop.create_task(self._call_wake(state))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _call_wake(self, state: FunctionState) -> None:
        try:
            await self._platform.wake(state.key, concurrency=state.in_flight + len(state.waiters))
        except PlatformError as exc:
            self.fail(state, f"function {state.key} cannot start: {exc}")
        except Exception:
            log.exception("asking the platform to wake %s failed", state.key)
        finally:
            state.asking -= 1

    def _rewake(self, state: FunctionState) -> None:
        state.rewake = None
        now = self._clock.monotonic()
        if state.waiters and (not state.usable(now) or state.bursting()):
            self.wake(state, now)

    def fail(self, state: FunctionState, message: str) -> None:
        """Answer every request `state` holds with 503 and `message`."""
        while state.waiters:
            waiter = state.waiters.popleft()
            if not waiter.future.done():
                waiter.future.set_exception(Unavailable(message, retry_after=self._retry_after))

    def cancel(self, state: FunctionState) -> None:
        """Stop asking again for `state` (the gateway is stopping)."""
        if state.rewake is not None:
            state.rewake.cancel()
            state.rewake = None

    async def aclose(self) -> None:
        """Cancel the wakes under way and wait for them to end."""
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
