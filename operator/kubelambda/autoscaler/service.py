"""The autoscaler on a cluster: Prometheus in, Deployment replica counts out, one leader at a time.

``kubelambda operator`` runs it beside the controller. Each tick the Lease holder reads
every function's load from Prometheus (one query), decides, scales through the
Deployments' scale subresource and records why in ``status.autoscaler``. The gateway's
wake-ups arrive on a small HTTP endpoint (``POST /wake/NAMESPACE/NAME``) and act at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import uvicorn

from kubelambda.api import SpecError, parse_function
from kubelambda.autoscaler.decider import ScalingSpec
from kubelambda.autoscaler.loop import Autoscaler
from kubelambda.autoscaler.prometheus import PrometheusSource
from kubelambda.autoscaler.sources import FunctionId
from kubelambda.kube.client import JSON, KubeClient
from kubelambda.kube.informer import Informer
from kubelambda.kube.kinds import FUNCTION
from kubelambda.kube.lease import LeaseElector
from kubelambda.kube.scale import DeploymentReplicas

__all__ = ["AutoscalerOptions", "AutoscalerService"]

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class AutoscalerOptions:
    prometheus_url: str
    lease_namespace: str
    identity: str
    namespace: str | None = None  # functions of this namespace only; None: all
    tick_seconds: float = 1.0
    wake_host: str = "0.0.0.0"
    wake_port: int = 8082
    lease_name: str = "kubelambda-autoscaler"


def scaling_spec(function_object: JSON) -> ScalingSpec | None:
    try:
        function = parse_function(function_object)
    except SpecError:
        return None  # the controller reports it; nothing to scale
    return ScalingSpec.of(function)


class AutoscalerService:
    def __init__(self, client: KubeClient, options: AutoscalerOptions) -> None:
        self.client = client
        self.options = options
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="autoscaler")
        self.replicas = DeploymentReplicas(client, run=self._run, namespace=options.namespace)
        self.specs: dict[FunctionId, ScalingSpec] = {}
        self.autoscaler = Autoscaler(
            source=PrometheusSource(options.prometheus_url),
            target=self.replicas,
            specs=lambda: self.specs,
        )
        self.elector = LeaseElector(
            client,
            namespace=options.lease_namespace,
            name=options.lease_name,
            identity=options.identity,
        )
        self.leading = False
        self._reported: dict[FunctionId, int] = {}

    async def _run(self, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(call, *args, **kwargs))

    def _function_event(self, event_type: str, body: JSON) -> None:
        meta = body.get("metadata") or {}
        key = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        spec = None if event_type == "DELETED" else scaling_spec(body)
        if spec is None:
            self.specs.pop(key, None)
        else:
            self.specs[key] = spec

    async def run(self, stop: asyncio.Event) -> None:
        """Serve wake-ups and tick while leading, until `stop` is set."""
        functions = Informer(
            self.client,
            FUNCTION,
            on_event=self._function_event,
            loop=asyncio.get_running_loop(),
            namespace=self.options.namespace,
        )
        functions.start()
        await self.replicas.start()
        await functions.synced.wait()
        server = _QuietServer(
            uvicorn.Config(
                self.wake_app,
                host=self.options.wake_host,
                port=self.options.wake_port,
                lifespan="off",
                interface="asgi3",
                proxy_headers=False,
                log_config=None,
                access_log=False,
            )
        )
        serving = asyncio.create_task(server.serve())
        try:
            while not stop.is_set():
                started = asyncio.get_running_loop().time()
                await self._tick()
                elapsed = asyncio.get_running_loop().time() - started
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), max(self.options.tick_seconds - elapsed, 0))
        finally:
            server.should_exit = True
            await serving
            functions.stop()
            self.replicas.stop()
            self._pool.shutdown(wait=False)

    async def _tick(self) -> None:
        leading = await self._run(self.elector.try_hold)
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
                logger.warning("recording the decision for %s/%s failed: %s", *function, exc)

    async def wake_app(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``POST /wake/NAMESPACE/NAME`` (the gateway) and ``GET /healthz``."""
        if scope["type"] != "http":
            return
        parts = scope["path"].strip("/").split("/")
        if scope["path"] == "/healthz":
            await _answer(send, 200, {"leading": self.leading})
        elif scope["method"] == "POST" and len(parts) == 3 and parts[0] == "wake":
            function = (parts[1], parts[2])
            if not self.leading:
                await _answer(send, 503, {"message": "this autoscaler is standing by"})
            elif function not in self.specs:
                await _answer(send, 404, {"message": f"no Function {parts[1]}/{parts[2]}"})
            else:
                await self.replicas.refresh(function)
                await self.autoscaler.wake(function)
                await _answer(send, 202, {"replicas": self.replicas.replicas(function)})
        else:
            await _answer(send, 404, {"message": "POST /wake/NAMESPACE/NAME or GET /healthz"})


class _QuietServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The operator owns SIGTERM and sets the stop event; uvicorn must not take it.
        yield


async def _answer(send: Send, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})
