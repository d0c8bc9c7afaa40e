"""Benchmark: latency the gateway adds at a fixed request rate below saturation (open loop).

wrk cannot hold a rate and Debian has no wrk2, so the load comes from loadgen.open_loop:
requests on a fixed schedule (500/s by default) whatever the answers do, each latency
measured from the request's scheduled time, so a stall is counted in full (no coordinated
omission). The same instance is measured direct, behind nginx and behind the gateway
(HTTP trigger), in alternating rounds; printed: p50/p90/p99 of each and the gateway minus
direct. Target: p99 added <= 5 ms.

    python benchmarks/gateway_latency.py [--rate 500] [--seconds 10] [--rounds 2] [--runtime]
"""

from __future__ import annotations

import argparse
import statistics
from contextlib import ExitStack

import uvloop

from gateway_common import INVOKE_PATH, proxies, sample_event
from loadgen import open_loop, percentile


def http_request(method: str, path: str, port: int, body: bytes = b"") -> bytes:
    head = (
        f"{method} {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=500)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--runtime", action="store_true", help="the real runtime as the instance")
    args = parser.parse_args()
    event = sample_event()
    with ExitStack() as stack:
        ports = proxies(stack, real_runtime=args.runtime, concurrency=8)
        instance, gateway_port, nginx_port = ports.instance, ports.gateway, ports.nginx
        targets = {
            "direct": (instance, http_request("POST", INVOKE_PATH, instance, event)),
            "nginx": (nginx_port, http_request("POST", "/", nginx_port, event)),
            "gateway": (gateway_port, http_request("GET", "/hello", gateway_port)),
        }
        results: dict[str, list[float]] = {name: [] for name in targets}

        async def measure() -> None:
            for port, request in targets.values():  # warm up every path
                await open_loop(port, request, rate=args.rate, seconds=1)
            for _ in range(args.rounds):
                for name, (port, request) in targets.items():
                    run = await open_loop(port, request, rate=args.rate, seconds=args.seconds)
                    if run.failed:
                        raise SystemExit(f"{name}: {run.failed} of {run.sent} requests failed")
                    results[name] += run.latencies

        uvloop.run(measure())
    what = (
        "kubelambda_runtime" if args.runtime else "stand-in instance (kubelambda.testing.standin)"
    )
    print(
        f"instance: {what}; open loop at {args.rate:.0f} req/s, "
        f"{args.rounds} x {args.seconds:.0f}s per target, latency in ms"
    )
    stats = {}
    for name, values in results.items():
        stats[name] = {q: percentile(values, q) for q in (0.5, 0.9, 0.99)}
        print(
            f"  {name:<8} p50 {stats[name][0.5]:6.2f}  p90 {stats[name][0.9]:6.2f}  "
            f"p99 {stats[name][0.99]:6.2f}  mean {statistics.fmean(values):6.2f}  n={len(values)}"
        )
    for name in ("nginx", "gateway"):
        added = {q: stats[name][q] - stats["direct"][q] for q in (0.5, 0.99)}
        print(f"  {name} adds: p50 {added[0.5]:+.2f} ms, p99 {added[0.99]:+.2f} ms")
    print("  target: gateway p99 added <= 5 ms")


if __name__ == "__main__":
    main()
