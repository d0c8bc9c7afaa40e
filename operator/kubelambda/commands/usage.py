"""``kubelambda usage``: flags and wiring only. Prints each function's invocations and billed
GB-seconds over a window, from Prometheus (``kubelambda.tools.usage``)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from kubelambda.tools.usage import (
    DEFAULT_PROMETHEUS_URL,
    PROMETHEUS_URL_VARIABLE,
    UsageError,
    fetch_usage,
    format_table,
)

__all__ = ["build_parser", "run"]

DESCRIPTION = f"""\
Print what each function used, as Lambda bills it: invocations, and GB-seconds (each
invocation's duration rounded up to 1 ms, times the function's memory), with an estimated
cost at Lambda's x86 price.

The figures come from the gateways' counters kubelambda_gateway_billed_invocations_total
and kubelambda_gateway_billed_gb_seconds_total, read from the Prometheus at --prometheus
(else ${PROMETHEUS_URL_VARIABLE}, else {DEFAULT_PROMETHEUS_URL}) that scrapes the gateways'
admin port (local mode's --admin-port).

examples:
  kubelambda usage
  kubelambda usage --namespace shop --since 7d
  kubelambda usage --prometheus http://prometheus.monitoring:9090
"""


def build_parser(prog: str = "kubelambda usage") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", "--namespace", help="only this namespace's functions")
    parser.add_argument(
        "--since",
        default="24h",
        metavar="WINDOW",
        help="the window, a Prometheus duration: 1h, 24h, 7d, ... (default %(default)s)",
    )
    parser.add_argument(
        "--prometheus",
        metavar="URL",
        help=f"Prometheus's URL (default ${PROMETHEUS_URL_VARIABLE} or {DEFAULT_PROMETHEUS_URL})",
    )
    parser.add_argument("--no-cost", action="store_true", help="leave out the cost estimate")
    return parser


def run(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    url = args.prometheus or os.environ.get(PROMETHEUS_URL_VARIABLE) or DEFAULT_PROMETHEUS_URL
    try:
        rows = fetch_usage(url, window=args.since, namespace=args.namespace)
    except UsageError as exc:
        print(f"kubelambda usage: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(format_table(rows, window=args.since, cost=not args.no_cost))
    return 0
