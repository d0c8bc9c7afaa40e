"""``kubelambda console``: flags and wiring only. Serves the read-only web console of a cluster
(``kubelambda.console``): Functions from the API server, figures and charts from Prometheus."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from kubelambda.console.app import bind, create_app, serve_console
from kubelambda.console.cluster import ClusterSource
from kubelambda.console.pod_logs import KubeLogReader, LogLimits
from kubelambda.console.prometheus import PrometheusReader
from kubelambda.platforms.kubernetes.client import KubeClient

__all__ = ["build_parser", "run"]

PROMETHEUS_URL_VARIABLE = "KUBELAMBDA_PROMETHEUS_URL"
DEFAULT_PORT = 8090
LOG_LIMITS = LogLimits()

DESCRIPTION = f"""\
Serve the read-only web console of a cluster: every Function with its replicas, its way to
zero and its next schedule ticks (from the API server: get and list of Functions, Triggers
and Deployments, nothing else without --read-logs), and the last hour's invocations, 5xx
answers, p50/p99 duration, cold starts, requests in flight and held, and queued asynchronous
events with the oldest one's age, with charts (from the Prometheus at --prometheus, else
${PROMETHEUS_URL_VARIABLE}, that scrapes the gateways and dispatchers).

With --read-logs a Function's page also shows its latest invocations from the logs of its
newest {LOG_LIMITS.pods} pods (list pods, get pods/log; each read bounded to the last \
{LOG_LIMITS.lines} lines
of the last hour, {LOG_LIMITS.bytes // 1024} KiB and {LOG_LIMITS.timeout:g}s). Off by default: \
logs hold whatever a handler prints,
secrets included (the chart: console.readLogs=true grants and sets it).

The chart runs it as its own Deployment (console.enabled=true); open it with
  kubectl -n kubelambda port-forward svc/kubelambda-console 8090:80
and http://127.0.0.1:8090/. Run here, it reads with your kubeconfig.

examples:
  kubelambda console --prometheus http://127.0.0.1:9090
  kubelambda console -n shop --port 8091
"""


def build_parser(prog: str = "kubelambda console") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default %(default)s)"
    )
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="port to listen on (default %(default)s)"
    )
    parser.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        help="only this namespace's Functions; repeat for more (default: all namespaces)",
    )
    parser.add_argument(
        "--prometheus",
        metavar="URL",
        help=f"Prometheus's URL (default ${PROMETHEUS_URL_VARIABLE}; none: no figures)",
    )
    parser.add_argument(
        "--read-logs",
        action="store_true",
        help="show each Function's latest invocations from its pods' logs (default: not read)",
    )
    parser.add_argument(
        "--kubeconfig",
        type=Path,
        help="kubeconfig file (default $KUBECONFIG, the pod's service account, ~/.kube/config)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log each problem met")
    return parser


def run(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    url = args.prometheus or os.environ.get(PROMETHEUS_URL_VARIABLE)
    try:
        kube = KubeClient.from_config(args.kubeconfig)
    except Exception as exc:  # the client's own config errors have no common base
        print(
            f"kubelambda console: cannot read the Kubernetes configuration: {exc}", file=sys.stderr
        )
        return 2
    source = ClusterSource(
        kube=kube,
        prometheus=PrometheusReader(url) if url else None,
        namespaces=args.namespace,
        wall=time.time,
        logs=KubeLogReader(kube) if args.read_logs else None,
        log_limits=LOG_LIMITS,
    )
    try:
        sock = bind(args.host, args.port)
    except OSError as exc:
        print(
            f"kubelambda console: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr
        )
        return 1
    host = f"[{args.host}]" if ":" in args.host else args.host

    def ready() -> None:
        print(f"kubelambda console: http://{host}:{sock.getsockname()[1]}/", flush=True)
        if url is None:
            print(
                f"kubelambda console: no --prometheus or ${PROMETHEUS_URL_VARIABLE}: figures and"
                " charts are not shown",
                flush=True,
            )

    async def main() -> None:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            if task is not None:
                loop.add_signal_handler(signum, task.cancel)
        await serve_console(create_app(source), sock, on_ready=ready)

    try:
        asyncio.run(main())
    except asyncio.CancelledError:
        pass
    finally:
        sock.close()
        kube.close()
    return 0
