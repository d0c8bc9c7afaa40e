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
from pathlib import Path
from types import MappingProxyType
from typing import Any

from kubelambda.api import Trigger
from kubelambda.autoscaler.prometheus import PrometheusSource
from kubelambda.autoscaler.service import AutoscalerService, WakeEndpoint, WarmStart
from kubelambda.clock import ScaledClock, SystemClock
from kubelambda.commands.serving import add_broker_flags, broker_settings
from kubelambda.commands.warmpool import WarmPoolWiring, add_pool_flags, warm_pool_config
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

__all__ = ["build_parser", "config_from_args", "run"]

logger = logging.getLogger(__name__)

COMPONENT = "kubelambda-controller"


def _pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key or not value:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, not {text!r}")
    return key.strip(), value.strip()


def _labels(text: str) -> dict[str, str]:
    return dict(_pair(item) for item in text.split(",") if item.strip())


def _names(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


def build_parser(prog: str = "kubelambda operator") -> argparse.ArgumentParser:
    defaults = ControllerConfig()
    parser = argparse.ArgumentParser(
        prog=prog,
        description=(
            "Run the kubelambda controller: reconcile Function and Trigger objects into the"
            " ConfigMaps, Deployments, Services and NetworkPolicies that serve them."
        ),
    )
    parser.add_argument(
        "--kubeconfig",
        type=Path,
        help="kubeconfig file (default: $KUBECONFIG, the in-cluster service account,"
        " ~/.kube/config)",
    )
    parser.add_argument(
        "--namespace",
        action="append",
        default=[],
        metavar="NS",
        help="watch only this namespace (repeatable; default: all namespaces)",
    )
    parser.add_argument(
        "--runtime-image",
        action="append",
        type=_pair,
        default=[],
        metavar="RUNTIME=IMAGE",
        help="image for a spec.runtime, e.g. python3.12=localhost/kubelambda-runtime:0.1.0"
        " (repeatable)",
    )
    parser.add_argument(
        "--image-pull-policy",
        default=defaults.image_pull_policy,
        choices=("IfNotPresent", "Always", "Never"),
    )
    parser.add_argument(
        "--fetch-image",
        default=defaults.fetch_image,
        help="the control-plane image, which fetches spec.code.s3 and spec.layers in a"
        " function pod's init container (the Helm chart sets it to its own image)",
    )
    parser.add_argument(
        "--gateway-url",
        default=defaults.gateway_url,
        help="the gateway's public base URL, shown in status.url (default: %(default)s)",
    )
    parser.add_argument(
        "--gateway-namespace",
        default=defaults.gateway_namespace,
        help="namespace of the gateway pods, the only ones let in by each Function's"
        " NetworkPolicy (default: %(default)s)",
    )
    parser.add_argument(
        "--gateway-selector",
        type=_labels,
        default=dict(defaults.gateway_pod_labels),
        metavar="K=V,K=V",
        help="labels of the gateway pods (default: app.kubernetes.io/name=kubelambda,"
        "app.kubernetes.io/component=gateway)",
    )
    parser.add_argument(
        "--gateway-port",
        type=int,
        default=defaults.gateway_port,
        help="the gateway pods' public (container) port, which function pods may reach"
        " (default: %(default)s)",
    )
    parser.add_argument(
        "--function-egress",
        choices=("restricted", "open"),
        default=defaults.function_egress,
        help="restricted: function pods may connect only to DNS, the gateway and what their"
        " Function declares in spec.network.egress; open: anywhere (default: %(default)s)",
    )
    parser.add_argument(
        "--metrics-from",
        type=_names,
        default=",".join(defaults.metrics_from),
        metavar="NS,NS",
        help="namespaces whose pods may scrape function pods' /metrics (port 'metrics');"
        " '*' for every namespace, '' for none (default: %(default)s)",
    )
    parser.add_argument("--region", default=defaults.region, help="AWS_REGION for handlers")
    parser.add_argument(
        "--account-id", default=defaults.account_id, help="account id in function ARNs"
    )
    parser.add_argument(
        "--s3-webhook-arn",
        default=defaults.s3_webhook_arn,
        help="queue ARN of the gateway's webhook target on S3 servers (default: %(default)s)",
    )
    parser.add_argument("--workers", type=int, default=defaults.workers)
    parser.add_argument(
        "--resync-seconds",
        type=float,
        default=defaults.resync_seconds,
        help="reconcile every object this often even without events (default: %(default)s)",
    )
    parser.add_argument(
        "--observe-seconds",
        type=float,
        default=defaults.observe_seconds,
        help="look at the source of each queue and kafka Trigger this often (its consumer's"
        " position and lag in status.consumer; default: %(default)s)",
    )
    add_pool_flags(parser)
    parser.add_argument(
        "--operator-selector",
        type=_labels,
        default=dict(defaults.operator_pod_labels),
        metavar="K=V,K=V",
        help="labels of the operator's own pods, the only ones let in to pool pods (default:"
        " app.kubernetes.io/name=kubelambda,app.kubernetes.io/component=operator)",
    )
    parser.add_argument(
        "--health-port",
        type=int,
        default=0,
        help="serve kopf's liveness probe at http://0.0.0.0:PORT/healthz (0: off)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=0,
        help="serve the operator's own metrics (reconciles, Functions and Triggers by state,"
        " the autoscaler's ticks and scalings) at http://0.0.0.0:PORT/metrics (0: off)",
    )
    parser.add_argument(
        "--prometheus-url",
        default=os.environ.get("KUBELAMBDA_PROMETHEUS_URL", ""),
        help="the autoscaler reads the gateway's metrics here ($KUBELAMBDA_PROMETHEUS_URL);"
        " empty: no autoscaler in this process",
    )
    parser.add_argument(
        "--autoscaler-port",
        type=int,
        default=8082,
        help="the autoscaler's wake-up endpoint for the gateway, which must send"
        " $KUBELAMBDA_WAKE_TOKEN as a bearer token when that is set (default: %(default)s)",
    )
    parser.add_argument(
        "--announce-url",
        default=os.environ.get("KUBELAMBDA_ANNOUNCE_URL", ""),
        metavar="URL",
        help="where Functions' starting pods reach --announce-port to announce that they"
        " serve, e.g. http://kubelambda-operator.kubelambda.svc:8083 ($KUBELAMBDA_ANNOUNCE_URL;"
        " the chart sets it): the gateway then sends to a new pod before the kubelet reports it."
        " Empty, or no autoscaler here: pods do not announce",
    )
    parser.add_argument(
        "--announce-port",
        type=int,
        default=8083,
        help="the autoscaler's announcement endpoint, open to any address: each announcement"
        " is authenticated by its Function's key (Secret <function>-announce)"
        " (default: %(default)s)",
    )
    parser.add_argument(
        "--read-only-root-filesystem",
        action="store_true",
        help="every function pod keeps a read-only root filesystem, its inline code mounted and"
        " /tmp an emptyDir, for clusters whose admission requires it; cold starts wait about"
        " 300 ms more (the kubelet's volume manager). Default: a runtime image's pods with"
        " inline code of at most 120 KiB start without volumes, their root writable and"
        " bounded by an ephemeral-storage limit",
    )
    parser.add_argument(
        "--autoscaler-tick",
        type=float,
        default=1.0,
        help="seconds between the autoscaler's decisions (default: %(default)s)",
    )
    add_broker_flags(parser)
    parser.add_argument(
        "--schedule-speed",
        type=float,
        default=1.0,
        metavar="N",
        help="run schedules' clocks N times as fast (tests and demos; default 1)",
    )
    parser.add_argument(
        "--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING"), help="kubelambda's"
    )
    parser.add_argument(
        "--kopf-log-level",
        default="WARNING",
        choices=("DEBUG", "INFO", "WARNING"),
        help="kopf's own logs (watch streams, handlers)",
    )
    return parser


def config_from_args(args: argparse.Namespace) -> ControllerConfig:
    if not 0 <= args.metrics_port <= 65535:
        raise SystemExit("--metrics-port must be a port number (0: off)")
    if args.workers < 1:
        raise SystemExit("--workers must be at least 1")
    if args.observe_seconds <= 0:
        raise SystemExit("--observe-seconds must be above 0")
    return ControllerConfig(
        runtime_images=MappingProxyType(dict(args.runtime_image)),
        image_pull_policy=args.image_pull_policy,
        fetch_image=args.fetch_image,
        gateway_url=args.gateway_url,
        gateway_namespace=args.gateway_namespace,
        gateway_pod_labels=MappingProxyType(dict(args.gateway_selector)),
        metrics_from=args.metrics_from,
        gateway_port=args.gateway_port,
        function_egress=args.function_egress,
        region=args.region,
        account_id=args.account_id,
        s3_webhook_arn=args.s3_webhook_arn,
        workers=args.workers,
        resync_seconds=args.resync_seconds,
        observe_seconds=args.observe_seconds,
        warm_pool=warm_pool_config(args),
        # The chart runs the operator in the gateway's namespace (its release's).
        operator_namespace=os.environ.get("KUBELAMBDA_POD_NAMESPACE") or args.gateway_namespace,
        operator_pod_labels=MappingProxyType(dict(args.operator_selector)),
        # Announcements go to the autoscaler's endpoint: only where this process runs one.
        announce_url=(args.announce_url or None) if args.prometheus_url else None,
        announce_port=args.announce_port,
        read_only_root=args.read_only_root_filesystem,
    )


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

    autoscaler = AutoscalerService(
        source=PrometheusSource(args.prometheus_url),
        replicas=replicas,
        hold_lease=hold_lease,
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
