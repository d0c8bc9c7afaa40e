"""Local mode: read Function and Trigger manifests, then serve them on this machine.

`kubelambda local PATH` calls `run`; it wires the gateway over the local platform, the
autoscaler fed straight from the gateway's counters, and prints where each function is
served. Functions start at their minReplicas (0 by default) and scale with traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from kubelambda.api import Function, HttpSource, Trigger, load_manifests
from kubelambda.autoscaler.decider import ScalingSpec
from kubelambda.autoscaler.loop import Autoscaler
from kubelambda.autoscaler.prometheus import PrometheusSource
from kubelambda.autoscaler.sources import DirectSource, FunctionId, Load, MetricSource
from kubelambda.gateway.gateway import ServingAddresses, create_gateway
from kubelambda.gateway.platforms import FunctionKey
from kubelambda.gateway.settings import GatewaySettings
from kubelambda.gateway.specs import routing_table
from kubelambda.local.buckets import (
    DEFAULT_WEBHOOK_ARN,
    Boto3Notifications,
    Notifications,
    Subscription,
    SubscriptionError,
    subscribe,
    subscriptions,
    unsubscribe,
)
from kubelambda.local.functions import LocalFunction, prepare
from kubelambda.local.platform import LocalPlatform


@dataclass(frozen=True)
class Options:
    path: Path
    host: str = "127.0.0.1"
    port: int = 8080
    admin_port: int = 9090
    tick_seconds: float = 1.0
    region: str = "us-east-1"
    max_queued_per_function: int = GatewaySettings().max_queued_per_function
    hold_timeout_seconds: float = 30.0
    # Read load from this Prometheus (which must scrape the admin port) instead of
    # straight from the gateway's counters.
    prometheus_url: str | None = None
    # Accepted asynchronous events are kept here and resumed by the next run; bucket
    # subscriptions are then kept at stop, so the S3 server queues events meanwhile.
    state_dir: Path | None = None
    # The bearer token S3 servers send to /_kubelambda/events/s3 (None: loopback only).
    s3_token: str | None = None
    # The S3 server's ARN of its webhook target pointing at this gateway.
    s3_webhook_arn: str = DEFAULT_WEBHOOK_ARN


def describe(
    addresses: ServingAddresses, functions: Sequence[Function], triggers: Sequence[Trigger]
) -> list[str]:
    """What local mode prints once it serves: each function, its routes and how to call it."""
    base = addresses.public_url
    lines = [
        f"kubelambda local: gateway {base}  (metrics {addresses.admin_url}/metrics)",
    ]
    width = max((len(f.name) for f in functions), default=0)
    for function in functions:
        name = (
            function.name
            if function.namespace == "default"
            else f"{function.namespace}.{function.name}"
        )
        invoke = f"{base}/2015-03-31/functions/{name}/invocations"
        lines.append(f"  {function.name:<{width}}  invoke: POST {invoke}")
        for trigger in triggers:
            source = trigger.source
            if trigger.function == function.name and trigger.namespace == function.namespace:
                if isinstance(source, HttpSource):
                    methods = ",".join(source.methods)
                    lines.append(f"  {'':<{width}}  http:   {methods} {base}{source.path}")
                else:
                    lines.append(
                        f"  {'':<{width}}  bucket: {source.bucket} "
                        f"(POST notifications to {base}/_kubelambda/events/s3)"
                    )
    return lines


async def run(
    options: Options,
    *,
    output: Callable[[str], None] = print,
    on_ready: Callable[[ServingAddresses], None] | None = None,
) -> None:
    """Serve the manifests under `options.path` until cancelled.

    Raises ManifestError or UnsupportedLocally (both ValueError, naming file and field)
    before anything starts.
    """
    objects = load_manifests(options.path)
    functions = [o for o in objects if isinstance(o, Function)]
    triggers = [o for o in objects if isinstance(o, Trigger)]
    workdir = Path(tempfile.mkdtemp(prefix="kubelambda-local-"))
    try:
        local = [prepare(f, workdir=workdir, region=options.region) for f in functions]
        await _serve(options, local, functions, triggers, output=output, on_ready=on_ready)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


async def _serve(
    options: Options,
    local: Sequence[LocalFunction],
    functions: Sequence[Function],
    triggers: Sequence[Trigger],
    *,
    output: Callable[[str], None],
    on_ready: Callable[[ServingAddresses], None] | None,
) -> None:
    platform = LocalPlatform(functions=local, host="127.0.0.1", output=output)
    settings = GatewaySettings(
        region=options.region,
        max_queued_per_function=options.max_queued_per_function,
        hold_timeout_seconds=options.hold_timeout_seconds,
        delivery_state_dir=options.state_dir / "deliveries" if options.state_dir else None,
        s3_notification_token=options.s3_token,
    )
    gateway = create_gateway(
        platform=platform, routes=routing_table(functions, triggers), settings=settings
    )
    specs: Mapping[FunctionId, ScalingSpec] = {
        (f.namespace, f.name): ScalingSpec.of(f) for f in functions
    }

    def load() -> Mapping[FunctionId, Load]:
        return {
            (key.namespace, key.name): Load(
                in_flight=item.in_flight, queued=item.queued, requests_total=item.requests_total
            )
            for key, item in gateway.load().items()
        }

    source: MetricSource = (
        PrometheusSource(options.prometheus_url) if options.prometheus_url else DirectSource(load)
    )
    autoscaler = Autoscaler(source=source, target=platform, specs=lambda: specs)

    async def wake(function: FunctionKey) -> None:
        await autoscaler.wake((function.namespace, function.name))

    platform.on_wake = wake

    def ready(addresses: ServingAddresses) -> None:
        for line in describe(addresses, functions, triggers):
            output(line)
        if on_ready is not None:
            on_ready(addresses)

    buckets = subscriptions(triggers, region=options.region)
    notifications: Notifications = Boto3Notifications()
    subscribed = False
    scaling = asyncio.create_task(autoscaler.run(interval=options.tick_seconds))
    try:
        if buckets:
            await subscribe(buckets, notifications=notifications, queue_arn=options.s3_webhook_arn)
            subscribed = True
            for bucket in buckets:
                output(
                    f"kubelambda local: bucket {bucket.bucket} on {bucket.endpoint} notifies "
                    f"{options.s3_webhook_arn} ({bucket.trigger})"
                )
        await gateway.serve(
            host=options.host, port=options.port, admin_port=options.admin_port, on_ready=ready
        )
    finally:
        scaling.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await scaling
        if subscribed and options.state_dir is None:
            await _unsubscribe(buckets, notifications, output)
        await platform.aclose()


async def _unsubscribe(
    buckets: Sequence[Subscription], notifications: Notifications, output: Callable[[str], None]
) -> None:
    try:
        async with asyncio.timeout(30):
            await unsubscribe(buckets, notifications=notifications)
    except (SubscriptionError, TimeoutError) as exc:
        output(f"kubelambda local: could not remove bucket subscriptions: {exc!r}")
