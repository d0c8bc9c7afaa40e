"""Benchmark: throughput through the gateway, against the same instance direct and behind nginx.

One instance process (the stand-in, or the real runtime with --runtime) serves all
paths; wrk (1 thread, same connections) loads each in alternating rounds, and the
ratios of medians are printed:

- gateway HTTP trigger (GET /hello: event built, response mapped) / direct invoke
- gateway Invoke API (POST /2015-03-31/functions/hello/invocations) / direct invoke
- either / nginx proxying the same invoke request (keep-alive upstream). Target >= 0.5.

    python benchmarks/gateway_throughput.py [--seconds 5] [--rounds 3] [--connections 32]
        [--runtime]
"""

from __future__ import annotations

import argparse
import statistics
from contextlib import ExitStack

from gateway_common import (
    INVOKE_PATH,
    PIDS,
    cpu_seconds,
    proxies,
    sample_event,
    wrk,
)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--runtime", action="store_true", help="the real runtime as the instance")
    args = parser.parse_args()
    event = sample_event()
    with ExitStack() as stack:
        ports = proxies(stack, real_runtime=args.runtime, concurrency=args.connections)
        instance, gateway_port, nginx_port = ports.instance, ports.gateway, ports.nginx
        paths = {
            "direct": (f"http://127.0.0.1:{instance}{INVOKE_PATH}", "POST", event),
            "nginx": (f"http://127.0.0.1:{nginx_port}/", "POST", event),
            "gateway trigger": (f"http://127.0.0.1:{gateway_port}/hello", "GET", b""),
            "gateway invoke": (
                f"http://127.0.0.1:{gateway_port}/2015-03-31/functions/hello/invocations",
                "POST",
                event,
            ),
        }
        for url, method, body in paths.values():  # warm every path
            wrk(url, method=method, body=body, connections=args.connections, seconds=1)
        rates: dict[str, list[float]] = {name: [] for name in paths}
        cpu: dict[str, list[float]] = {name: [] for name in paths}
        for _ in range(args.rounds):
            for name, (url, method, body) in paths.items():
                port = int(url.split(":")[2].split("/")[0])
                before = cpu_seconds(port) if port in PIDS else 0.0
                result = wrk(
                    url,
                    method=method,
                    body=body,
                    connections=args.connections,
                    seconds=args.seconds,
                )
                rates[name].append(result["rate"])
                if port in PIDS:
                    used = cpu_seconds(port) - before
                    cpu[name].append(used / (result["rate"] * args.seconds) * 1e6)
    what = (
        "kubelambda_runtime" if args.runtime else "stand-in instance (kubelambda.testing.standin)"
    )
    print(f"instance: {what}; wrk -t1 -c{args.connections}, {args.rounds} x {args.seconds}s")
    print(f"  {'path':<16} {'median req/s':>13} {'proxy CPU/request':>18}")
    for name, values in rates.items():
        per_request = f"{statistics.median(cpu[name]):.0f} us" if cpu[name] else "-"
        print(f"  {name:<16} {statistics.median(values):>13,.0f} {per_request:>18}")
    # Each round measures all paths back to back, so a ratio within a round cancels most
    # of the machine's background noise; the median over rounds is the figure.
    for name in ("gateway trigger", "gateway invoke"):
        for reference in ("direct", "nginx"):
            ratios = [g / r for g, r in zip(rates[name], rates[reference], strict=True)]
            print(
                f"  {name} / {reference}: {statistics.median(ratios):.2f} "
                f"(rounds: {', '.join(f'{r:.2f}' for r in ratios)})"
            )
    print("  target: gateway / nginx >= 0.5")


if __name__ == "__main__":
    main()
