"""Activation and load balancing: hands each request a slot on a ready instance, or holds it.

The invoker asks for a slot before every upstream call: `lease_now`, then `hold`, from the
warm path's callbacks; `acquire`, which awaits `hold`, in a task. With a free slot it is granted
at once (least in-flight instance, never above its concurrency) with a Lease
(lease.py); otherwise the request waits in the function's bounded queue, the platform is
woken when no instance is ready (waking.py), and the wait ends when the platform reports an
instance or a slot is released. Overflow is refused at once (503, Retry-After), never held to
time out: a full queue, a warm function whose queue its instances would not drain in time, a
gateway running late.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable, Sequence

from kubelambda.api.identity import FunctionKey
from kubelambda.clock import Clock
from kubelambda.gateway.exceptions import (
    ClientDisconnected,
    DeadlineExceeded,
    GatewayOverloaded,
    HoldQueueFull,
)
from kubelambda.gateway.functionstate import FunctionLoad, FunctionState, Slot, Waiter
from kubelambda.gateway.lease import Lease, Lessor, Outcome
from kubelambda.gateway.limits import FunctionLimits, Permit
from kubelambda.gateway.overload import LoopLag
from kubelambda.gateway.platform import Instance, Platform
from kubelambda.gateway.waking import Waker

__all__ = ["Activator"]


class Activator(Lessor):
    """Per-function instance slots and held requests, kept current by platform notifications.

    Overflow is answered at once, with Retry-After: HoldQueueFull when a function already
    holds `max_queued` requests, or when it has ready instances, all busy, whose queue would
    take them over `max_hold_wait_seconds` to reach and has for that long without the ready
    instances growing (a cold start's backlog is exempt: capacity is still coming); and
    GatewayOverloaded while the event loop runs over `max_loop_lag_seconds` late, lastingly
    (the gateway itself is the bottleneck: holding more would only make every answer later).
    """

    def __init__(
        self,
        *,
        platform: Platform,
        clock: Clock,
        max_queued: int,
        retry_after_seconds: float = 1.0,
        wake_interval_seconds: float = 1.0,
        eject_seconds: float = 1.0,
        busy_eject_seconds: float = 0.05,
        max_hold_wait_seconds: float = 2.0,
        max_loop_lag_seconds: float = 1.0,
        loop_lag: Callable[[], float] | None = None,
        limits: FunctionLimits | None = None,
    ) -> None:
        self._platform = platform
        self._limits = limits
        self.clock = clock
        self.max_queued = max_queued
        self._retry_after = retry_after_seconds
        self._max_hold_wait = max_hold_wait_seconds
        self._max_lag = max_loop_lag_seconds
        self._lag_monitor: LoopLag | None = None
        if loop_lag is None:
            loop_lag = self._lag_monitor = LoopLag()
        self._loop_lag = loop_lag
        self._waker = Waker(
            platform=platform,
            clock=clock,
            interval_seconds=wake_interval_seconds,
            retry_after_seconds=retry_after_seconds,
        )
        self._eject_seconds = eject_seconds
        self._busy_eject_seconds = busy_eject_seconds
        self._states: dict[FunctionKey, FunctionState] = {}
        self._unsubscribe: Callable[[], None] | None = platform.subscribe(self._on_instances)

    async def acquire(
        self,
        key: FunctionKey,
        *,
        deadline: float,
        gone: Callable[[], Awaitable[object]] | None = None,
    ) -> Lease:
        """A lease on an instance of `key`, waiting until `deadline` (clock time) if needed.

        `gone` returns when the client disconnects; it is watched only while the request
        is held, so a client that gave up does not keep a place in the queue.

        Raises HoldQueueFull when the function already holds `max_queued` requests,
        DeadlineExceeded when the deadline passes first, Unavailable when the platform
        says the function cannot start, ClientDisconnected when `gone` returns first.
        GatewayOverloaded while the gateway's event loop runs late; Throttled (429) at once
        when the function's reserved concurrency or rate limit is reached (limits.py).
        Cancelled, it gives back its place in the queue, or the slot handed over meanwhile.
        """
        told: asyncio.Future[Lease] = asyncio.get_running_loop().create_future()
        holding = self.hold(key, deadline=deadline, gone=gone, then=functools.partial(_tell, told))
        try:
            return await told
        except BaseException:
            if holding is not None:
                holding.cancel()  # still held: out of the queue, its permit back
            if told.done() and not told.cancelled() and told.exception() is None:
                told.result().give_up()  # told its slot, cancelled before it resumed
            # Failed (ClientDisconnected, DeadlineExceeded, Unavailable), `told` and the holding
            # keep the exception, whose traceback holds this frame: let go of them, or the
            # request's frames and objects wait for a full collection.
            del told, holding
            raise

    def lease_now(self, key: FunctionKey) -> Lease | None:
        """A lease on a free slot of `key` now, as `acquire` would return at once; None when
        the request would be held (no free slot, or requests held before it): nothing was
        taken, and `acquire` holds it. Raises as `acquire` does before holding."""
        self._check_lag()
        state = self._states.get(key)
        if state is None or state.waiters:
            return None  # new to this gateway (acquire reads its instances), or others held
        permit = None if self._limits is None else self._limits.admit(key)
        lease = self._free_lease(state, self.clock.monotonic())
        if lease is None:
            if permit is not None:
                permit.release(refund=True)  # acquire takes it again
            return None
        lease.permit = permit
        return lease

    def _check_lag(self) -> None:
        lag = self._loop_lag()
        if lag > self._max_lag:
            raise GatewayOverloaded(
                f"the gateway is overloaded: it runs {lag:.1f}s behind (bound "
                f"{self._max_lag:g}s); try again later",
                retry_after=self._retry_after,
            )

    def _free_or_held(self, key: FunctionKey) -> tuple[FunctionState, float, Lease | None]:
        """`key`'s state, now, and a lease on a free slot unless requests are held before
        this one (None: this one is to be held)."""
        state = self._states.get(key)
        if state is None:
            state = self._new_state(key)
        now = self.clock.monotonic()
        lease = None if state.waiters else self._free_lease(state, now)
        state.last_request = now
        return state, now, lease

    def _free_lease(self, state: FunctionState, now: float) -> Lease | None:
        """A lease on the least busy free slot of `state`, taken at `now`; None when none is."""
        state.last_request = now
        slot = state.pick(self.clock.monotonic)
        if slot is None:
            return None
        slot.in_flight += 1  # state.assign, written out: this runs for every invocation
        state.in_flight += 1
        state.requests += 1
        return Lease(self, state, slot, started=now, waited=0.0, cold=False)

    def hold(
        self,
        key: FunctionKey,
        *,
        deadline: float,
        gone: Callable[[], Awaitable[object]] | None,
        then: Callable[[Lease | BaseException], None],
    ) -> _Holding | None:
        """Hold a request without a task: `then` is told its lease, or the error of its wait
        (DeadlineExceeded, Unavailable, ClientDisconnected), once: before this returns when a
        slot is free (returning None), else from the loop (returning the holding, which the
        holder may cancel). Raises at once when it may not be held (GatewayOverloaded,
        Throttled, HoldQueueFull, DeadlineExceeded). The warm path holds so; `acquire` awaits
        it. (Held in a task, a request is the task, its coroutines and a timeout's context: what
        a function at its instances' concurrency would pay for every request.)"""
        self._check_lag()
        permit = None if self._limits is None else self._limits.admit(key)
        try:
            state, now, lease = self._free_or_held(key)
            waiter = None if lease is not None else self._enqueue(state, now, deadline)
        except BaseException:
            if permit is not None:
                permit.release()
            raise
        # Told outside the try: a failure of `then` must not give back the lease's permit.
        if waiter is None:
            assert lease is not None  # a lease, or a place in the queue
            lease.permit = permit
            then(lease)
            return None
        return _Holding(self, state, waiter, deadline - now, gone, permit, then)

    def _enqueue(self, state: FunctionState, now: float, deadline: float) -> Waiter:
        """Hold a request in `state`'s queue from `now`, waking the platform if it must; raises
        HoldQueueFull or DeadlineExceeded instead when it may not be held."""
        if len(state.waiters) >= self.max_queued:
            raise HoldQueueFull(
                f"function {state.key} already holds {self.max_queued} requests; try again later",
                retry_after=self._retry_after,
            )
        if deadline <= now:
            raise DeadlineExceeded(f"no time left to wait for an instance of {state.key}")
        # Cold: the platform reports no ready instance (as opposed to all of them busy).
        cold = not state.order
        if not cold:
            self._refuse_long_wait(state, now)
        waiter = Waiter(asyncio.get_running_loop().create_future(), now, cold)
        state.waiters.append(waiter)
        if cold or not state.usable(now) or state.bursting():
            self._waker.wake(state, now)
        # Held for a left-out instance (it answered 429 or refused just before): dispatch when
        # it is back, since no release may come to do it.
        self._dispatch_when_back(state)
        return waiter

    def _too_late(self, state: FunctionState, waiter: Waiter) -> DeadlineExceeded:
        """The error of a request held to its deadline."""
        waited = self.clock.monotonic() - waiter.since
        why = "became ready" if waiter.cold else "had a free slot"
        return DeadlineExceeded(f"no instance of {state.key} {why} within {waited:.1f}s")

    def _granted_lease(self, state: FunctionState, waiter: Waiter, slot: Slot) -> Lease:
        """The lease on `slot`, handed to the held `waiter`."""
        granted_at = self.clock.monotonic()
        return Lease(
            self,
            state,
            slot,
            started=granted_at,
            waited=granted_at - waiter.since,
            cold=waiter.cold,
        )

    def _refuse_long_wait(self, state: FunctionState, now: float) -> None:
        """Raise HoldQueueFull when the busy instances would take over `max_hold_wait` to reach
        this request and have for that long: more than they serve keeps arriving, and holding
        it would only lengthen every held request's wait until the hold deadline."""
        waiters = state.waiters
        if not waiters:
            state.over_since = None  # the queue drained since it was last over
        if not state.service or (waiters and waiters[0].cold):
            return  # nothing measured yet, or a cold start's backlog is still ahead
        if now - state.grew_at < self._max_hold_wait:
            state.over_since = None  # instances are arriving: give them time
            return
        slots = sum(s.instance.concurrency for s in state.order if s.ejected_until <= now)
        wait = (len(waiters) + 1) * state.service / slots if slots else float("inf")
        if wait <= self._max_hold_wait:
            state.over_since = None
            return
        if state.over_since is None:
            state.over_since = now
        if now - state.over_since >= self._max_hold_wait:
            raise HoldQueueFull(
                f"every instance of {state.key} is busy and the {len(waiters)} requests held "
                f"would take them about {wait:.1f}s (bound {self._max_hold_wait:g}s); try "
                "again later",
                retry_after=self._retry_after,
            )

    @staticmethod
    def _watch(
        waiter: Waiter, gone: Callable[[], Awaitable[object]] | None
    ) -> asyncio.Future[object] | None:
        """A task that fails the held `waiter` with ClientDisconnected should `gone` return
        first (the client left); None without `gone`. Cancel it once the wait ends."""
        if gone is None:
            return None
        watcher = asyncio.ensure_future(gone())
        # Not a closure over `waiter`: its holder lets go of it, the callback keeps its own.
        watcher.add_done_callback(functools.partial(Activator._abandon, waiter))
        return watcher

    @staticmethod
    def _abandon(waiter: Waiter, _watcher: object = None) -> None:
        if not waiter.future.done():
            waiter.future.set_exception(ClientDisconnected("the client left while held"))

    @staticmethod
    def _drop(state: FunctionState, waiter: Waiter) -> None:
        # It may already be off the queue, taken by _dispatch or Waker.fail.
        with contextlib.suppress(ValueError):
            state.waiters.remove(waiter)

    def _new_state(self, key: FunctionKey) -> FunctionState:
        state = self._states[key] = FunctionState(key)
        state.set_instances(self._platform.ready_instances(key))
        return state

    def give_back(self, state: FunctionState, slot: Slot, outcome: Outcome) -> None:
        """Take a lease's slot back (Lease.release), and hand it on to a held request."""
        slot.in_flight -= 1
        state.in_flight -= 1
        if outcome is not Outcome.OK:
            pause = self._eject_seconds if outcome is Outcome.REFUSED else self._busy_eject_seconds
            now = self.clock.monotonic()
            slot.ejected_until = now + pause
            if state.waiters and not state.usable(now):
                self._waker.wake(state, now)
        # Hand the slot's waiters on: to other instances now, or to this one once it is back.
        if state.waiters:
            self._dispatch(state)

    def _dispatch(self, state: FunctionState) -> None:
        """Give free slots to held requests, first come first served."""
        waiters = state.waiters
        while waiters:
            slot = state.pick(self.clock.monotonic)
            if slot is None:
                self._dispatch_when_back(state)
                return
            waiter = waiters.popleft()
            if waiter.future.done():
                continue
            state.assign(slot)
            waiter.future.set_result(slot)

    def _dispatch_when_back(self, state: FunctionState) -> None:
        """Dispatch again when the first left-out slot with room is back. Nothing else would:
        held requests are handed slots only by a release, an instance update or this, and new
        requests queue behind them (a request that got 429 is held again after its release).
        The timer runs on the loop's clock, which may fire before this activator's clock says
        the pause is over (uvloop rounds to milliseconds and reads its time once per
        iteration); then it is armed again for what is left. (Without it, one 429 could leave
        every later request of the function held to its 30 s deadline.)"""
        if state.redispatch is not None:
            return
        back = [
            slot.ejected_until
            for slot in state.order
            if slot.ejected_until and slot.in_flight < slot.instance.concurrency
        ]
        if back:
            delay = max(min(back) - self.clock.monotonic(), 0.001)
            state.redispatch = asyncio.get_running_loop().call_later(delay, self._redispatch, state)

    def _redispatch(self, state: FunctionState) -> None:
        state.redispatch = None
        self._dispatch(state)

    def _on_instances(self, key: FunctionKey, instances: Sequence[Instance]) -> None:
        state = self._states.get(key)
        if state is None:
            return  # read in full when a request first needs it
        if len(instances) > len(state.order):
            state.grew_at = self.clock.monotonic()
        state.set_instances(instances)
        self._dispatch(state)
        if state.waiters and not state.order:
            self._waker.wake(state, self.clock.monotonic())

    def snapshot(self) -> dict[FunctionKey, FunctionLoad]:
        """Every function the activator has seen, with its counters now."""
        return {key: state.load() for key, state in self._states.items()}

    def fail_held(self, message: str) -> None:
        """Answer every held request with 503 and `message` (the gateway is stopping)."""
        for state in self._states.values():
            self._waker.cancel(state)
            if state.redispatch is not None:
                state.redispatch.cancel()
                state.redispatch = None
            self._waker.fail(state, message)

    async def aclose(self) -> None:
        """Stop listening to the platform and answer every held request with 503."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._lag_monitor is not None:
            self._lag_monitor.close()
        self.fail_held("the gateway is shutting down")
        await self._waker.aclose()


# A held client is watched for leaving (a task awaiting `gone`) once it has been held this
# long: most held requests get a slot sooner, and a task each cost them about a tenth more of
# the gateway's CPU (10 instances, 40 clients). One that leaves before gives up its place at
# most this much later than it would have.
WATCH_AFTER_SECONDS = 0.05


class _Holding:
    """A request `Activator.hold` holds: told its lease or its error once its waiter's future
    is settled (a slot handed over by `_dispatch`; the platform's failure, the client's leaving
    or the deadline, each an exception set on it; or cancelled by `cancel`). (A class rather
    than closures: compiled, native calls.)"""

    __slots__ = (
        "_activator",
        "_due",
        "_gone",
        "_permit",
        "_state",
        "_then",
        "_timer",
        "_waiter",
        "_watcher",
    )

    def __init__(
        self,
        activator: Activator,
        state: FunctionState,
        waiter: Waiter,
        seconds: float,
        gone: Callable[[], Awaitable[object]] | None,
        permit: Permit | None,
        then: Callable[[Lease | BaseException], None],
    ) -> None:
        self._activator = activator
        self._state = state
        self._waiter = waiter
        self._permit = permit
        self._then = then
        self._gone = gone
        self._watcher: asyncio.Future[object] | None = None
        loop = asyncio.get_running_loop()
        self._due = loop.time() + seconds
        # One timer: first to start watching the client (if it may leave and the deadline is
        # further), then the deadline.
        if gone is not None and seconds > WATCH_AFTER_SECONDS:
            self._timer = loop.call_later(WATCH_AFTER_SECONDS, self._watch)
        else:
            self._timer = loop.call_at(self._due, self._expire)
        waiter.future.add_done_callback(self._settled)

    def _watch(self) -> None:
        self._watcher = Activator._watch(self._waiter, self._gone)
        self._timer = asyncio.get_running_loop().call_at(self._due, self._expire)

    def cancel(self) -> None:
        """Stop holding (the holder went away): out of the queue, its permit back, and its
        callback told CancelledError; a slot handed over already is told as it was."""
        if not self._waiter.future.done():
            self._waiter.future.cancel()

    def _expire(self) -> None:
        waiter = self._waiter
        if not waiter.future.done():  # else handed over just as the deadline passed: used
            Activator._drop(self._state, waiter)
            waiter.future.set_exception(self._activator._too_late(self._state, waiter))

    def _settled(self, future: asyncio.Future[Slot]) -> None:
        self._timer.cancel()
        if self._watcher is not None:
            self._watcher.cancel()
        state, waiter, then = self._state, self._waiter, self._then
        if future.cancelled():
            error: BaseException = asyncio.CancelledError()
        else:
            exc = future.exception()
            if exc is None:
                lease = self._activator._granted_lease(state, waiter, future.result())
                lease.permit = self._permit
                then(lease)
                return
            error = exc
        # Failed (Unavailable, ClientDisconnected, DeadlineExceeded): out of the queue, if
        # something else has not taken it out already, and its permit back.
        Activator._drop(state, waiter)
        if self._permit is not None:
            self._permit.release()
        then(error)


def _tell(told: asyncio.Future[Lease], outcome: Lease | BaseException) -> None:
    """`acquire`'s callback for its holding: the lease or the error into `told`; a lease told
    after `acquire` was cancelled is given back unused."""
    if told.done():
        if isinstance(outcome, Lease):
            outcome.give_up()
    elif isinstance(outcome, Lease):
        told.set_result(outcome)
    else:
        told.set_exception(outcome)
