"""Pods that announced they serve, handed to the wake-ups waiting for them.

A Deployment pod's runtime announces itself once it answers (``POST /announce/NAMESPACE/NAME``,
docs/contracts.md): the kubelet reports a new pod only at its next relist, up to a second
later, so the gateway would otherwise wait for the EndpointSlice that long. The wake endpoint
(service.py) records verified announcements here, and a wake-up of a Function it scaled from
zero waits here for the first one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Final, NamedTuple, Protocol

from kubelambda.api.identity import FunctionKey

__all__ = [
    "ARRIVAL_SECONDS",
    "AnnouncementRefused",
    "Arrivals",
    "Instance",
    "VerifyAnnouncement",
]

# How long an announced pod is handed to wake-ups: by then the gateways' EndpointSlices list it.
ARRIVAL_SECONDS: Final = 10.0
# How long after a scale from zero a wake-up waits for the first pod to announce itself.
EXPECT_SECONDS: Final = 30.0


class Instance(NamedTuple):
    """A pod serving a Function's invocations (the wake-up's ``instance``)."""

    pod: str
    ip: str
    port: int


class AnnouncementRefused(Exception):
    """An announcement that does not hold, with the HTTP status that says why: 400 malformed,
    401 a token not valid for the pod, 403 a pod not the Function's or an address not the
    connection's, 503 the API server could not tell."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class VerifyAnnouncement(Protocol):
    """Returns when the pod holding ``token`` is ``pod`` of ``function`` at ``ip`` and the
    announcement came from ``source_ip``; raises ``AnnouncementRefused`` otherwise
    (platforms/kubernetes/announcements.py asks the API server)."""

    def __call__(
        self, *, token: str, function: FunctionKey, pod: str, ip: str, source_ip: str
    ) -> Awaitable[None]: ...


class Arrivals:
    """Announced pods per Function for ``ARRIVAL_SECONDS``, and the scale-ups from zero still
    waiting for their first. Bounded: one entry per Function, dropped when it expires."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._arrived: dict[FunctionKey, tuple[Instance, float]] = {}
        self._expected: dict[FunctionKey, tuple[asyncio.Future[Instance], float]] = {}

    def arrived(self, function: FunctionKey, instance: Instance) -> None:
        now = self._clock()
        self._forget_expired(now)
        self._arrived[function] = (instance, now + ARRIVAL_SECONDS)
        expected = self._expected.pop(function, None)
        if expected is not None and not expected[0].done():
            expected[0].set_result(instance)

    def expect(self, function: FunctionKey) -> None:
        """The Function scales from zero: wake-ups wait for its first pod to announce itself."""
        now = self._clock()
        self._forget_expired(now)
        if function not in self._expected:
            future = asyncio.get_running_loop().create_future()
            self._expected[function] = (future, now + EXPECT_SECONDS)

    def expected(self, function: FunctionKey) -> bool:
        """Whether wake-ups wait for a first pod of ``function`` to announce itself."""
        self._forget_expired(self._clock())
        return function in self._expected

    async def wait(self, function: FunctionKey, seconds: float) -> Instance | None:
        """A pod of ``function`` that announced itself lately, or the first to do so within
        ``seconds`` when one is expected; None otherwise."""
        now = self._clock()
        self._forget_expired(now)
        arrived = self._arrived.get(function)
        if arrived is not None:
            return arrived[0]
        expected = self._expected.get(function)
        if expected is None:
            return None
        try:
            return await asyncio.wait_for(asyncio.shield(expected[0]), seconds)
        except TimeoutError:
            return None

    def _forget_expired(self, now: float) -> None:
        for function in [f for f, (_, until) in self._arrived.items() if until <= now]:
            del self._arrived[function]
        for function in [f for f, (_, until) in self._expected.items() if until <= now]:
            future, _ = self._expected.pop(function)
            future.cancel()
