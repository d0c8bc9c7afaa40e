"""The autoscaler as a service: one leader at a time ticks over every function, and a small HTTP
endpoint takes the gateway's wake-ups (``POST /wake/NAMESPACE/NAME``), which act at once; another
takes the announcements of pods that start serving (announce.py), which answer wake-ups.

``kubelambda operator`` runs it beside the controller, feeding it the Function events of
the process's one watch layer (``function_event``), with the cluster's replicas, lease and
Prometheus behind the interfaces below. Each tick the leader decides and scales; why is
recorded apart from the tick (``status.autoscaler`` on a cluster: reports.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

from kubelambda.api import SpecError, parse_function
from kubelambda.api.identity import FunctionKey
from kubelambda.autoscaler.announce import AnnounceApp
from kubelambda.autoscaler.arrivals import Arrivals, Instance, VerifyAnnouncement
from kubelambda.autoscaler.asgi import Receive, Scope, Send, answer, read_body, serve
from kubelambda.autoscaler.decider import ScalingSpec
from kubelambda.autoscaler.loop import Autoscaler, ReplicaTarget, ScalingObserver
from kubelambda.autoscaler.reports import ReportTarget, StatusReports
from kubelambda.autoscaler.sources import MetricSource

__all__ = [
    "AutoscalerService",
    "ClusterReplicas",
    "WakeEndpoint",
    "WarmStart",
    "scaling_spec",
]

logger = logging.getLogger(__name__)

# How long a wake-up's answer waits for a warm start to name its pod: well under the gateway's
# 5 s bound on the call. A slower warm start's pod reaches the gateway through its watch.
WARM_ANSWER_SECONDS: Final = 1.0
# How long a wake-up of a Function scaled from zero waits for its first pod to announce itself
# (the gateway bounds the call at 5 s); a slower pod reaches the gateway through its watch.
ANNOUNCED_ANSWER_SECONDS: Final = 3.0
# A wake-up's body: {"concurrency": N, "gateway": NAME}, or none.
MAX_WAKE_BODY: Final = 1024


# Starts a warm start of a Function at zero: what to await for its pod, or None when the pool
# does not serve it (controller/warmstart.py).
WarmStart = Callable[[FunctionKey], Awaitable[Instance | None] | None]


class ClusterReplicas(ReplicaTarget, ReportTarget, Protocol):
    """The replica counts the service scales, with what a shared cluster adds to a
    `ReplicaTarget`: whether a function's workload exists yet, a fresh read for wake-ups
    (the watch may lag a scale to zero by someone else), the decision recorded for people,
    and the Function object itself when the watch has not delivered it yet."""

    def known(self, function: FunctionKey) -> bool: ...

    async def refresh(self, function: FunctionKey) -> None: ...

    async def fetch_function(self, function: FunctionKey) -> Mapping[str, Any] | None: ...


@dataclass(frozen=True)
class WakeEndpoint:
    """Where the wake-up endpoint listens, and the token callers must send
    (``Authorization: Bearer TOKEN``; None: anyone on the network may ask)."""

    host: str = "0.0.0.0"
    port: int = 8082
    token: str | None = None
    # Where starting pods announce themselves (announce.py), when the service has a verifier.
    announce_port: int = 8083


def scaling_spec(function_object: Mapping[str, Any]) -> ScalingSpec | None:
    """The scaling spec of a Function object, or None when the object is invalid."""
    try:
        function = parse_function(function_object)
    except SpecError:
        return None  # the controller reports it; nothing to scale
    return ScalingSpec.of(function)


class AutoscalerService:
    def __init__(
        self,
        *,
        source: MetricSource,
        replicas: ClusterReplicas,
        hold_lease: Callable[[], Awaitable[bool]],
        wake: WakeEndpoint,
        release_lease: Callable[[], Awaitable[None]] | None = None,
        tick_seconds: float = 1.0,
        observer: ScalingObserver | None = None,
        warm_start: WarmStart | None = None,
        verify: VerifyAnnouncement | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.replicas = replicas
        # Announcements of starting pods, on a port of their own (None: not taken; wake-ups
        # answer at once).
        self._arrivals = Arrivals(clock)
        self.announce_app = (
            AnnounceApp(verify=verify, arrivals=self._arrivals, leading=lambda: self.leading)
            if verify is not None
            else None
        )
        # Called on a wake-up of a function at zero: the warm pool specialises a pod for it
        # while the Deployment scales up, and the answer names the pod once it serves.
        self._warm_start = warm_start
        self._scaling: set[asyncio.Task[None]] = set()  # scale-ups after a warm start's answer
        self._hold_lease = hold_lease
        self._release_lease = release_lease  # as it stops, when leading
        self._wake = wake
        self._tick_seconds = tick_seconds
        self.specs: dict[FunctionKey, ScalingSpec] = {}
        self.autoscaler = Autoscaler(
            source=source, target=replicas, specs=lambda: self.specs, observer=observer
        )
        self.leading = False
        self.reports = StatusReports(replicas)

    def function_event(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """A watch event of a Function (kopf gives None for the first listing)."""
        meta = body.get("metadata") or {}
        key = FunctionKey(str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        spec = None if event_type == "DELETED" else scaling_spec(body)
        if spec is None:
            self.specs.pop(key, None)
            if event_type == "DELETED":
                self.reports.remove(key)
        else:
            self.specs[key] = spec

    async def run(self, stop: asyncio.Event) -> None:
        """Serve wake-ups and tick while leading, until `stop` is set."""
        servers = [serve(self.wake_app, host=self._wake.host, port=self._wake.port)]
        if self.announce_app is not None:
            servers.append(
                serve(self.announce_app, host=self._wake.host, port=self._wake.announce_port)
            )
        serving = [asyncio.create_task(server.serve()) for server in servers]
        reporting = asyncio.create_task(self.reports.run())
        loop = asyncio.get_running_loop()
        try:
            while not stop.is_set():
                started = loop.time()
                await self._tick()
                elapsed = loop.time() - started
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), max(self._tick_seconds - elapsed, 0))
        finally:
            reporting.cancel()
            for server in servers:
                server.should_exit = True
            await asyncio.gather(*serving)
            with contextlib.suppress(asyncio.CancelledError):
                await reporting
            if self.leading and self._release_lease is not None:
                # The next leader (a rolling update's new pod) takes over at its next tick,
                # not once the Lease expires.
                self.leading = False
                await self._release_lease()

    async def _tick(self) -> None:
        try:
            leading = await self._hold_lease()
        except Exception as exc:  # the API server is away: stand by until it answers
            logger.warning("autoscaler cannot hold its lease: %s", exc)
            leading = False
        if leading != self.leading:
            logger.info("autoscaler %s", "leading" if leading else "standing by")
            self.leading = leading
        if not leading:
            self.reports.forget()
            return
        try:
            await self.autoscaler.tick()
        except Exception:
            logger.exception("autoscaler tick failed; trying again next tick")
            return
        # Every decision is offered, a recorded one too: it withdraws a different one waiting.
        for function, decision in self.autoscaler.decisions.items():
            if self.replicas.known(function):
                self.reports.offer(function, desired=decision.desired, reason=decision.reason)

    async def _known(self, function: FunctionKey) -> bool:
        """Whether `function` exists, asking the API server when the watch has not said."""
        if function in self.specs:
            return True
        found = await self.replicas.fetch_function(function)
        if found is None:
            return False
        self.function_event("ADDED", found)
        return function in self.specs

    def _authorised(self, scope: Scope) -> bool:
        token = self._wake.token
        if token is None:
            return True
        sent = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
        return hmac.compare_digest(sent, b"Bearer " + token.encode())

    async def wake_app(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``POST /wake/NAMESPACE/NAME`` (the gateway) and ``GET /healthz``."""
        if scope["type"] != "http":
            return
        parts = scope["path"].strip("/").split("/")
        if scope["path"] == "/healthz":
            await answer(send, 200, {"leading": self.leading})
        elif scope["method"] == "POST" and len(parts) == 3 and parts[0] == "wake":
            function = FunctionKey(parts[1], parts[2])
            if not self._authorised(scope):
                await answer(send, 401, {"message": "a wake-up needs the gateway's token"})
            elif not self.leading:
                await answer(send, 503, {"message": "this autoscaler is standing by"})
            elif isinstance(report := _wake_report(await read_body(receive, MAX_WAKE_BODY)), str):
                await answer(send, 400, {"message": report})
            elif not await self._known(function):
                await answer(send, 404, {"message": f"no Function {function}"})
            else:
                concurrency, gateway = report
                # At zero by the watch: the warm start goes first, the fresh read after it.
                at_zero = self.replicas.replicas(function) == 0
                warm = self._start_warm(function) if at_zero else None
                pod = await _within(warm, WARM_ANSWER_SECONDS)
                if pod is None:
                    if at_zero and self.announce_app is not None:
                        self._arrivals.expect(function)
                    await self._scale_up(
                        function, warm_started=at_zero, concurrency=concurrency, gateway=gateway
                    )
                    pod = await self._announced(function)
                    found: dict[str, Any] = {"replicas": self.replicas.replicas(function)}
                    if pod is not None:
                        found["instance"] = pod._asdict()
                    await answer(send, 202, found)
                    return
                replicas = self.replicas.replicas(function)
                await answer(send, 202, {"replicas": replicas, "instance": pod._asdict()})
                # The pod serves; the Deployment scales up behind it, after the answer: its
                # pod's start (scheduler, kubelet, sandbox) would otherwise share the cores
                # with the specialisation.
                scaling = asyncio.create_task(
                    self._scale_up(
                        function, warm_started=True, concurrency=concurrency, gateway=gateway
                    )
                )
                self._scaling.add(scaling)
                scaling.add_done_callback(self._scaled)
        else:
            await answer(send, 404, {"message": "POST /wake/NAMESPACE/NAME or GET /healthz"})

    async def _announced(self, function: FunctionKey) -> Instance | None:
        """A pod of ``function`` that announced itself, waiting for the first one a while when
        the Function scales from zero."""
        if self.announce_app is None:
            return None
        return await self._arrivals.wait(function, ANNOUNCED_ANSWER_SECONDS)

    async def _scale_up(
        self, function: FunctionKey, *, warm_started: bool, concurrency: int, gateway: str
    ) -> None:
        await self.replicas.refresh(function)
        if not warm_started and self.replicas.replicas(function) == 0:
            self._start_warm(function)  # at zero after all: the pod reaches the gateway's watch
        await self.autoscaler.wake(function, concurrency=concurrency, gateway=gateway)

    def _scaled(self, task: asyncio.Task[None]) -> None:
        self._scaling.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("scaling up after a warm start failed", exc_info=task.exception())

    def _start_warm(self, function: FunctionKey) -> Awaitable[Instance | None] | None:
        if self._warm_start is None:
            return None
        try:
            return self._warm_start(function)
        except Exception:  # the Deployment path still serves the function
            logger.exception("warm start of %s failed", function)
            return None


def _wake_report(body: bytes | None) -> tuple[int, str] | str:
    """A wake-up's report: the requests the gateway holds or has in flight for the Function,
    and the gateway's name (none: 0 and ""); or what is wrong with it."""
    if body is None:
        return f"a wake-up's body is at most {MAX_WAKE_BODY} bytes"
    if not body.strip():
        return 0, ""
    try:
        found = json.loads(body)
    except ValueError as exc:
        return f"a wake-up's body is JSON: {exc}"
    concurrency = found.get("concurrency", 0) if isinstance(found, dict) else None
    gateway = found.get("gateway", "") if isinstance(found, dict) else None
    if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 0:
        return 'a wake-up\'s body is {"concurrency": N, "gateway": NAME}, N a count >= 0'
    if not isinstance(gateway, str) or len(gateway) > 253:
        return 'a wake-up\'s "gateway" is a name of at most 253 characters'
    return concurrency, gateway


async def _within(warm: Awaitable[Instance | None] | None, seconds: float) -> Instance | None:
    """The warm start's pod if it serves within ``seconds``; the warm start goes on after."""
    if warm is None:
        return None
    try:
        return await asyncio.wait_for(asyncio.shield(warm), seconds)
    except TimeoutError:
        return None
    except Exception:
        logger.exception("warm start failed")
        return None
