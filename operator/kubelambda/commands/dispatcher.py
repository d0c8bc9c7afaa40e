"""``kubelambda dispatcher``: delivers the asynchronous events kept in NATS JetStream.

Each event is invoked through a gateway's Invoke API (so scale from zero, holding and
per-pod concurrency apply), acknowledged after the function's answer, retried by the
function's delivery policy, then sent to its dead letter. Stateless: run as many replicas
as the backlog needs; the Helm chart runs it beside the gateway.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path

import nats.errors
from prometheus_client import Gauge, start_http_server

from kubelambda.api import Function, Trigger
from kubelambda.api.identity import FunctionKey
from kubelambda.clock import Clock, SystemClock
from kubelambda.commands.heap import freeze_startup_heap
from kubelambda.commands.serving import (
    MAX_FUNCTION_TIMEOUT_SECONDS,
    add_broker_flags,
    broker_settings,
)
from kubelambda.delivery.broker import BrokerSettings
from kubelambda.delivery.jetstream import Backlog, JetStreamStore
from kubelambda.delivery.jobs import DeliveryJob
from kubelambda.dispatcher.delivery import AsyncDelivery
from kubelambda.dispatcher.gateway_call import GatewayCall
from kubelambda.dispatcher.sources import EventSources
from kubelambda.gateway.settings import GatewaySettings
from kubelambda.gateway.upstream import UpstreamPool
from kubelambda.platforms.kubernetes.aio import AsyncKube
from kubelambda.platforms.kubernetes.client import KubeClient
from kubelambda.platforms.kubernetes.informer import Informer
from kubelambda.platforms.kubernetes.kinds import SECRET
from kubelambda.platforms.kubernetes.secrets import secret_text
from kubelambda.platforms.kubernetes.specs import SpecWatch

__all__ = ["BacklogMetrics", "build_parser", "dispatcher_settings", "run"]

logger = logging.getLogger(__name__)

BACKLOG = Gauge(
    "kubelambda_async_backlog",
    "Asynchronous events kept for a function (not yet acknowledged), as the broker counts them",
    ["namespace", "function"],
)
OLDEST_AGE = Gauge(
    "kubelambda_async_oldest_event_age_seconds",
    "Age of the oldest asynchronous event waiting for a function (0: none waits)",
    ["namespace", "function"],
)
METRICS_PERIOD_SECONDS = 5.0


class BacklogMetrics:
    """The broker's per-function backlog as gauges; a function whose backlog emptied reads 0
    (not a stale last value) until the process ends."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._shown: set[tuple[str, str]] = set()

    def show(self, waiting: Mapping[FunctionKey, Backlog]) -> None:
        now = self._clock.wall()
        current = {(key.namespace, key.name): backlog for key, backlog in waiting.items()}
        for labels in self._shown - current.keys():
            BACKLOG.labels(*labels).set(0)
            OLDEST_AGE.labels(*labels).set(0)
        for labels, backlog in current.items():
            BACKLOG.labels(*labels).set(backlog.messages)
            oldest = backlog.oldest_enqueued_at
            OLDEST_AGE.labels(*labels).set(0.0 if oldest is None else max(0.0, now - oldest))
        self._shown |= current.keys()


def build_parser(prog: str = "kubelambda dispatcher") -> argparse.ArgumentParser:
    defaults = GatewaySettings()
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Deliver the asynchronous events kept in NATS JetStream (Event "
        "invocations, bucket notifications) through the gateway, with retries and dead letters.",
    )
    add_broker_flags(parser)
    parser.add_argument(
        "--gateway-url",
        default=os.environ.get("KUBELAMBDA_GATEWAY_URL", "http://kubelambda-gateway"),
        help="the gateway whose Invoke API runs each event ($KUBELAMBDA_GATEWAY_URL); requests "
        "are signed with $AWS_ACCESS_KEY_ID and $AWS_SECRET_ACCESS_KEY when those are set",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=defaults.delivery_workers,
        help="events delivered at once by this process (default %(default)s)",
    )
    parser.add_argument(
        "--function-concurrency",
        type=int,
        default=16,
        help="events of one function in flight over all dispatchers, so one function's "
        "backlog cannot starve the others (default %(default)s)",
    )
    parser.add_argument(
        "--hold-timeout",
        type=float,
        default=defaults.hold_timeout_seconds,
        help="how long the gateway may hold an event for an instance (default %(default)s)",
    )
    parser.add_argument(
        "--region", default=defaults.region, help="the region requests are signed for"
    )
    parser.add_argument(
        "--event-sources",
        action="store_true",
        help="also poll the queue and kafka Triggers (watches Functions and Triggers, reads the "
        "Secrets their sources name; needs a Kubernetes API: in-cluster, $KUBECONFIG or "
        "--kubeconfig)",
    )
    parser.add_argument("--kubeconfig", type=Path, help="default: in-cluster, $KUBECONFIG")
    parser.add_argument(
        "--namespace",
        action="append",
        default=[],
        metavar="NS",
        help="with --event-sources: poll Triggers of this namespace (repeatable; default: all)",
    )
    parser.add_argument(
        "--default-namespace", default="default", help="for the ARNs of bare Function names"
    )
    parser.add_argument("--metrics-port", type=int, default=9090, help="/metrics (0: off)")
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING"))
    return parser


def dispatcher_settings(args: argparse.Namespace) -> tuple[BrokerSettings, GatewaySettings]:
    """The broker to consume and the delivery settings the flags give: an event is tried for
    as long as the stream keeps it (--nats-max-age), not a default of its own."""
    broker = broker_settings(args, function_concurrency=args.function_concurrency)
    if broker is None:
        raise SystemExit("kubelambda dispatcher: --nats URL (or $KUBELAMBDA_NATS_URL) is required")
    settings = GatewaySettings(
        region=args.region,
        delivery_workers=args.workers,
        hold_timeout_seconds=args.hold_timeout,
        max_event_age_seconds=broker.max_age_seconds,
    )
    return broker, settings


async def serve(args: argparse.Namespace) -> None:
    broker, settings = dispatcher_settings(args)
    clock = SystemClock()
    key, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
    pool = UpstreamPool()
    store = JetStreamStore(broker, clock=clock, consume=True)
    call = GatewayCall(
        url=args.gateway_url,
        pool=pool,
        timeout_seconds=args.hold_timeout + MAX_FUNCTION_TIMEOUT_SECONDS,
        credentials=(key, secret) if key and secret else None,
        region=args.region,
    )
    delivery = AsyncDelivery(
        store=store,
        call=call,
        pool=pool,
        clock=clock,
        settings=settings,
        publish=store.publish_record,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    store.start()
    delivery.start()
    logger.info("delivering asynchronous events from %s through %s", broker.url, args.gateway_url)
    watching = (
        await _event_sources(args, broker=broker, settings=settings, call=call, admit=store.admit)
        if args.event_sources
        else None
    )
    metrics = BacklogMetrics(clock)
    # Started (the broker connects in the background, a few objects more): start-up's objects
    # leave the collector's full collections, each a pause of every delivery (heap.py).
    freeze_startup_heap()
    try:
        while not stop.is_set():
            try:
                metrics.show(await store.waiting())
            except (OSError, nats.errors.Error, TimeoutError) as exc:
                logger.warning("cannot read the broker's backlog: %s", exc)
            try:
                async with asyncio.timeout(METRICS_PERIOD_SECONDS):
                    await stop.wait()
            except TimeoutError:
                continue
    finally:
        # Jobs being delivered stay unacknowledged: another dispatcher takes them later.
        if watching is not None:
            await watching.aclose()
        await delivery.aclose()
        await store.aclose()
        await pool.aclose()


class _Watching:
    """The pollers of queue and kafka Triggers, fed by a watch of Functions and Triggers."""

    def __init__(self, sources: EventSources, watch: SpecWatch, kube: AsyncKube) -> None:
        self.sources, self.watch, self.kube = sources, watch, kube
        self.informers: list[Informer] = []

    async def aclose(self) -> None:
        for informer in self.informers:
            informer.stop()
        await self.sources.aclose()
        self.kube.close()


async def _event_sources(
    args: argparse.Namespace,
    *,
    broker: BrokerSettings,
    settings: GatewaySettings,
    call: GatewayCall,
    admit: Callable[[Sequence[DeliveryJob]], Awaitable[bool]],
) -> _Watching:
    client = KubeClient.from_config(args.kubeconfig)
    kube = AsyncKube(client, workers=2, component="kubelambda-dispatcher", field_manager="")

    async def secret(namespace: str, name: str) -> Mapping[str, str] | None:
        found = await kube.get(SECRET, namespace=namespace, name=name)
        return None if found is None else secret_text(found)

    sources = EventSources(
        call=call,
        admit=admit,
        clock=SystemClock(),
        broker=broker,
        region=args.region,
        account_id=os.environ.get("KUBELAMBDA_ACCOUNT_ID") or "000000000000",
        default_namespace=args.default_namespace,
        secrets=secret,
    )

    def on_specs(functions: Sequence[Function], triggers: Sequence[Trigger]) -> None:
        sources.update({FunctionKey(f.namespace, f.name): f for f in functions}, triggers)

    watch = SpecWatch(on_specs=on_specs)
    watching = _Watching(sources, watch, kube)
    watching.informers = watch.informers(client, args.namespace, asyncio.get_running_loop())
    for informer in watching.informers:
        informer.start()
    async with asyncio.timeout(120):
        await asyncio.gather(*(informer.synced.wait() for informer in watching.informers))
    sources.start()
    logger.info("polling the queue and kafka Triggers")
    return watching


def run(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("kubelambda").setLevel(args.log_level)
    if args.metrics_port:
        start_http_server(args.metrics_port)
    import uvloop

    uvloop.run(serve(args))
    return 0
