"""Per-function limits: reserved concurrency and a rate limit, refused at once with 429.

The activator asks `FunctionLimits.admit` before it looks for a slot; a `Permit` counts the
invocation against `spec.reservedConcurrency` until it is released, held requests included
(they will run: Lambda counts an execution from its init), and `spec.throttling` spends a
token of the function's bucket. Each gateway replica enforces its share of both limits
(`replicas`). The edge answers the refusal (Throttled) as Lambda or API Gateway would.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from kubelambda.api.function import Function
from kubelambda.api.identity import FunctionKey
from kubelambda.clock import Clock
from kubelambda.gateway.exceptions import Throttled

__all__ = [
    "CONCURRENCY",
    "RATE",
    "REASON_LABELS",
    "FunctionLimits",
    "Permit",
    "TokenBucket",
]

# Lambda's ThrottleReason for each limit, and the metrics' reason label.
CONCURRENCY: Final = "ReservedFunctionConcurrentInvocationLimitExceeded"
RATE: Final = "FunctionInvocationRateLimitExceeded"
REASON_LABELS: Mapping[str, str] = {CONCURRENCY: "reserved_concurrency", RATE: "rate"}

SpecSource = Callable[[FunctionKey], Function | None]


class TokenBucket:
    """`rate` tokens a second, at most `burst` kept; time comes from the caller."""

    __slots__ = ("burst", "rate", "tokens", "updated")

    def __init__(self, *, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst  # a quiet function may burst at once
        self.updated = now

    def take(self, now: float) -> float:
        """Spend a token and return 0, or return the seconds until one is there."""
        if now > self.updated:
            self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
            self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate

    def refund(self) -> None:
        self.tokens = min(self.burst, self.tokens + 1)


@dataclass(frozen=True, slots=True)
class _Share:
    """This replica's part of one function's limits."""

    concurrency: int | None
    rate: float | None
    burst: float


class _State:
    __slots__ = ("bucket", "in_flight", "share", "spec", "throttles")

    def __init__(self) -> None:
        self.spec: Function | None = None
        self.share = _Share(None, None, 0)
        self.bucket: TokenBucket | None = None
        self.in_flight = 0
        self.throttles: dict[str, int] = {}


class Permit:
    """One admitted invocation; release it exactly once, with `refund` when it did not run
    (an instance refused it and the invoker tries again, taking a new permit)."""

    __slots__ = ("_released", "_state")

    def __init__(self, state: _State) -> None:
        self._state = state
        self._released = False

    def release(self, *, refund: bool = False) -> None:
        if self._released:
            return
        self._released = True
        state = self._state
        state.in_flight -= 1
        if refund and state.bucket is not None:
            state.bucket.refund()


class FunctionLimits:
    """Each function's admitted invocations and rate bucket, read from its spec as it changes.

    `spec_of` returns the Function now (None when unknown: no limits). With `replicas`
    gateways sharing the functions, each admits ceil(reservedConcurrency / replicas) at once
    and rateLimit / replicas a second (burst ceil(burstLimit / replicas)).
    """

    def __init__(
        self,
        *,
        spec_of: SpecSource,
        clock: Clock,
        replicas: int = 1,
        retry_after_seconds: float = 1.0,
    ) -> None:
        if replicas < 1:
            raise ValueError(f"gateway replicas must be at least 1, not {replicas}")
        self._spec_of = spec_of
        self._clock = clock
        self._replicas = replicas
        self._retry_after = retry_after_seconds
        self._states: dict[FunctionKey, _State] = {}

    def admit(self, key: FunctionKey) -> Permit:
        """A permit for one invocation of `key`, or Throttled (429) at once."""
        state = self._states.get(key)
        if state is None:
            state = self._states[key] = _State()
        spec = self._spec_of(key)
        if spec is not state.spec:
            self._apply(state, spec)
        share = state.share
        if share.concurrency is not None and state.in_flight >= share.concurrency:
            self._count(state, CONCURRENCY)
            raise Throttled(
                f"function {key} has {state.in_flight} invocations in flight, its reserved "
                f"concurrency on this gateway ({share.concurrency})",
                reason=CONCURRENCY,
                # Waiting cannot help a function reserved at 0.
                retry_after=self._retry_after if share.concurrency else None,
            )
        if state.bucket is not None:
            wait = state.bucket.take(self._clock.monotonic())
            if wait:
                self._count(state, RATE)
                raise Throttled(
                    f"function {key} is over its rate limit on this gateway "
                    f"({share.rate:g}/s, burst {share.burst:g})",
                    reason=RATE,
                    retry_after=wait,
                )
        state.in_flight += 1
        return Permit(state)

    def _apply(self, state: _State, spec: Function | None) -> None:
        """Take a changed spec's limits; the bucket restarts full only when the rate changed."""
        state.spec = spec
        reserved = spec.reserved_concurrency if spec is not None else None
        throttling = spec.throttling if spec is not None else None
        replicas = self._replicas
        share = _Share(
            concurrency=math.ceil(reserved / replicas) if reserved is not None else None,
            rate=throttling.rate_limit / replicas if throttling is not None else None,
            burst=math.ceil(throttling.burst_limit / replicas) if throttling is not None else 0,
        )
        if share.rate is None:
            state.bucket = None
        elif state.bucket is None or (share.rate, share.burst) != (
            state.share.rate,
            state.share.burst,
        ):
            state.bucket = TokenBucket(
                rate=share.rate, burst=share.burst, now=self._clock.monotonic()
            )
        state.share = share

    @staticmethod
    def _count(state: _State, reason: str) -> None:
        state.throttles[reason] = state.throttles.get(reason, 0) + 1

    def throttles(self) -> dict[FunctionKey, dict[str, int]]:
        """Invocations refused so far, by function and Lambda reason: for the metrics."""
        return {key: dict(s.throttles) for key, s in self._states.items() if s.throttles}

    def in_flight(self, key: FunctionKey) -> int:
        state = self._states.get(key)
        return state.in_flight if state is not None else 0
