"""The ``kubelambda`` command: one entry point whose subcommands wire the components together."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import signal
import sys
from importlib.metadata import version
from pathlib import Path

from kubelambda.gateway.settings import GatewaySettings

LOCAL_HELP = """\
Serve Function and Trigger manifests on this machine, without a cluster: the event
gateway on one port, each function's instances as local runtime processes, scaled with
traffic (to zero after spec.scaling.scaleToZeroAfterSeconds without requests; the next
request starts one again).

PATH is a manifest file or a folder of *.yaml files — the same files you would
`kubectl apply`. Code comes from spec.code.inline, or locally from spec.code.path, a
folder beside the manifest.

examples:
  kubelambda local examples/
  curl http://127.0.0.1:8080/hello?name=you
  aws lambda invoke --endpoint-url http://127.0.0.1:8080 --function-name hello out.json
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubelambda",
        description="AWS-Lambda-style functions on Kubernetes.",
    )
    parser.add_argument(
        "--version", action="version", version=f"kubelambda {version('kubelambda')}"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    # These two parse their own flags (`kubelambda operator --help`); listed here for --help.
    commands.add_parser(
        "operator", help="run the controller and the autoscaler on a cluster", add_help=False
    )
    commands.add_parser("gateway", help="run the event gateway on a cluster", add_help=False)
    local = commands.add_parser(
        "local",
        help="serve Function and Trigger manifests on this machine, without a cluster",
        description=LOCAL_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    local.add_argument("path", type=Path, help="a manifest file or a folder of them")
    local.add_argument("--host", default="127.0.0.1", help="gateway address (default 127.0.0.1)")
    local.add_argument("--port", type=int, default=8080, help="gateway port (default 8080)")
    local.add_argument(
        "--admin-port", type=int, default=9090, help="/metrics and /healthz port (default 9090)"
    )
    local.add_argument("--region", default="us-east-1", help="AWS_REGION for functions")
    local.add_argument(
        "--max-queued",
        type=int,
        default=GatewaySettings().max_queued_per_function,
        help="requests held per function while no instance is free; beyond, 503"
        " (default %(default)s)",
    )
    local.add_argument(
        "--hold-timeout",
        type=float,
        default=30.0,
        help="seconds a request may be held waiting for an instance; then 504 (default 30)",
    )
    local.add_argument(
        "--prometheus",
        metavar="URL",
        help="scale from this Prometheus (scraping the admin port) instead of the gateway's "
        "own counters",
    )
    local.add_argument(
        "--state-dir",
        type=Path,
        metavar="DIR",
        help="keep accepted asynchronous events (Event invocations, bucket notifications) "
        "in DIR and resume them on the next start; bucket subscriptions then stay in place "
        "at stop, so the S3 server queues events while local mode is down",
    )
    local.add_argument(
        "--s3-token",
        metavar="TOKEN",
        default=os.environ.get("KUBELAMBDA_S3_TOKEN"),
        help="bearer token S3 servers must send to /_kubelambda/events/s3 (MinIO's webhook "
        "auth_token; default $KUBELAMBDA_S3_TOKEN); without one, only loopback may post",
    )
    local.add_argument(
        "--s3-webhook-arn",
        metavar="ARN",
        help="the S3 server's ARN of its webhook target for this gateway, used to subscribe "
        "buckets of Triggers that name a spec.bucket.source (credentials: AWS_ACCESS_KEY_ID "
        "and AWS_SECRET_ACCESS_KEY or AWS_PROFILE; default arn:minio:sqs::KUBELAMBDA:webhook)",
    )
    local.add_argument("-v", "--verbose", action="store_true", help="log what the gateway does")
    return parser


def _run_local(args: argparse.Namespace) -> int:
    from kubelambda.local.buckets import SubscriptionError
    from kubelambda.local.functions import UnsupportedLocally
    from kubelambda.local.runner import Options, run

    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    options = Options(
        path=args.path,
        host=args.host,
        port=args.port,
        admin_port=args.admin_port,
        region=args.region,
        max_queued_per_function=args.max_queued,
        hold_timeout_seconds=args.hold_timeout,
        prometheus_url=args.prometheus,
        state_dir=args.state_dir,
        s3_token=args.s3_token,
    )
    if args.s3_webhook_arn:
        options = dataclasses.replace(options, s3_webhook_arn=args.s3_webhook_arn)

    async def main() -> None:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            if task is not None:
                loop.add_signal_handler(signum, task.cancel)
        await run(options, output=lambda line: print(line, flush=True))

    try:
        asyncio.run(main())
    except (ValueError, UnsupportedLocally) as exc:  # ManifestError, UnsupportedLocally
        print(f"kubelambda local: {exc}", file=sys.stderr)
        return 2
    except (OSError, SubscriptionError) as exc:
        print(f"kubelambda local: {exc}", file=sys.stderr)
        return 1
    except asyncio.CancelledError:
        pass
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "operator":
        from kubelambda.controller.main import run as run_operator

        return run_operator(argv[1:])
    if argv and argv[0] == "gateway":
        from kubelambda.gateway.main import run as run_gateway

        return run_gateway(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "local":
        return _run_local(args)
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
