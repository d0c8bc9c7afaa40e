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
from collections.abc import Mapping, Sequence

import nats.errors
from prometheus_client import Gauge, start_http_server

from kubelambda.api.identity import FunctionKey
from kubelambda.clock import Clock, SystemClock
from kubelambda.commands.serving import (
    MAX_FUNCTION_TIMEOUT_SECONDS,
    add_broker_flags,
    broker_settings,
)
from kubelambda.delivery.jetstream import Backlog, BrokerSettings, JetStreamStore
from kubelambda.dispatcher.delivery import AsyncDelivery
from kubelambda.dispatcher.gateway_call import GatewayCall
from kubelambda.gateway.settings import GatewaySettings
from kubelambda.gateway.upstream import UpstreamPool

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
    delivery = AsyncDelivery(
        store=store,
        call=GatewayCall(
            url=args.gateway_url,
            pool=pool,
            timeout_seconds=args.hold_timeout + MAX_FUNCTION_TIMEOUT_SECONDS,
            credentials=(key, secret) if key and secret else None,
            region=args.region,
        ),
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
    metrics = BacklogMetrics(clock)
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
        await delivery.aclose()
        await store.aclose()
        await pool.aclose()


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
