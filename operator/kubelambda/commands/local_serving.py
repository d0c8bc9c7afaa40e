"""Local mode's serving: ``serve`` wires the gateway over the local platform (runtime
processes), the autoscaler fed straight from the gateway's counters (or a Prometheus), the
console and the bucket subscriptions, then prints where each function is served (``describe``).

commands/local.py runs it for ``kubelambda local``. Functions start at their minReplicas
(0 by default) and scale with traffic.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path

from kubelambda.api import (
    Function,
    HttpSource,
    ScheduleSource,
    Trigger,
    load_manifests,
)
from kubelambda.api.identity import FunctionKey
from kubelambda.api.streams import KafkaSource, QueueSource
from kubelambda.api.subscriptions import BucketError, subscribe, unsubscribe
from kubelambda.autoscaler.decider import ScalingSpec
from kubelambda.autoscaler.loop import Autoscaler
from kubelambda.autoscaler.prometheus import PrometheusSource
from kubelambda.autoscaler.sources import DirectSource, Load, MetricSource
from kubelambda.clock import ScaledClock, SystemClock
from kubelambda.commands.heap import freeze_startup_heap
from kubelambda.commands.local_options import CONSOLE_PORT
from kubelambda.commands.serving import (
    attach_sources,
    broker_settings,
    create_gateway,
    gateway_settings,
)
from kubelambda.console.app import bind_console
from kubelambda.console.local import start_local_console
from kubelambda.gateway.http import is_loopback
from kubelambda.gateway.routing import RoutingTable, routing_table
from kubelambda.gateway.server import Gateway, ServingAddresses
from kubelambda.gateway.settings import GatewaySettings
from kubelambda.platforms.local.buckets import BucketSubscriptions, subscriptions
from kubelambda.platforms.local.fdlimit import watch_descriptors
from kubelambda.platforms.local.functions import prepare
from kubelambda.platforms.local.platform import LocalPlatform
from kubelambda.platforms.packages import S3Packages
from kubelambda.platforms.s3 import S3Notifications
from kubelambda.scheduler.ticks import Scheduler
from kubelambda.tools.logfiles import NoLogs, default_folder, read_lines

__all__ = ["describe", "serve"]

# What the runtime reports as the account in ARNs (there is no account locally).
ACCOUNT_ID = "000000000000"
TICK_SECONDS = 1.0  # between the autoscaler's decisions
CONSOLE_HOST = "127.0.0.1"  # whatever --host says: the console shows every function's logs


def describe(
    addresses: ServingAddresses,
    functions: Sequence[Function],
    triggers: Sequence[Trigger],
    *,
    refused: Sequence[tuple[str, str]] = (),
    console_url: str | None = None,
) -> list[str]:
    """What local mode prints once it serves: each function, its routes and how to call it,
    and the Triggers refused their path (`refused`: namespace/name, why)."""
    left_out = {name for name, _ in refused}
    base = addresses.public_url
    lines = [
        f"kubelambda local: gateway {base}  (metrics {addresses.admin_url}/metrics)",
    ]
    if console_url is not None:
        lines.append(f"kubelambda local: console {console_url}")
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
            mine = trigger.function == function.name and trigger.namespace == function.namespace
            if mine and f"{trigger.namespace}/{trigger.name}" not in left_out:
                if isinstance(source, HttpSource):
                    methods = ",".join(source.methods)
                    lines.append(f"  {'':<{width}}  http:   {methods} {base}{source.path}")
                elif isinstance(source, ScheduleSource):
                    lines.append(
                        f"  {'':<{width}}  schedule: {source.expression} ({source.timezone})"
                    )
                elif isinstance(source, QueueSource):
                    subject = f", subject {source.subject}" if source.subject else ""
                    lines.append(f"  {'':<{width}}  queue:  stream {source.stream}{subject}")
                elif isinstance(source, KafkaSource):
                    topics = ",".join(source.topics)
                    lines.append(
                        f"  {'':<{width}}  kafka:  {topics} on {source.bootstrap_servers[0]}"
                    )
                else:
                    lines.append(
                        f"  {'':<{width}}  bucket: {source.bucket} "
                        f"(POST notifications to {base}/_kubelambda/events/s3)"
                    )
    lines += [f"kubelambda local: Trigger {name} is not routed: {why}" for name, why in refused]
    return lines


async def serve(
    args: argparse.Namespace,
    *,
    output: Callable[[str], None] = print,
    on_ready: Callable[[ServingAddresses], None] | None = None,
) -> None:
    """Serve the manifests under `args.path` until cancelled.

    Raises ManifestError or UnsupportedLocally (both ValueError, naming file and field)
    before anything starts.
    """
    objects = load_manifests(args.path)
    functions = [o for o in objects if isinstance(o, Function)]
    triggers = [o for o in objects if isinstance(o, Trigger)]
    workdir = Path(tempfile.mkdtemp(prefix="kubelambda-local-"))
    try:
        packages = S3Packages()  # spec.code.s3 and spec.layers, with this machine's keys
        local = [
            prepare(
                f, workdir=workdir, region=args.region, account_id=ACCOUNT_ID, packages=packages
            )
            for f in functions
        ]
        platform = LocalPlatform(functions=local, host="127.0.0.1", output=output)
        try:
            await _serve(args, platform, functions, triggers, output=output, on_ready=on_ready)
        finally:
            await platform.aclose()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


async def _serve(
    args: argparse.Namespace,
    platform: LocalPlatform,
    functions: Sequence[Function],
    triggers: Sequence[Trigger],
    *,
    output: Callable[[str], None],
    on_ready: Callable[[ServingAddresses], None] | None,
) -> None:
    # Open on this machine, as `sam local` is; said out loud when it listens elsewhere.
    if not is_loopback(args.host):
        output(
            f"kubelambda local: WARNING: listening on {args.host}, and local mode's Invoke "
            "API takes unsigned requests: anyone who reaches this address can invoke every "
            "function"
        )
    settings = gateway_settings(
        args,
        invoke_auth=False,
        account_id=ACCOUNT_ID,
        delivery_state_dir=args.state_dir / "deliveries" if args.state_dir else None,
    )
    routes = routing_table(functions, triggers)
    gateway = _gateway(
        args, platform, functions, triggers, settings=settings, routes=routes, output=output
    )
    autoscaler = _autoscaler(args, gateway=gateway, platform=platform, functions=functions)
    console_sock = (
        None
        if args.no_console
        else bind_console(CONSOLE_HOST, args.console_port, default=CONSOLE_PORT)
    )
    console_url = (
        None if console_sock is None else f"http://{CONSOLE_HOST}:{console_sock.getsockname()[1]}/"
    )

    def ready(addresses: ServingAddresses) -> None:
        lines = describe(
            addresses, functions, triggers, refused=routes.refused, console_url=console_url
        )
        for line in lines:
            output(line)
        # Started: what start-up made stays out of the garbage collector's full collections,
        # each a pause of the event loop longer than a 202 may take (heap.py).
        freeze_startup_heap()
        if on_ready is not None:
            on_ready(addresses)

    buckets = subscriptions(triggers, region=args.region, queue_arn=args.s3_webhook_arn)
    notifications = S3Notifications()
    subscribed: list[BucketSubscriptions] = []
    scaling = asyncio.create_task(autoscaler.run(interval=TICK_SECONDS))
    descriptors = asyncio.create_task(watch_descriptors(output))
    background = [scaling, descriptors]
    if console_sock is not None:
        background += start_local_console(
            console_sock,
            gateway=gateway,
            status=platform.status,
            ready_instances=platform.ready_instances,
            functions=functions,
            triggers=triggers,
            read_logs=_log_reader(args),
        )
    try:
        for group in buckets:
            await subscribe(
                notifications, group.server, bucket=group.bucket, subscriptions=group.subscriptions
            )
            subscribed.append(group)
            output(
                f"kubelambda local: bucket {group.bucket} on {group.server.endpoint} notifies "
                f"{args.s3_webhook_arn} ({', '.join(group.triggers)})"
            )
        await gateway.serve(
            host=args.host, port=args.port, admin_port=args.admin_port, on_ready=ready
        )
    finally:
        for task in background:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if args.state_dir is None:
            await _unsubscribe(subscribed, notifications, output)


def _gateway(
    args: argparse.Namespace,
    platform: LocalPlatform,
    functions: Sequence[Function],
    triggers: Sequence[Trigger],
    *,
    settings: GatewaySettings,
    routes: RoutingTable,
    output: Callable[[str], None],
) -> Gateway:
    """The gateway over `platform`, with the schedules and the queue and kafka pollers that
    feed it in this process."""
    broker = broker_settings(args)
    gateway = create_gateway(
        platform=platform,
        routes=routes,
        settings=settings,
        broker=broker,
        # With a broker, a dispatcher in this process consumes it, as the cluster's do.
        dispatch=broker is not None and not args.no_dispatch,
    )

    async def announce(trigger: Trigger, tick: datetime) -> None:
        output(f"kubelambda local: schedule {trigger.name} fired its tick of {tick.isoformat()}")

    gateway.attach(
        Scheduler(
            store=gateway.delivery_store,
            clock=ScaledClock(args.schedule_speed) if args.schedule_speed != 1 else SystemClock(),
            triggers=lambda: triggers,
            function={FunctionKey(f.namespace, f.name): f for f in functions}.get,
            region=settings.region,
            account_id=settings.account_id,
            fired=announce,
        )
    )
    # Queue and kafka Triggers: pollers in this process, as a cluster's dispatchers run them.
    attach_sources(
        gateway, functions=functions, triggers=triggers, broker=broker, clock=SystemClock()
    )
    return gateway


def _autoscaler(
    args: argparse.Namespace,
    *,
    gateway: Gateway,
    platform: LocalPlatform,
    functions: Sequence[Function],
) -> Autoscaler:
    """The autoscaler that sets `platform`'s replicas from the gateway's own counters (or
    --prometheus), and that the platform calls when a request finds no instance."""
    specs = {FunctionKey(f.namespace, f.name): ScalingSpec.of(f) for f in functions}

    def load() -> Mapping[FunctionKey, Load]:
        return {
            key: Load(
                in_flight=item.in_flight, queued=item.queued, requests_total=item.requests_total
            )
            for key, item in gateway.load().items()
        }

    source: MetricSource = (
        PrometheusSource(args.prometheus) if args.prometheus else DirectSource(load)
    )
    autoscaler = Autoscaler(source=source, target=platform, specs=lambda: specs)

    async def wake(function: FunctionKey, concurrency: int) -> None:
        await autoscaler.wake(function, concurrency=concurrency, gateway="local")

    platform.on_wake = wake
    return autoscaler


async def _unsubscribe(
    groups: Sequence[BucketSubscriptions],
    notifications: S3Notifications,
    output: Callable[[str], None],
) -> None:
    for group in groups:
        try:
            async with asyncio.timeout(30):
                await unsubscribe(
                    notifications,
                    group.server,
                    bucket=group.bucket,
                    subscriptions=group.subscriptions,
                )
        except (BucketError, TimeoutError) as exc:
            output(f"kubelambda local: could not remove bucket subscriptions: {exc!r}")


def _log_reader(args: argparse.Namespace) -> Callable[[FunctionKey], list[str]]:
    folder = args.log_dir or default_folder(args.port)

    def read(key: FunctionKey) -> list[str]:
        try:
            return read_lines(folder, key.name, tail=None, where=f"--port {args.port}")
        except NoLogs as exc:
            raise LookupError(str(exc)) from exc

    return read
