"""``kubelambda invoke``: flags and wiring only. Calls the Lambda Invoke API of local mode or a
cluster's gateway through ``kubelambda.tools.invocation`` and prints what the function
answered."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from kubelambda.tools.endpoints import DEFAULT_URL, URL_VARIABLE, gateway_url
from kubelambda.tools.invocation import (
    InvokeError,
    Outcome,
    function_name,
    invoke,
    lambda_client,
    read_payload,
    region_of,
)

__all__ = ["build_parser", "run"]

DESCRIPTION = f"""\
Invoke a function through the Lambda Invoke API, as `aws lambda invoke` does, and print its
result on stdout. A function error (X-Amz-Function-Error) prints the error on stderr as
well, and exits 1.

The gateway is --url, else ${URL_VARIABLE}, else {DEFAULT_URL} (`kubelambda local`).
Requests are signed (SigV4) with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE,
when the environment has them, as a cluster's gateway requires; unsigned otherwise.

exit status:
  0  the function ran (or, with --async, the event was accepted)
  1  the function failed, or the gateway refused the call or could not be reached
  2  bad arguments

examples:
  kubelambda invoke hello --payload '{{"name": "you"}}'
  kubelambda invoke hello --payload @hello/event.json --log-type Tail
  kubelambda invoke worker --async --payload '{{"job": 1}}'
  kubelambda invoke orders -n shop --url http://gateway.example.com
"""


def build_parser(prog: str = "kubelambda invoke") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "name", metavar="NAME", help="the function: NAME, NAMESPACE.NAME or a function ARN"
    )
    parser.add_argument(
        "--payload",
        default="{}",
        metavar="JSON|@FILE",
        help="the event: JSON, @FILE to read it from FILE, @- from stdin (default {})",
    )
    parser.add_argument(
        "--async",
        dest="asynchronous",
        action="store_true",
        help="invoke asynchronously (InvocationType Event): print the request id once the"
        " gateway has accepted the event (202)",
    )
    parser.add_argument(
        "--log-type",
        choices=("None", "Tail"),
        default="None",
        help="Tail: print the invocation's last 4 KB of log on stderr (not with --async)",
    )
    parser.add_argument("--url", help=f"the gateway (default ${URL_VARIABLE} or {DEFAULT_URL})")
    parser.add_argument(
        "--region",
        help="the region to sign for (default AWS_REGION, AWS_DEFAULT_REGION or us-east-1)",
    )
    parser.add_argument("-n", "--namespace", help="the function's namespace (default: default)")
    return parser


def run(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else list(argv))
    if args.asynchronous and args.log_type == "Tail":
        parser.error("--log-type Tail needs a synchronous invocation: Event returns no log")
    try:
        url = gateway_url(args.url, os.environ)
        name = function_name(args.name, args.namespace)
        payload = read_payload(args.payload, stdin=sys.stdin.buffer)
    except ValueError as exc:
        print(f"kubelambda invoke: {exc}", file=sys.stderr)
        return 2
    client = lambda_client(url, region=region_of(args.region, os.environ), environ=os.environ)
    try:
        outcome = invoke(
            client,
            name=name,
            payload=payload,
            asynchronous=args.asynchronous,
            log_tail=args.log_type == "Tail",
        )
    except InvokeError as exc:
        print(f"kubelambda invoke: {name}: {exc}", file=sys.stderr)
        return 1
    return _report(name, outcome)


def _report(name: str, outcome: Outcome) -> int:
    if outcome.status == 202:
        print(outcome.request_id)
        return 0
    if outcome.log_tail:
        sys.stderr.write(
            outcome.log_tail if outcome.log_tail.endswith("\n") else outcome.log_tail + "\n"
        )
    sys.stdout.buffer.write(outcome.payload + b"\n")
    sys.stdout.flush()
    if outcome.function_error is None:
        return 0
    print(
        f"kubelambda invoke: {name} failed ({outcome.function_error}): {_error(outcome.payload)}",
        file=sys.stderr,
    )
    return 1


def _error(payload: bytes) -> str:
    """errorType: errorMessage of Lambda's error payload, or the payload itself."""
    try:
        error = json.loads(payload)
    except ValueError:
        return payload.decode("utf-8", "replace")[:300]
    if isinstance(error, dict) and "errorMessage" in error:
        kind = error.get("errorType")
        return f"{kind}: {error['errorMessage']}" if kind else str(error["errorMessage"])
    return payload.decode("utf-8", "replace")[:300]
