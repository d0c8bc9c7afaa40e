"""``kubelambda operator``: the controller and the autoscaler in one process, fed by one watch
layer (kopf), until stopped.

The ``kubelambda`` command (cli.py) calls ``run(argv)``; the Helm chart sets the flags.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import logging
import os
import signal
import socket
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from kubelambda.api import Trigger
from kubelambda.autoscaler.prometheus import PrometheusSource
from kubelambda.autoscaler.service import AutoscalerService, WakeEndpoint, WarmStart
from kubelambda.clock import ScaledClock, SystemClock
from kubelambda.commands.operator_options import build_parser, config_from_args
from kubelambda.commands.serving import broker_settings
from kubelambda.commands.warmpool import WarmPoolWiring
from kubelambda.controller.config import FIELD_MANAGER, ControllerConfig
from kubelambda.controller.metrics import OperatorMetrics
from kubelambda.controller.operator import Operator
from kubelambda.delivery.jetstream import JetStreamStore
from kubelambda.delivery.observe import SourceProbe
from kubelambda.platforms.kubernetes import watches
from kubelambda.platforms.kubernetes.aio import AsyncKube
from kubelambda.platforms.kubernetes.announcements import PodAnnouncements
from kubelambda.platforms.kubernetes.client import KubeClient
from kubelambda.platforms.kubernetes.kinds import DEPLOYMENT, FUNCTION, TRIGGER, Kind
from kubelambda.platforms.kubernetes.lease import LeaseElector
from kubelambda.platforms.kubernetes.replicas import DeploymentReplicas
from kubelambda.platforms.kubernetes.watches import OWNED, Listener
from kubelambda.platforms.s3 import S3Notifications
from kubelambda.scheduler.ticks import Scheduler

__all__ = ["run"]

logger = logging.getLogger(__name__)

COMPONENT = "kubelambda-controller"


async def _schedules(
    args: argparse.Namespace,
    client: KubeClient,
    cluster: AsyncKube,
    operator: Operator,
    stop: asyncio.Event,
) -> None:
    """Fire schedule Triggers' ticks into the broker while this process holds the scheduler's
    Lease (one firing per tick however many operators run), recording each tick in status."""
    broker = broker_settings(args)
    assert broker is not None  # only called with --nats
    elector = LeaseElector(
        client,
        namespace=os.environ.get("KUBELAMBDA_POD_NAMESPACE") or "default",
        name="kubelambda-scheduler",
        identity=socket.gethostname() + f"-{os.getpid()}",
    )
    leading = False

    async def record(trigger: Trigger, tick: datetime) -> None:
        await cluster.patch_status(
            TRIGGER,
            namespace=trigger.namespace,
            name=trigger.name,
            status={"lastTick": tick.strftime("%Y-%m-%dT%H:%M:%SZ")},
        )

    store = JetStreamStore(broker, clock=SystemClock())
    scheduler = Scheduler(
        store=store,
        clock=ScaledClock(args.schedule_speed) if args.schedule_speed != 1 else SystemClock(),
        triggers=lambda: list(operator.schedules.values()),
        function=operator.function,
        region=args.region,
        account_id=args.account_id,
        last_tick=operator.last_tick,
        fired=record,
        leading=lambda: leading,
    )
    store.start()
    scheduler.start()
    try:
        while not stop.is_set():
            held = await asyncio.to_thread(elector.try_hold)
            if held != leading:
                logger.info("schedules: %s", "leading" if held else "standing by")
            leading = held
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2.0):
                    await stop.wait()
    finally:
        await scheduler.aclose()
        await store.aclose()
        if leading:
            await asyncio.to_thread(elector.release)


def _autoscaler(
    args: argparse.Namespace,
    client: KubeClient,
    listeners: dict[Kind, list[Listener]],
    metrics: OperatorMetrics,
    warm_start: WarmStart | None,
    *,
    announcing: bool,
) -> AutoscalerService:
    """The autoscaler over the cluster's Deployments, Lease and Prometheus, listening to the
    Function and Deployment events of the operator's watch."""
    pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="autoscaler")

    async def blocking(call: Any, *call_args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(pool, functools.partial(call, *call_args, **kwargs))

    replicas = DeploymentReplicas(client, run=blocking)
    elector = LeaseElector(
        client,
        namespace=os.environ.get("KUBELAMBDA_POD_NAMESPACE") or "default",
        name="kubelambda-autoscaler",
        identity=socket.gethostname(),
    )

    async def hold_lease() -> bool:
        held: bool = await blocking(elector.try_hold)
        return held

    async def release_lease() -> None:
        await blocking(elector.release)

    autoscaler = AutoscalerService(
        source=PrometheusSource(args.prometheus_url),
        replicas=replicas,
        hold_lease=hold_lease,
        release_lease=release_lease,
        wake=WakeEndpoint(
            port=args.autoscaler_port,
            token=os.environ.get("KUBELAMBDA_WAKE_TOKEN") or None,
            announce_port=args.announce_port,
        ),
        tick_seconds=args.autoscaler_tick,
        observer=metrics,
        warm_start=warm_start,
        verify=PodAnnouncements(client).verify if announcing else None,
    )
    listeners[FUNCTION].append(autoscaler.function_event)
    listeners[DEPLOYMENT].append(replicas.deployment_event)
    return autoscaler


async def _serve(args: argparse.Namespace, config: ControllerConfig) -> None:
    client = KubeClient.from_config(args.kubeconfig, pool_size=config.workers * 2)
    cluster = AsyncKube(
        client, workers=config.workers * 2, component=COMPONENT, field_manager=FIELD_MANAGER
    )
    # Queue Triggers without nats.url are on the platform's broker, seen with the operator's
    # credentials; the others' NATS and Kafka with their Secrets' (read through `cluster`).
    probe = SourceProbe(broker=broker_settings(args))
    metrics = OperatorMetrics()
    pool = WarmPoolWiring(client, config)
    operator = Operator(
        cluster=cluster,
        config=config,
        notifications=S3Notifications(),
        probe=probe,
        metrics=metrics,
        pool_pods=pool.pods,
        namespaces=tuple(args.namespace),
    )
    stop = asyncio.Event()
    # One watch layer: every event goes to the controller, and those the autoscaler needs
    # to it too.
    listeners: dict[Kind, list[Listener]] = {
        FUNCTION: [operator.function_event],
        TRIGGER: [operator.trigger_event],
        **{kind: [functools.partial(operator.owned_event, kind)] for kind in OWNED},
    }
    background = [operator.run]
    watch_pool = pool.start(operator, list(config.warm_pool.namespaces) or args.namespace)
    if watch_pool is not None:
        background.append(watch_pool)
    if args.nats:
        background.append(functools.partial(_schedules, args, client, cluster, operator, stop))
    if args.prometheus_url:
        warm_start = pool.starter.wake if pool.starter is not None else None
        autoscaler = _autoscaler(
            args, client, listeners, metrics, warm_start, announcing=bool(config.announce_url)
        )
        background.append(functools.partial(autoscaler.run, stop))
    registry = watches.build_registry(
        connection=client.connection, listeners=listeners, background=background
    )
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if args.metrics_port:
        # Its own port, as the gateway's admin port: kopf's liveness server serves only /healthz.
        metrics.serve(args.metrics_port)
    liveness = f"http://0.0.0.0:{args.health_port}/healthz" if args.health_port else None
    try:
        await watches.run(
            registry, namespaces=args.namespace, liveness_endpoint=liveness, stop=stop
        )
    finally:
        stop.set()
        await probe.aclose()
        await pool.aclose()
        cluster.close()


def run(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    config = config_from_args(args)
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("kubelambda").setLevel(args.log_level)
    logging.getLogger("kopf").setLevel(args.kopf_log_level)
    asyncio.run(_serve(args, config))
    return 0
