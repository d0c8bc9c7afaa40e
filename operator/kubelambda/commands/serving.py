"""What `kubelambda gateway` and `kubelambda local` share: the gateway's flags (each defined
once, its default taken from `GatewaySettings`), the settings built from them, and
`create_gateway`, which assembles a gateway with its delivery store and dispatcher.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kubelambda.api.function import Function
from kubelambda.api.identity import FunctionKey
from kubelambda.api.trigger import Trigger
from kubelambda.clock import Clock, SystemClock
from kubelambda.delivery.broker import BrokerSettings
from kubelambda.delivery.files import FileDeliveryStore
from kubelambda.delivery.jetstream import JetStreamStore
from kubelambda.delivery.store import DeliveryStore, MemoryDeliveryStore
from kubelambda.dispatcher.delivery import AsyncDelivery, PublishRecord
from kubelambda.dispatcher.in_process_call import InProcessCall
from kubelambda.dispatcher.sources import EventSources
from kubelambda.gateway.access import AccessKeys
from kubelambda.gateway.jwks import JwksCache
from kubelambda.gateway.platform import Platform
from kubelambda.gateway.routing import RoutingTable
from kubelambda.gateway.server import Gateway
from kubelambda.gateway.settings import GatewaySettings

__all__ = [
    "add_broker_flags",
    "add_gateway_flags",
    "broker_settings",
    "create_gateway",
    "gateway_settings",
    "open_store",
]

_DEFAULTS = GatewaySettings()
_BROKER_DEFAULTS = {
    name: getattr(BrokerSettings(url=""), name)
    for name in ("max_age_seconds", "max_bytes", "max_message_bytes")
}
# Lambda's longest function timeout: a dispatcher's call may run this long after holding.
MAX_FUNCTION_TIMEOUT_SECONDS = 900.0
# Lambda keeps an asynchronous event one minute to six hours (MaximumEventAgeInSeconds).
MIN_EVENT_AGE_SECONDS = 60.0
MAX_EVENT_AGE_SECONDS = 6 * 3600.0


def add_gateway_flags(parser: argparse.ArgumentParser, *, host: str) -> None:
    """The flags of the gateway both commands run; `host` is the default public address."""
    parser.add_argument("--host", default=host, help="public address (default %(default)s)")
    parser.add_argument("--port", type=int, default=8080, help="public port (default 8080)")
    parser.add_argument(
        "--admin-port", type=int, default=9090, help="/metrics and /healthz port (default 9090)"
    )
    parser.add_argument(
        "--region", default=_DEFAULTS.region, help="AWS_REGION, and the region in function ARNs"
    )
    parser.add_argument(
        "--max-queued",
        type=int,
        default=_DEFAULTS.max_queued_per_function,
        help="requests held per function while no instance is free; beyond, 503"
        " (default %(default)s)",
    )
    parser.add_argument(
        "--hold-timeout",
        type=float,
        default=_DEFAULTS.hold_timeout_seconds,
        help="seconds a request may be held waiting for an instance; then 504"
        " (default %(default)s)",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        metavar="DIR",
        help="keep accepted asynchronous events (Event invocations, bucket notifications) "
        "in DIR and resume them on the next start",
    )
    add_broker_flags(parser)
    parser.add_argument(
        "--s3-token",
        metavar="TOKEN",
        default=os.environ.get("KUBELAMBDA_S3_TOKEN"),
        help="bearer token S3 servers must send to /_kubelambda/events/s3 (MinIO's webhook "
        "auth_token; default $KUBELAMBDA_S3_TOKEN); without one, only loopback may post",
    )


def add_broker_flags(parser: argparse.ArgumentParser) -> None:
    """Where asynchronous events are kept: NATS JetStream, shared by gateway and dispatcher."""
    parser.add_argument(
        "--nats",
        metavar="URL[,URL...]",
        default=os.environ.get("KUBELAMBDA_NATS_URL") or None,
        help="keep accepted asynchronous events (Event invocations, bucket notifications) in "
        "NATS JetStream at URL, e.g. nats://127.0.0.1:4222, or at any of a cluster's servers "
        "separated by commas ($KUBELAMBDA_NATS_URL; credentials "
        "from $KUBELAMBDA_NATS_USER and $KUBELAMBDA_NATS_PASSWORD, $KUBELAMBDA_NATS_TOKEN or a "
        "credentials file in $KUBELAMBDA_NATS_CREDS); `kubelambda dispatcher` delivers them",
    )
    parser.add_argument(
        "--nats-replicas",
        type=int,
        default=int(os.environ.get("KUBELAMBDA_NATS_REPLICAS") or 1),
        help="replicas of the stream in a clustered JetStream (default %(default)s)",
    )
    parser.add_argument(
        "--nats-ack-wait",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="an event a dispatcher took goes to another one after this long without word "
        "from it (it died); deliveries in progress report every third of it (default %(default)s)",
    )
    # The stream's bounds: the gateway and every dispatcher write the stream's configuration
    # when they connect, so all of them must be given the same values.
    parser.add_argument(
        "--nats-max-age",
        type=float,
        default=_BROKER_DEFAULTS["max_age_seconds"],
        metavar="SECONDS",
        help="an accepted event is tried for this long at most, then goes to its dead letter; "
        "the stream drops a message this old that no dispatcher took; 60 to 21600, as Lambda's "
        "MaximumEventAgeInSeconds (default %(default)s)",
    )
    parser.add_argument(
        "--nats-max-bytes",
        type=int,
        default=_BROKER_DEFAULTS["max_bytes"],
        metavar="BYTES",
        help="the stream's size; when full, new events are refused (503, Retry-After) and none "
        "kept is dropped (default %(default)s)",
    )
    parser.add_argument(
        "--nats-max-message-bytes",
        type=int,
        default=_BROKER_DEFAULTS["max_message_bytes"],
        metavar="BYTES",
        help="the largest message the stream keeps: an event with its payload base64-encoded, "
        "a retry with the function's error; at most the server's max_payload "
        "(default %(default)s)",
    )


def broker_settings(args: argparse.Namespace, **more: Any) -> BrokerSettings | None:
    """The broker the flags of `add_broker_flags` name, or None (no --nats)."""
    if not args.nats:
        return None
    env = os.environ
    if not MIN_EVENT_AGE_SECONDS <= args.nats_max_age <= MAX_EVENT_AGE_SECONDS:
        raise SystemExit(
            f"--nats-max-age {args.nats_max_age:g}: give {MIN_EVENT_AGE_SECONDS:g} to "
            f"{MAX_EVENT_AGE_SECONDS:g} seconds, as Lambda's MaximumEventAgeInSeconds"
        )
    return BrokerSettings(
        url=args.nats,
        replicas=args.nats_replicas,
        ack_wait_seconds=args.nats_ack_wait,
        max_age_seconds=args.nats_max_age,
        max_bytes=args.nats_max_bytes,
        max_message_bytes=args.nats_max_message_bytes,
        user=env.get("KUBELAMBDA_NATS_USER") or None,
        password=env.get("KUBELAMBDA_NATS_PASSWORD") or None,
        token=env.get("KUBELAMBDA_NATS_TOKEN") or None,
        credentials_file=env.get("KUBELAMBDA_NATS_CREDS") or None,
        **more,
    )


def gateway_settings(args: argparse.Namespace, **more: Any) -> GatewaySettings:
    """Settings from the flags of `add_gateway_flags`, and `more` fields the command sets."""
    return GatewaySettings(
        region=args.region,
        max_queued_per_function=args.max_queued,
        hold_timeout_seconds=args.hold_timeout,
        s3_notification_token=args.s3_token or None,
        **more,
    )


def open_store(
    settings: GatewaySettings, *, clock: Clock, broker: BrokerSettings | None = None
) -> DeliveryStore:
    """Where accepted asynchronous events wait: a JetStream stream (`broker`), files under
    `delivery_state_dir` (they survive a restart), or memory."""
    if broker is not None:
        return JetStreamStore(broker, clock=clock)
    if settings.delivery_state_dir is not None:
        return FileDeliveryStore(
            directory=settings.delivery_state_dir,
            capacity=settings.delivery_queue_size,
            clock=clock,
        )
    return MemoryDeliveryStore(capacity=settings.delivery_queue_size, clock=clock)


def create_gateway(
    *,
    platform: Platform,
    routes: RoutingTable,
    settings: GatewaySettings | None = None,
    clock: Clock | None = None,
    delivery_store: DeliveryStore | None = None,
    access_keys: AccessKeys | None = None,
    jwks: JwksCache | None = None,
    broker: BrokerSettings | None = None,
    dispatch: bool = False,
) -> Gateway:
    """A gateway over `platform`, serving `routes` (replace them later with `set_routes`),
    with its delivery store (`open_store` unless given) and the dispatcher that empties it;
    `access_keys` are the keys the Invoke API accepts (none unless given); `jwks` holds the
    signing keys of JWT routes' issuers (fetched over HTTP unless given).

    With a `broker`, the gateway only publishes: `kubelambda dispatcher` delivers, or, with
    `dispatch` (local mode), a dispatcher in this process that consumes the broker as the
    cluster's does and invokes through this gateway's invoker, without an HTTP hop to itself."""
    settings = settings or GatewaySettings()
    clock = clock or SystemClock()
    store = (
        delivery_store
        if delivery_store is not None
        else open_store(settings, clock=clock, broker=broker)
    )
    gateway = Gateway(
        platform=platform,
        routes=routes,
        settings=settings,
        clock=clock,
        delivery_store=store,
        access_keys=access_keys,
        jwks=jwks,
    )
    if isinstance(store, JetStreamStore):
        gateway.attach(store)
        if dispatch:
            _attach_dispatcher(gateway, store.settings, clock=clock)
        return gateway
    _attach_delivery(gateway, store, clock=clock, settings=settings)
    return gateway


def _attach_delivery(
    gateway: Gateway,
    store: DeliveryStore,
    *,
    clock: Clock,
    settings: GatewaySettings,
    publish: PublishRecord | None = None,
) -> None:
    """Workers that deliver `store`'s jobs through this gateway's own invoker (scale from zero,
    holding and per-instance concurrency apply, as on the Invoke API)."""
    call = InProcessCall(
        invoker=gateway.invoker, routes=gateway.current_routes, clock=clock, settings=settings
    )
    gateway.attach(
        AsyncDelivery(
            store=store,
            call=call,
            pool=gateway.pool,
            clock=clock,
            settings=settings,
            publish=publish,
        )
    )


def attach_sources(
    gateway: Gateway,
    *,
    functions: Sequence[Function],
    triggers: Sequence[Trigger],
    broker: BrokerSettings | None,
    clock: Clock,
) -> EventSources:
    """Pollers of the queue and kafka Triggers in the gateway's process (local mode, with or
    without a broker: kafka Triggers need none), invoking through its own invoker; failed
    records go to the gateway's delivery store."""
    settings = gateway.settings
    sources = EventSources(
        call=InProcessCall(
            invoker=gateway.invoker, routes=gateway.current_routes, clock=clock, settings=settings
        ),
        admit=gateway.delivery_store.admit,
        clock=clock,
        broker=broker,
        region=settings.region,
        account_id=settings.account_id,
        default_namespace=settings.default_namespace,
    )
    sources.update({FunctionKey(f.namespace, f.name): f for f in functions}, triggers)
    gateway.attach(sources)
    return sources


def _attach_dispatcher(gateway: Gateway, broker: BrokerSettings, *, clock: Clock) -> None:
    """A dispatcher in the gateway's process: consumes the broker as `kubelambda dispatcher`
    does, and invokes in process."""
    # An event is tried for as long as the stream keeps it, as `kubelambda dispatcher` does.
    settings = dataclasses.replace(
        gateway.settings,
        max_event_age_seconds=min(gateway.settings.max_event_age_seconds, broker.max_age_seconds),
    )
    consumer = JetStreamStore(broker, clock=clock, consume=True)
    gateway.attach(consumer)
    _attach_delivery(
        gateway, consumer, clock=clock, settings=settings, publish=consumer.publish_record
    )
