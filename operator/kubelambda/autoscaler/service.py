"""The autoscaler as a service: one leader at a time ticks over every function, and a small HTTP
endpoint takes the gateway's wake-ups (``POST /wake/NAMESPACE/NAME``), which act at once, and the
announcements of pods that start serving (``POST /announce/NAMESPACE/NAME``, arrivals.py).

``kubelambda operator`` runs it beside the controller, feeding it the Function events of
the process's one watch layer (``function_event``), with the cluster's replicas, lease and
Prometheus behind the interfaces below. Each tick the leader decides, scales and records
why (``status.autoscaler`` on a cluster).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

import uvicorn

from kubelambda.api import SpecError, parse_function
from kubelambda.api.identity import FunctionKey
from kubelambda.autoscaler.arrivals import (
    AnnouncementRefused,
    Arrivals,
    Instance,
    VerifyAnnouncement,
)
from kubelambda.autoscaler.decider import ScalingSpec
from kubelambda.autoscaler.loop import Autoscaler, ReplicaTarget, ScalingObserver
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
# 2 s bound on the call. A slower warm start's pod reaches the gateway through its watch.
WARM_ANSWER_SECONDS: Final = 1.0
# How long a wake-up of a Function scaled from zero waits for its first pod to announce itself
# (the gateway bounds the call at 5 s); a slower pod reaches the gateway through its watch.
ANNOUNCED_ANSWER_SECONDS: Final = 3.0
MAX_ANNOUNCEMENT: Final = 4096  # {"pod", "ip", "port"}


# Starts a warm start of a Function at zero: what to await for its pod, or None when the pool
# does not serve it (controller/warmstart.py).
WarmStart = Callable[[FunctionKey], Awaitable[Instance | None] | None]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class ClusterReplicas(ReplicaTarget, Protocol):
    """The replica counts the service scales, with what a shared cluster adds to a
    `ReplicaTarget`: whether a function's workload exists yet, a fresh read for wake-ups
    (the watch may lag a scale to zero by someone else), the decision recorded for people,
    and the Function object itself when the watch has not delivered it yet."""

    def known(self, function: FunctionKey) -> bool: ...

    async def refresh(self, function: FunctionKey) -> None: ...

    async def report(self, function: FunctionKey, *, desired: int, reason: str) -> None: ...

    async def fetch_function(self, function: FunctionKey) -> Mapping[str, Any] | None: ...


@dataclass(frozen=True)
class WakeEndpoint:
    """Where the wake-up endpoint listens, and the token callers must send
    (``Authorization: Bearer TOKEN``; None: anyone on the network may ask)."""

    host: str = "0.0.0.0"
    port: int = 8082
    token: str | None = None


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
        tick_seconds: float = 1.0,
        observer: ScalingObserver | None = None,
        warm_start: WarmStart | None = None,
        verify: VerifyAnnouncement | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.replicas = replicas
        # Announcements of starting pods (None: not taken; wake-ups answer at once).
        self._verify = verify
        self._arrivals = Arrivals(clock)
        # Called on a wake-up of a function at zero: the warm pool specialises a pod for it
        # while the Deployment scales up, and the answer names the pod once it serves.
        self._warm_start = warm_start
        self._scaling: set[asyncio.Task[None]] = set()  # scale-ups after a warm start's answer
        self._hold_lease = hold_lease
        self._wake = wake
        self._tick_seconds = tick_seconds
        self.specs: dict[FunctionKey, ScalingSpec] = {}
        self.autoscaler = Autoscaler(
            source=source, target=replicas, specs=lambda: self.specs, observer=observer
        )
        self.leading = False
        self._reported: dict[FunctionKey, int] = {}

    def function_event(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """A watch event of a Function (kopf gives None for the first listing)."""
        meta = body.get("metadata") or {}
        key = FunctionKey(str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        spec = None if event_type == "DELETED" else scaling_spec(body)
        if spec is None:
            self.specs.pop(key, None)
        else:
            self.specs[key] = spec

    async def run(self, stop: asyncio.Event) -> None:
        """Serve wake-ups and tick while leading, until `stop` is set."""
        server = _QuietServer(
            uvicorn.Config(
                self.wake_app,
                host=self._wake.host,
                port=self._wake.port,
                lifespan="off",
                interface="asgi3",
                proxy_headers=False,
                log_config=None,
                access_log=False,
            )
        )
        serving = asyncio.create_task(server.serve())
        loop = asyncio.get_running_loop()
        try:
            while not stop.is_set():
                started = loop.time()
                await self._tick()
                elapsed = loop.time() - started
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), max(self._tick_seconds - elapsed, 0))
        finally:
            server.should_exit = True
            await serving

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
            return
        try:
            await self.autoscaler.tick()
        except Exception:
            logger.exception("autoscaler tick failed; trying again next tick")
            return
        for function, decision in list(self.autoscaler.decisions.items()):
            if self._reported.get(function) == decision.desired or not self.replicas.known(
                function
            ):
                continue
            try:
                await self.replicas.report(
                    function, desired=decision.desired, reason=decision.reason
                )
                self._reported[function] = decision.desired
            except Exception as exc:  # status is for people: never stop scaling over it
                logger.warning("recording the decision for %s failed: %s", function, exc)

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
            await _answer(send, 200, {"leading": self.leading})
        elif scope["method"] == "POST" and len(parts) == 3 and parts[0] == "announce":
            await self._announcement(FunctionKey(parts[1], parts[2]), scope, receive, send)
        elif scope["method"] == "POST" and len(parts) == 3 and parts[0] == "wake":
            function = FunctionKey(parts[1], parts[2])
            if not self._authorised(scope):
                await _answer(send, 401, {"message": "a wake-up needs the gateway's token"})
            elif not self.leading:
                await _answer(send, 503, {"message": "this autoscaler is standing by"})
            elif not await self._known(function):
                await _answer(send, 404, {"message": f"no Function {function}"})
            else:
                # At zero by the watch: the warm start goes first, the fresh read after it.
                at_zero = self.replicas.replicas(function) == 0
                warm = self._start_warm(function) if at_zero else None
                pod = await _within(warm, WARM_ANSWER_SECONDS)
                if pod is None:
                    if at_zero and self._verify is not None:
                        self._arrivals.expect(function)
                    await self._scale_up(function, warm_started=at_zero)
                    pod = await self._announced(function)
                    answer: dict[str, Any] = {"replicas": self.replicas.replicas(function)}
                    if pod is not None:
                        answer["instance"] = pod._asdict()
                    await _answer(send, 202, answer)
                    return
                replicas = self.replicas.replicas(function)
                await _answer(send, 202, {"replicas": replicas, "instance": pod._asdict()})
                # The pod serves; the Deployment scales up behind it, after the answer: its
                # pod's start (scheduler, kubelet, sandbox) would otherwise share the cores
                # with the specialisation.
                scaling = asyncio.create_task(self._scale_up(function, warm_started=True))
                self._scaling.add(scaling)
                scaling.add_done_callback(self._scaled)
        else:
            await _answer(
                send,
                404,
                {"message": "POST /wake/ or /announce/NAMESPACE/NAME, or GET /healthz"},
            )

    async def _announced(self, function: FunctionKey) -> Instance | None:
        """A pod of ``function`` that announced itself, waiting for the first one a while when
        the Function scales from zero."""
        if self._verify is None:
            return None
        return await self._arrivals.wait(function, ANNOUNCED_ANSWER_SECONDS)

    async def _announcement(
        self, function: FunctionKey, scope: Scope, receive: Receive, send: Send
    ) -> None:
        """A starting pod says it serves: verified, it goes to the wake-ups waiting for it."""
        if self._verify is None:
            await _answer(send, 404, {"message": "this operator takes no announcements"})
            return
        if not self.leading:
            await _answer(send, 503, {"message": "this autoscaler is standing by"})
            return
        try:
            token = _bearer(scope)
            instance = _instance(await _body(receive, MAX_ANNOUNCEMENT))
            client = scope.get("client") or ("", 0)
            await self._verify(
                token=token,
                function=function,
                pod=instance.pod,
                ip=instance.ip,
                source_ip=str(client[0]),
            )
        except AnnouncementRefused as refused:
            logger.warning("announcement for %s refused: %s", function, refused.message)
            await _answer(send, refused.status, {"message": refused.message})
            return
        logger.info("%s: pod %s announced it serves", function, instance.pod)
        self._arrivals.arrived(function, instance)
        await _answer(send, 202, {"pod": instance.pod})

    async def _scale_up(self, function: FunctionKey, *, warm_started: bool) -> None:
        await self.replicas.refresh(function)
        if not warm_started and self.replicas.replicas(function) == 0:
            self._start_warm(function)  # at zero after all: the pod reaches the gateway's watch
        await self.autoscaler.wake(function)

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


class _QuietServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The operator owns SIGTERM and sets the stop event; uvicorn must not take it.
        yield


def _bearer(scope: Scope) -> str:
    sent = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
    scheme, _, token = sent.decode("latin-1").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AnnouncementRefused(401, "an announcement needs the pod's token (Bearer)")
    return token.strip()


async def _body(receive: Receive, limit: int) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += bytes(message.get("body", b""))
        if len(body) > limit:
            raise AnnouncementRefused(400, f"the announcement is over {limit} bytes")
        if not message.get("more_body"):
            return body


def _instance(body: bytes) -> Instance:
    """The announced pod: ``{"pod": NAME, "ip": ADDRESS, "port": PORT}``."""
    try:
        found = json.loads(body)
        pod, ip, port = found["pod"], found["ip"], found["port"]
        if not isinstance(pod, str) or not pod or not isinstance(port, int):
            raise TypeError("pod must be a name and port a number")
        if not 0 < port < 65536:
            raise ValueError(f"port {port} is out of range")
        return Instance(pod, str(ipaddress.ip_address(ip)), port)
    except (ValueError, KeyError, TypeError) as exc:
        raise AnnouncementRefused(
            400, f'an announcement is {{"pod": NAME, "ip": ADDRESS, "port": PORT}}: {exc}'
        ) from None


async def _answer(send: Send, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})
