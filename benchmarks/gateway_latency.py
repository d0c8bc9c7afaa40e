"""Benchmark: latency the gateway adds at a fixed request rate below saturation (open loop).

wrk cannot hold a rate and Debian has no wrk2, so this script is its own load generator:
uvloop, raw keep-alive connections, responses parsed with httptools. Requests are sent on
a fixed schedule (500/s by default) whatever the answers do, and each latency is measured
from the request's scheduled time, so a stall is counted in full (no coordinated
omission). The same instance is measured direct, behind nginx and behind the gateway
(HTTP trigger), in alternating rounds; printed: p50/p90/p99 of each and the gateway minus
direct. Target: p99 added <= 5 ms.

    python benchmarks/gateway_latency.py [--rate 500] [--seconds 10] [--rounds 2] [--runtime]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from contextlib import ExitStack

import httptools
import uvloop

from gateway_common import INVOKE_PATH, proxies, sample_event


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[int] | None = None
        self.status = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()

    def on_message_complete(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(self.status)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("closed"))


async def open_loop(port: int, request: bytes, *, rate: float, seconds: float) -> list[float]:
    """Latencies (ms) of `rate * seconds` requests sent on schedule to 127.0.0.1:port."""
    loop = asyncio.get_running_loop()
    idle: list[_Connection] = []
    latencies: list[float] = []
    errors = 0

    async def connection() -> _Connection:
        while idle:
            conn = idle.pop()
            # servers close connections idle past their keep-alive timeout
            if conn.transport is not None and not conn.transport.is_closing():
                return conn
        _, protocol = await loop.create_connection(_Connection, "127.0.0.1", port)
        return protocol

    async def one(scheduled: float) -> None:
        nonlocal errors
        conn = await connection()
        conn.waiter = loop.create_future()
        assert conn.transport is not None
        conn.transport.write(request)
        try:
            status = await asyncio.wait_for(conn.waiter, 30)
        except (ConnectionError, TimeoutError):
            errors += 1
            return
        latencies.append((time.perf_counter() - scheduled) * 1000)
        if status >= 400:
            errors += 1
        idle.append(conn)

    for _ in range(16):  # warm connections, as a steady client would have
        idle.append(await connection())
    tasks = []
    start = time.perf_counter() + 0.05
    count = int(rate * seconds)
    for index in range(count):
        scheduled = start + index / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one(scheduled)))
    await asyncio.gather(*tasks)
    for conn in idle:
        if conn.transport is not None:
            conn.transport.close()
    if errors:
        raise SystemExit(f"port {port}: {errors} of {count} requests failed")
    return latencies


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


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
                    results[name] += await open_loop(
                        port, request, rate=args.rate, seconds=args.seconds
                    )

        uvloop.run(measure())
    what = (
        "kubelambda_runtime" if args.runtime else "stand-in instance (kubelambda.gateway.standin)"
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
