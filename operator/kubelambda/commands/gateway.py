"""``kubelambda gateway``: the gateway on a cluster, fed by the Kubernetes platform.

Ready pods come from watched EndpointSlices, routes from watched Functions and Triggers,
and a request that finds no pod wakes the function through the autoscaler's endpoint.
The Helm chart runs it; its flags are local mode's where they mean the same (serving.py).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from kubelambda.api import Function, Trigger
from kubelambda.commands.heap import freeze_startup_heap
from kubelambda.commands.serving import (
    add_gateway_flags,
    broker_settings,
    create_gateway,
    gateway_settings,
)
from kubelambda.gateway.routing import RoutingTable
from kubelambda.gateway.server import Gateway, ServingAddresses
from kubelambda.gateway.tableupdates import TableUpdates
from kubelambda.gateway.upstream import healthy
from kubelambda.platforms.kubernetes.access_keys import ACCESS_KEY_LABEL, SecretAccessKeys
from kubelambda.platforms.kubernetes.aio import AsyncKube
from kubelambda.platforms.kubernetes.api_keys import ApiKeySecrets
from kubelambda.platforms.kubernetes.client import JSON, KubeClient
from kubelambda.platforms.kubernetes.informer import Informer
from kubelambda.platforms.kubernetes.kinds import SECRET
from kubelambda.platforms.kubernetes.platform import KubernetesPlatform
from kubelambda.platforms.kubernetes.waker import AutoscalerWaker

__all__ = ["REPLICAS_ENV", "build_parser", "gateway_replicas", "run"]

logger = logging.getLogger(__name__)

API_KEY_REFRESH_SECONDS = 30.0
# How many gateway replicas run (the chart's gateway.replicas): each enforces its share of a
# function's limits.
REPLICAS_ENV = "KUBELAMBDA_GATEWAY_REPLICAS"
# --drain-seconds' bound: longer would outlast any sensible termination grace period.
MAX_DRAIN_SECONDS = 300.0


def build_parser(prog: str = "kubelambda gateway") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Run the event gateway on a cluster: HTTP Triggers, the Lambda Invoke API "
        "and S3 notifications, routed to Function pods, held while a function scales up.",
    )
    parser.add_argument("--kubeconfig", type=Path, help="default: in-cluster, $KUBECONFIG")
    parser.add_argument(
        "--namespace",
        action="append",
        default=[],
        metavar="NS",
        help="serve Functions of this namespace (repeatable; default: every namespace)",
    )
    add_gateway_flags(parser, host="0.0.0.0")
    parser.add_argument("--default-namespace", default="default", help="for bare FunctionNames")
    parser.add_argument(
        "--autoscaler-url",
        default=os.environ.get("KUBELAMBDA_AUTOSCALER_URL", "http://kubelambda-operator:8082"),
        help="where wake-ups go: POST URL/wake/NAMESPACE/NAME ($KUBELAMBDA_AUTOSCALER_URL),"
        " with $KUBELAMBDA_WAKE_TOKEN as a bearer token when that is set",
    )
    parser.add_argument(
        "--invoke-auth",
        choices=("sigv4", "none"),
        default="sigv4",
        help="sigv4: the Invoke API takes only requests signed with an access key granted the "
        "function (Functions with spec.invoke.anonymous excepted); none: anyone (default sigv4)",
    )
    parser.add_argument(
        "--access-keys-namespace",
        default=os.environ.get("KUBELAMBDA_POD_NAMESPACE") or "kubelambda",
        help="where the access keys are: Secrets labelled kubelambda.dev/access-key "
        "(default: the gateway's own namespace, $KUBELAMBDA_POD_NAMESPACE)",
    )
    parser.add_argument(
        "--api-key-secrets",
        action="store_true",
        help="read the Secrets that apiKey HTTP Triggers name (by name, get only; every 30 s"
        " again, so a rotated key takes effect); without it such routes refuse every request",
    )
    parser.add_argument(
        "--drain-seconds",
        type=_drain_seconds,
        default=0.0,
        help="on SIGTERM, go on accepting and answering this long, each answer closing its "
        "connection, before shutting down: a pod being deleted still gets new connections "
        "for a moment (the chart sets 5; keep it under the pod's termination grace period). "
        "A second SIGTERM, or SIGINT, stops at once (default 0)",
    )
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING"))
    return parser


def _drain_seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 <= seconds <= MAX_DRAIN_SECONDS:
        raise argparse.ArgumentTypeError(
            f"{text}: the drain lasts from 0 to {MAX_DRAIN_SECONDS:.0f} seconds"
        )
    return seconds


def gateway_replicas(environ: Mapping[str, str]) -> int:
    """How many gateway replicas share each function's reservedConcurrency and throttling
    (each enforces its share, gateway/limits.py): KUBELAMBDA_GATEWAY_REPLICAS, which the chart
    sets from gateway.replicas; 1 when unset."""
    text = environ.get(REPLICAS_ENV, "").strip() or "1"
    if not text.isdigit() or int(text) < 1:
        raise SystemExit(f"{REPLICAS_ENV} must be a whole number of at least 1, not {text!r}")
    return int(text)


async def serve(args: argparse.Namespace) -> None:
    settings = gateway_settings(
        args,
        default_namespace=args.default_namespace,
        delivery_state_dir=args.state_dir,
        account_id=os.environ.get("KUBELAMBDA_ACCOUNT_ID") or "000000000000",
        invoke_auth=args.invoke_auth == "sigv4",
        gateway_replicas=gateway_replicas(os.environ),
    )
    client = KubeClient.from_config(args.kubeconfig)
    gateway: Gateway | None = None  # the platform starts first; specs reach the gateway once made

    refused: set[tuple[str, str]] = set()
    kube = AsyncKube(client, workers=2, component="kubelambda-gateway", field_manager="")

    async def get_secret(namespace: str, name: str) -> JSON | None:
        return await kube.get(SECRET, namespace=namespace, name=name)

    api_keys = ApiKeySecrets(get_secret)

    # Each routing table is made from the one before by what changed (issue 17).
    tables = TableUpdates(
        default_namespace=args.default_namespace,
        secrets=api_keys.resolve if args.api_key_secrets else None,
    )

    def routes(functions: Sequence[Function], triggers: Sequence[Trigger]) -> RoutingTable:
        table = tables.update(functions, triggers)
        for name, why in set(table.refused) - refused:
            logger.warning("Trigger %s is not routed: %s", name, why)
        refused.clear()
        refused.update(table.refused)
        return table

    def on_specs(functions: Sequence[Function], triggers: Sequence[Trigger]) -> None:
        if gateway is not None:
            gateway.set_routes(routes(functions, triggers))
        if args.api_key_secrets:
            # A new apiKey route's Secret is read now, not at the next refresh.
            reading[:] = [task for task in reading if not task.done()]
            reading.append(asyncio.create_task(read_api_keys(all_of_them=False)))

    reading: list[asyncio.Task[None]] = []

    async def read_api_keys(*, all_of_them: bool) -> None:
        """Read the Secrets apiKey routes name; a changed key rebuilds the routes."""
        changed = await api_keys.refresh(platform.triggers(), all_of_them=all_of_them)
        if changed and gateway is not None:
            tables.reset()  # every apiKey route reads its key again
            gateway.set_routes(routes(platform.functions(), platform.triggers()))

    async def reread_api_keys() -> None:
        while True:
            await asyncio.sleep(API_KEY_REFRESH_SECONDS)  # a period, not a wait for a state
            try:
                await read_api_keys(all_of_them=True)
            except Exception:
                logger.exception("reading API key Secrets failed; retrying")

    platform = KubernetesPlatform(
        client=client,
        waker=AutoscalerWaker(
            args.autoscaler_url, token=os.environ.get("KUBELAMBDA_WAKE_TOKEN") or None
        ),
        on_specs=on_specs,
        namespaces=args.namespace,
        probe=healthy,
    )
    access_keys = SecretAccessKeys()
    keys = Informer(
        client,
        SECRET,
        on_event=access_keys.secret_event,
        loop=asyncio.get_running_loop(),
        label_selector=ACCESS_KEY_LABEL,
        namespace=args.access_keys_namespace,
    )
    if settings.invoke_auth:
        keys.start()
    async with asyncio.timeout(120):
        await platform.start()
        if settings.invoke_auth:
            await keys.synced.wait()
        if args.api_key_secrets:
            await api_keys.refresh(platform.triggers(), all_of_them=True)
    rereading = asyncio.create_task(reread_api_keys()) if args.api_key_secrets else None
    serving = create_gateway(
        platform=platform,
        routes=routes(platform.functions(), platform.triggers()),
        settings=settings,
        access_keys=access_keys,
        # --nats: accepted events go to JetStream, for `kubelambda dispatcher` to deliver.
        broker=broker_settings(args),
    )
    gateway = serving

    def serving_now(_: ServingAddresses) -> None:
        # Start-up's objects leave the garbage collector's full collections (heap.py).
        freeze_startup_heap()

    loop = asyncio.get_running_loop()
    loop.add_signal_handler(
        signal.SIGTERM, functools.partial(serving.stop, drain_seconds=args.drain_seconds)
    )
    loop.add_signal_handler(signal.SIGINT, serving.shutdown)
    try:
        await serving.serve(
            host=args.host,
            port=args.port,
            admin_port=args.admin_port,
            on_ready=serving_now,
        )
    finally:
        for task in [*reading, *([rereading] if rereading else [])]:
            task.cancel()
        platform.stop()
        keys.stop()
        kube.close()


def run(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("kubelambda").setLevel(args.log_level)
    import uvloop

    uvloop.run(serve(args))
    return 0
