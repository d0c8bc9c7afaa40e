"""The gateway's Platform on Kubernetes: each Function's ready pods from the EndpointSlices of its
Service (watched, never polled), the Functions and Triggers the routes come from, and wake-ups
handed to whoever scales (the autoscaler).

A pod counts as ready as soon as its runtime answers: the kubelet reports readiness only at
its probe's period (a second at best), which would be most of a cold start, so the
platform probes a starting pod's /healthz itself, every ``PROBE_SECONDS``, with the
``probe`` the wiring gives it (the same check as the kubelet's readiness probe).

``kubelambda gateway`` (commands/gateway.py) builds one and hands it to the gateway.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from kubelambda.api import Function, Trigger
from kubelambda.api.identity import FunctionKey
from kubelambda.api.labels import FUNCTION_LABEL
from kubelambda.gateway.platform import Instance, InstancesListener, Listeners
from kubelambda.platforms.kubernetes.client import JSON, KubeClient
from kubelambda.platforms.kubernetes.endpoints import (
    SLICE_CONTROLLER,
    Endpoint,
    slice_endpoints,
    slice_function,
)
from kubelambda.platforms.kubernetes.informer import Informer
from kubelambda.platforms.kubernetes.kinds import ENDPOINT_SLICE
from kubelambda.platforms.kubernetes.specs import SpecWatch
from kubelambda.platforms.kubernetes.waker import WarmPod

__all__ = ["KubernetesPlatform"]

logger = logging.getLogger(__name__)

PROBE_SECONDS = 0.05
PROBE_FOR_SECONDS = 300.0  # a pod not answering by then is left to the kubelet's reports
# A pod a wake-up's answer named serves until the Function's EndpointSlice lists it ready or its
# runtime answers the platform's probe (then the slice says), or this long if neither comes (the
# pod went before the slice saw it).
NAMED_POD_SECONDS = 10.0


class KubernetesPlatform:
    """Ready instances per Function, and the specs, kept current by three informers.

    ``on_specs`` is called on the loop with all valid Functions and Triggers whenever one
    changes (the wiring updates the gateway's routing table from them: SpecWatch).
    """

    def __init__(
        self,
        *,
        client: KubeClient,
        waker: Callable[[FunctionKey, int], Awaitable[WarmPod | None]],
        on_specs: Callable[[Sequence[Function], Sequence[Trigger]], None] | None = None,
        namespaces: Sequence[str] = (),
        probe: Callable[[str, int], Awaitable[bool]] | None = None,
        slice_managers: frozenset[str] = frozenset({SLICE_CONTROLLER}),
    ) -> None:
        self.client = client
        self.waker = waker
        self.namespaces = tuple(namespaces)  # empty: every namespace
        self.probe = probe
        # Whose EndpointSlices are trusted (endpoints.slice_function).
        self.slice_managers = slice_managers
        # slice → (its Function, ready endpoints, starting endpoints)
        self._slices: dict[
            tuple[str, str], tuple[FunctionKey, tuple[Endpoint, ...], tuple[Endpoint, ...]]
        ] = {}
        # Function → its slices: a slice's change looks at its Function's slices alone (going
        # through all of them cost 1.8 ms a change at 15,000 Functions).
        self._slices_of: dict[FunctionKey, set[tuple[str, str]]] = {}
        # Starting endpoints being probed, and those whose runtime already answers, with their
        # Function.
        self._probing: dict[Endpoint, tuple[FunctionKey, asyncio.Task[None]]] = {}
        self._answered: dict[Endpoint, FunctionKey] = {}
        self._instances: dict[FunctionKey, tuple[Instance, ...]] = {}
        # Pods wake-ups named, not yet in a slice: Function → (endpoint, until when).
        self._named: dict[FunctionKey, tuple[Endpoint, float]] = {}
        self._named_timers: dict[FunctionKey, asyncio.TimerHandle] = {}
        self._specs = SpecWatch(on_specs=on_specs, on_function=self._refresh)
        # Events of the specs' informers, here too (tests send them by hand).
        self.function_event = self._specs.function_event
        self.trigger_event = self._specs.trigger_event
        self._listeners = Listeners()
        self._informers: list[Informer] = []

    # --- the Platform protocol -------------------------------------------------------------

    def ready_instances(self, function: FunctionKey) -> Sequence[Instance]:
        return self._instances.get(function, ())

    def subscribe(self, listener: InstancesListener) -> Callable[[], None]:
        return self._listeners.subscribe(listener)

    async def wake(self, function: FunctionKey, *, concurrency: int) -> None:
        pod = await self.waker(function, concurrency)
        if pod is None:
            return
        loop = asyncio.get_running_loop()
        self._named[function] = (
            Endpoint(pod.name, pod.ip, pod.port),
            loop.time() + NAMED_POD_SECONDS,
        )
        before = self._named_timers.pop(function, None)
        if before is not None:
            before.cancel()
        self._named_timers[function] = loop.call_later(
            NAMED_POD_SECONDS, self._named_expired, function
        )
        self._refresh(function)

    def _named_expired(self, function: FunctionKey) -> None:
        self._named_timers.pop(function, None)
        self._refresh(function)

    # --- specs -----------------------------------------------------------------------------

    def functions(self) -> list[Function]:
        return self._specs.functions()

    def triggers(self) -> list[Trigger]:
        return self._specs.triggers()

    # --- running ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Start watching; returns once each kind was listed once (callers bound the wait:
        ``async with asyncio.timeout(...)``)."""
        loop = asyncio.get_running_loop()
        self._informers += [
            Informer(
                self.client,
                ENDPOINT_SLICE,
                on_event=self.slice_event,
                loop=loop,
                label_selector=FUNCTION_LABEL,
                namespace=namespace,
            )
            for namespace in self.namespaces or (None,)
        ]
        self._informers += self._specs.informers(self.client, self.namespaces, loop)
        for informer in self._informers:
            informer.start()
        await asyncio.gather(*(informer.synced.wait() for informer in self._informers))

    def stop(self) -> None:
        for informer in self._informers:
            informer.stop()
        for _, task in self._probing.values():
            task.cancel()
        for timer in self._named_timers.values():
            timer.cancel()

    # --- events (on the loop) --------------------------------------------------------------

    def slice_event(self, event_type: str, endpoint_slice: JSON) -> None:
        meta = endpoint_slice.get("metadata") or {}
        slice_name = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        before = self._slices.pop(slice_name, None)
        touched = set()
        if before is not None:
            touched.add(before[0])
            slices = self._slices_of[before[0]]
            slices.discard(slice_name)
            if not slices:
                del self._slices_of[before[0]]
        function = slice_function(endpoint_slice, managers=self.slice_managers)
        if event_type != "DELETED" and function is not None:
            starting = slice_endpoints(endpoint_slice, starting=True)
            self._slices[slice_name] = (function, slice_endpoints(endpoint_slice), starting)
            self._slices_of.setdefault(function, set()).add(slice_name)
            touched.add(function)
        self._follow_starting(touched)
        for name in touched:
            self._refresh(name)

    def _follow_starting(self, functions: set[FunctionKey]) -> None:
        """Probe every starting endpoint of ``functions`` (those whose slices changed); forget
        theirs that are not starting any more."""
        starting = {
            endpoint: function
            for function in functions
            for name in self._slices_of.get(function, ())
            for endpoint in self._slices[name][2]
        }
        for endpoint, (function, task) in list(self._probing.items()):
            if function in functions and endpoint not in starting:
                del self._probing[endpoint]
                task.cancel()
        for endpoint, function in list(self._answered.items()):
            if function in functions and endpoint not in starting:
                del self._answered[endpoint]
        if self.probe is None:
            return
        for endpoint, function in starting.items():
            if endpoint not in self._probing and endpoint not in self._answered:
                task = asyncio.get_running_loop().create_task(
                    self._probe(endpoint, function, self.probe)
                )
                self._probing[endpoint] = (function, task)

    async def _probe(
        self,
        endpoint: Endpoint,
        function: FunctionKey,
        probe: Callable[[str, int], Awaitable[bool]],
    ) -> None:
        deadline = asyncio.get_running_loop().time() + PROBE_FOR_SECONDS
        try:
            while asyncio.get_running_loop().time() < deadline:
                if await probe(endpoint.host, endpoint.port):
                    self._answered[endpoint] = function
                    self._refresh(function)
                    return
                await asyncio.sleep(PROBE_SECONDS)  # a period: the pod gives no signal
        finally:
            probing = self._probing.get(endpoint)
            if probing is not None and probing[1] is asyncio.current_task():
                del self._probing[endpoint]

    def _refresh(self, function: FunctionKey) -> None:
        function_spec = self._specs.function(function)
        concurrency = function_spec.concurrency if function_spec is not None else 1
        found: set[Endpoint] = set()
        for name in self._slices_of.get(function, ()):
            _, ready, starting = self._slices[name]
            found.update(ready, (e for e in starting if e in self._answered))
        named = self._named.get(function)
        if named is not None:
            endpoint, until = named
            # Listed but not yet answering the probe (an announced pod the kubelet reports as
            # starting) is not enough: it serves on as named until the probe or the slice says.
            in_a_slice = any(e.id == endpoint.id for e in found)
            if in_a_slice or asyncio.get_running_loop().time() >= until:
                del self._named[function]  # the slice says from now on
            else:
                found.add(endpoint)
        endpoints = sorted(found)
        instances = tuple(
            Instance(id=e.id, host=e.host, port=e.port, concurrency=concurrency) for e in endpoints
        )
        if self._instances.get(function, ()) == instances:
            return
        if instances:
            self._instances[function] = instances
        else:
            self._instances.pop(function, None)
        self._listeners.notify(function, instances)
