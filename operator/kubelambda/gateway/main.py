"""``kubelambda gateway``: the gateway on a cluster, fed by the Kubernetes platform.

Ready pods come from watched EndpointSlices, routes from watched Functions and Triggers,
and a request that finds no pod wakes the function through the autoscaler's endpoint.
The Helm chart runs it; the flags mirror local mode's where they mean the same.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import urllib.parse
from collections.abc import Sequence
from pathlib import Path

from kubelambda.api import Function, Trigger
from kubelambda.gateway.gateway import Gateway, create_gateway
from kubelambda.gateway.platforms import FunctionKey, Instance, PlatformError
from kubelambda.gateway.settings import GatewaySettings
from kubelambda.gateway.specs import routing_table
from kubelambda.gateway.upstream import healthy
from kubelambda.kube.client import KubeClient
from kubelambda.kube.platform import KubernetesPlatform

__all__ = ["build_parser", "run"]

logger = logging.getLogger(__name__)

WAKE_TIMEOUT_SECONDS = 2.0


def build_parser(prog: str = "kubelambda gateway") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Run the event gateway on a cluster: HTTP Triggers, the Lambda Invoke API "
        "and S3 notifications, routed to Function pods, held while a function scales up.",
    )
    parser.add_argument("--kubeconfig", type=Path, help="default: in-cluster, $KUBECONFIG")
    parser.add_argument("--namespace", help="serve Functions of this namespace only")
    parser.add_argument("--host", default="0.0.0.0", help="public address (default 0.0.0.0)")
    parser.add_argument("--port", type=int, default=8080, help="public port (default 8080)")
    parser.add_argument("--admin-port", type=int, default=9090, help="/metrics, /healthz")
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--default-namespace", default="default", help="for bare FunctionNames")
    parser.add_argument("--max-queued", type=int, default=GatewaySettings().max_queued_per_function)
    parser.add_argument("--hold-timeout", type=float, default=30.0)
    parser.add_argument(
        "--autoscaler-url",
        default=os.environ.get("KUBELAMBDA_AUTOSCALER_URL", "http://kubelambda-operator:8082"),
        help="where wake-ups go: POST URL/wake/NAMESPACE/NAME ($KUBELAMBDA_AUTOSCALER_URL)",
    )
    parser.add_argument("--state-dir", type=Path, help="durable deliveries of bucket events")
    parser.add_argument(
        "--s3-token",
        default=os.environ.get("KUBELAMBDA_S3_TOKEN"),
        help="bearer token S3 notifications must carry ($KUBELAMBDA_S3_TOKEN)",
    )
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING"))
    return parser


class AutoscalerWaker:
    """Asks the autoscaler for an instance: one small POST, bounded by a deadline."""

    def __init__(self, url: str) -> None:
        parsed = urllib.parse.urlsplit(url)
        self.host = parsed.hostname or "localhost"
        self.port = parsed.port or 80
        self.base = parsed.path.rstrip("/")

    async def __call__(self, function: FunctionKey) -> None:
        path = f"{self.base}/wake/{function.namespace}/{function.name}"
        request = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Length: 0\r\n"
            "Connection: close\r\n\r\n"
        ).encode()
        try:
            async with asyncio.timeout(WAKE_TIMEOUT_SECONDS):
                reader, writer = await asyncio.open_connection(self.host, self.port)
                try:
                    writer.write(request)
                    status_line = await reader.readline()
                finally:
                    writer.close()
        except (OSError, TimeoutError) as exc:
            # The gateway asks again while requests wait; one failed ask is not fatal.
            logger.warning("waking %s: the autoscaler did not answer: %s", function, exc)
            return
        parts = status_line.split()
        status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        if status == 404:
            raise PlatformError(f"the autoscaler knows no Function {function}")
        if status not in (200, 202):
            logger.warning("waking %s: the autoscaler answered %s", function, status or "nothing")


async def serve(args: argparse.Namespace) -> None:
    settings = GatewaySettings(
        region=args.region,
        default_namespace=args.default_namespace,
        max_queued_per_function=args.max_queued,
        hold_timeout_seconds=args.hold_timeout,
        delivery_state_dir=args.state_dir,
        s3_notification_token=args.s3_token or None,
        account_id=os.environ.get("KUBELAMBDA_ACCOUNT_ID") or "000000000000",
    )
    client = KubeClient.from_config(args.kubeconfig)
    gateway: Gateway | None = None  # the platform starts first; specs reach the gateway once made

    def on_specs(functions: Sequence[Function], triggers: Sequence[Trigger]) -> None:
        if gateway is not None:
            gateway.set_routes(
                routing_table(functions, triggers, default_namespace=args.default_namespace)
            )

    platform: KubernetesPlatform[FunctionKey, Instance] = KubernetesPlatform(
        client=client,
        make_key=FunctionKey,
        make_instance=Instance,
        waker=AutoscalerWaker(args.autoscaler_url),
        on_specs=on_specs,
        namespace=args.namespace,
        probe=healthy,
    )
    async with asyncio.timeout(120):
        await platform.start()
    serving = create_gateway(
        platform=platform,
        routes=routing_table(
            platform.functions(), platform.triggers(), default_namespace=args.default_namespace
        ),
        settings=settings,
    )
    gateway = serving
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, serving.shutdown)
    try:
        await serving.serve(host=args.host, port=args.port, admin_port=args.admin_port)
    finally:
        platform.stop()
        client.close()


def run(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("kubelambda").setLevel(args.log_level)
    import uvloop

    uvloop.run(serve(args))
    return 0
