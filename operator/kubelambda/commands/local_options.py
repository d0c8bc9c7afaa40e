"""``kubelambda local``'s command line: its options (``build_parser``) and the help text that
introduces them (``DESCRIPTION``).

commands/local.py parses with them; commands/local_serving.py reads what they parse.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from kubelambda.commands.serving import add_gateway_flags
from kubelambda.platforms.local.buckets import DEFAULT_WEBHOOK_ARN

__all__ = ["CONSOLE_PORT", "DESCRIPTION", "build_parser"]

DESCRIPTION = """\
Serve Function and Trigger manifests on this machine, without a cluster: the event
gateway on one port, each function's instances as local runtime processes, scaled with
traffic (to zero after spec.scaling.scaleToZeroAfterSeconds without requests; the next
request starts one again).

PATH is a manifest file or a folder of *.yaml files — the same files you would
`kubectl apply` — or an AWS SAM template (converted as `kubelambda sam convert` would,
warning of what does not map). Code comes from spec.code.inline, locally from
spec.code.path (a folder relative to the manifest's own; a requirements.txt beside it is
installed once per version), or from spec.code.s3 and spec.layers with this machine's AWS
credentials. Queue Triggers need --nats (or their own nats.url); Kafka Triggers need none.
With --state-dir, bucket subscriptions stay in place at stop, so the S3 server queues
events while local mode is down.

examples:
  kubelambda local examples/
  curl http://127.0.0.1:8080/hello?name=you
  aws lambda invoke --endpoint-url http://127.0.0.1:8080 --function-name hello out.json
"""
CONSOLE_PORT = 8090  # the console's default port; when taken, another free one


def build_parser(prog: str = "kubelambda local") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "path", type=Path, help="a manifest file, a folder of them, or a SAM template"
    )
    add_gateway_flags(parser, host="127.0.0.1")
    parser.add_argument(
        "--schedule-speed",
        type=float,
        default=1.0,
        metavar="N",
        help="run schedules' clocks N times as fast (to watch a cron or rate Trigger fire in a"
        " demo or a test; default 1)",
    )
    parser.add_argument(
        "--no-dispatch",
        action="store_true",
        help="with --nats: only publish asynchronous events; `kubelambda dispatcher` processes "
        "deliver them",
    )
    parser.add_argument(
        "--prometheus",
        metavar="URL",
        help="scale from this Prometheus (scraping the admin port) instead of the gateway's "
        "own counters",
    )
    parser.add_argument(
        "--s3-webhook-arn",
        metavar="ARN",
        default=DEFAULT_WEBHOOK_ARN,
        help="the S3 server's ARN of its webhook target for this gateway, used to subscribe "
        "buckets of Triggers that name a spec.bucket.source (credentials: AWS_ACCESS_KEY_ID "
        "and AWS_SECRET_ACCESS_KEY or AWS_PROFILE; default %(default)s)",
    )
    parser.add_argument(
        "--log-dir",
        type=Path,
        metavar="DIR",
        help="also write each function's output to DIR/NAME.log, kept at stop (default: a folder"
        " of this port's under the temporary folder, removed at stop); `kubelambda logs NAME`"
        " reads it",
    )
    parser.add_argument(
        "--console-port",
        type=int,
        metavar="PORT",
        help=f"serve the read-only web console on 127.0.0.1:PORT (default {CONSOLE_PORT}, or a"
        " free port when that one is taken; 0: a free port)",
    )
    parser.add_argument("--no-console", action="store_true", help="serve no web console")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the gateway does")
    return parser
