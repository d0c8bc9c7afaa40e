"""The seam between the gateway and whatever runs function instances (Kubernetes, local processes).

The gateway reads each function's ready instances, is told when they change, and asks for
an instance when a request finds none ("wake"). Local mode and the Kubernetes watcher
implement `Platform`; `FakePlatform` stands in for them in tests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from kubelambda.api.identity import FunctionKey

__all__ = [
    "FakePlatform",
    "Instance",
    "InstancesListener",
    "Listeners",
    "Platform",
    "PlatformError",
]


@dataclass(frozen=True, slots=True)
class Instance:
    """One ready instance (a pod, a local process) serving the runtime contract.

    `id` is stable for the instance's life (pod name, process id) so the gateway keeps
    its in-flight count across updates; `concurrency` is how many invocations it takes
    at once (the Function's `concurrency`).
    """

    id: str
    host: str
    port: int
    concurrency: int = 1


InstancesListener = Callable[[FunctionKey, Sequence[Instance]], None]
"""Called with a function's complete list of ready instances whenever that list changes."""


class Listeners:
    """The listeners of a platform: `subscribe` for the Platform protocol, `notify` to tell
    them all of a change."""

    def __init__(self) -> None:
        self._listeners: list[InstancesListener] = []

    def subscribe(self, listener: InstancesListener) -> Callable[[], None]:
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def notify(self, function: FunctionKey, instances: Sequence[Instance]) -> None:
        for listener in list(self._listeners):
            listener(function, instances)


class PlatformError(Exception):
    """`wake` cannot start the function (unknown to the platform, no image, quota...).

    The gateway answers the requests held for that function with 503 and this message.
    """


class Platform(Protocol):
    """What the gateway needs from the component that runs instances.

    Listeners are called on the gateway's event loop thread (a platform watching from
    another thread hands over with `loop.call_soon_threadsafe`), with the whole new
    list, and must not block. Only ready instances are listed: ones that answer the
    invoke endpoint now.
    """

    def ready_instances(self, function: FunctionKey) -> Sequence[Instance]:
        """The function's ready instances now; read when the gateway first meets a function."""
        ...

    def subscribe(self, listener: InstancesListener) -> Callable[[], None]:
        """Call `listener` on every change from now on; returns the unsubscribe function."""
        ...

    async def wake(self, function: FunctionKey, *, concurrency: int) -> None:
        """Ask for at least one ready instance, and for as many as `concurrency` (the requests
        this gateway holds or has in flight for the function now) needs when that is a
        burst; returns once asked, not once they are ready.

        Idempotent: the gateway calls it again while it holds requests.
        Raises `PlatformError` when the function cannot be started at all.
        """
        ...


class FakePlatform:
    """A platform whose instances tests set by hand; records wakes and can react to them."""

    def __init__(
        self,
        *,
        on_wake: Callable[[FunctionKey], Awaitable[None] | None] | None = None,
    ) -> None:
        self._instances: dict[FunctionKey, tuple[Instance, ...]] = {}
        self._listeners = Listeners()
        self.on_wake = on_wake
        self.wake_error: PlatformError | None = None
        self.wakes: list[FunctionKey] = []
        self.concurrencies: list[int] = []  # each wake's
        self._woken = asyncio.Event()

    def ready_instances(self, function: FunctionKey) -> Sequence[Instance]:
        return self._instances.get(function, ())

    def subscribe(self, listener: InstancesListener) -> Callable[[], None]:
        return self._listeners.subscribe(listener)

    async def wake(self, function: FunctionKey, *, concurrency: int) -> None:
        self.wakes.append(function)
        self.concurrencies.append(concurrency)
        self._woken.set()
        if self.wake_error is not None:
            raise self.wake_error
        if self.on_wake is not None:
            result = self.on_wake(function)
            if result is not None:
                await result

    async def woken(self) -> None:
        """Return once `wake` has been called at least once."""
        await self._woken.wait()

    def set_instances(self, function: FunctionKey, instances: Sequence[Instance]) -> None:
        """Replace the function's ready instances and tell the listeners."""
        self._instances[function] = tuple(instances)
        self._listeners.notify(function, self._instances[function])
