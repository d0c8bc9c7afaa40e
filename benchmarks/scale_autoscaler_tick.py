"""Benchmark: the autoscaler's tick with 15,000 functions (issue 17).

Prints the one PromQL query a tick sends, how long a real Prometheus takes to answer it and
how big the answer is, and where the tick's time goes in the operator's process: fetching,
parsing, deciding, and the status reports (``status.autoscaler``) that a tick writes for
every function whose decision it has not recorded yet — all of them on a new leader's first
tick. Reports go to an in-memory stand-in that waits ``--write-ms`` per write, as a status
patch to the API server would; scale calls are counted.

A stdlib HTTP server exports gateway-shaped metrics for every function (a fraction of them
busy, their counters growing), Debian's Prometheus scrapes it every second, and the ticks run
the autoscaler's own code (PrometheusSource, Autoscaler, AutoscalerService) against it.

    python benchmarks/scale_autoscaler_tick.py [--functions 15000] [--busy 0.05] [--ticks 5]
"""

from __future__ import annotations

import argparse
import asyncio
import http.server
import statistics
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from harness.prometheus import prometheus  # noqa: E402
from kubelambda.api.identity import FunctionKey  # noqa: E402
from kubelambda.autoscaler import prometheus as promql  # noqa: E402
from kubelambda.autoscaler.decider import ScalingSpec  # noqa: E402
from kubelambda.autoscaler.service import AutoscalerService, WakeEndpoint  # noqa: E402

NAMESPACE = "bench"


class Exporter:
    """Gateway-shaped /metrics for ``functions`` functions; the first ``busy`` get traffic."""

    def __init__(self, functions: int, busy: int) -> None:
        self.functions = functions
        self.busy = busy
        self.scrapes = 0

    def text(self) -> bytes:
        self.scrapes += 1
        lines: list[str] = []
        for n in range(self.functions):
            labels = f'namespace="{NAMESPACE}",function="fn-{n}"'
            active = n < self.busy
            lines.append(f"{promql.IN_FLIGHT}{{{labels}}} {3 if active else 0}")
            lines.append(f"{promql.QUEUED}{{{labels}}} 0")
            total = self.scrapes * 20 if active else 1
            lines.append(f'{promql.REQUESTS}{{{labels},code="200"}} {total}')
        return ("\n".join(lines) + "\n").encode()


def serve(exporter: Exporter) -> http.server.ThreadingHTTPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = exporter.text()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class Replicas:
    """The cluster's replica counts, in memory; a report waits as a status patch would."""

    def __init__(self, write_seconds: float) -> None:
        self.write_seconds = write_seconds
        self.counts: dict[FunctionKey, int] = {}
        self.reports = 0
        self.scales = 0

    def replicas(self, function: FunctionKey) -> int:
        return self.counts.get(function, 0)

    async def scale(self, function: FunctionKey, replicas: int, *, reason: str) -> None:
        self.scales += 1
        self.counts[function] = replicas

    def known(self, function: FunctionKey) -> bool:
        return True

    async def refresh(self, function: FunctionKey) -> None:
        pass

    async def report(self, function: FunctionKey, *, desired: int, reason: str) -> None:
        self.reports += 1
        await asyncio.sleep(self.write_seconds)

    async def fetch_function(self, function: FunctionKey) -> Mapping[str, Any] | None:
        return None


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


class TimedFetch:
    """The PrometheusSource's fetch, timed, with the answer's size kept."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.size = 0

    def __call__(self, url: str) -> bytes:
        started = time.perf_counter()
        body = promql._get(url)
        self.seconds.append(time.perf_counter() - started)
        self.size = len(body)
        return body


async def ticks(url: str, args: argparse.Namespace) -> None:
    fetch = TimedFetch()
    replicas = Replicas(args.write_ms / 1000)

    async def lead() -> bool:
        return True

    service = AutoscalerService(
        source=promql.PrometheusSource(url, fetch=fetch),
        replicas=replicas,
        hold_lease=lead,
        wake=WakeEndpoint(port=0),
    )
    spec = ScalingSpec(
        target_concurrency=1.0, min_replicas=0, max_replicas=100, scale_to_zero_after_seconds=60
    )
    service.specs = {FunctionKey(NAMESPACE, f"fn-{n}"): spec for n in range(args.functions)}

    body = fetch(promql.PrometheusSource(url)._endpoint)
    started = time.perf_counter()
    observed = promql.parse(body)
    parse_seconds = time.perf_counter() - started
    series = body.count(b'"metric"')
    fetch.seconds.clear()

    rows = []
    for _ in range(args.ticks):
        reports, scales = replicas.reports, replicas.scales
        wall, cpu = time.perf_counter(), time.process_time()
        await service._tick()
        rows.append(
            (
                time.perf_counter() - wall,
                time.process_time() - cpu,
                replicas.reports - reports,
                replicas.scales - scales,
            )
        )
        await asyncio.sleep(1.0)

    query = promql.query()
    print(f"{args.functions} functions, {args.busy:.0%} busy; Prometheus scraping every second")
    print(f"  load average: {load_average()}")
    print(f"  the tick's PromQL ({len(query)} characters, one query per tick):")
    for part in query.split(" or "):
        print(f"    {part}")
    print(
        f"  answer: {series} series, {fetch.size / 2**20:.1f} MiB of JSON;"
        f" {len(observed)} functions observed; parse {parse_seconds * 1000:.0f} ms"
    )
    print(
        "  Prometheus's answer time per tick: "
        + ", ".join(f"{s * 1000:.0f}" for s in fetch.seconds)
        + " ms"
    )
    for n, (wall, cpu, reports, scales) in enumerate(rows, 1):
        print(
            f"  tick {n}: {wall * 1000:7.0f} ms, {cpu * 1000:6.0f} ms CPU in this process;"
            f" {reports} status reports, {scales} scale calls"
        )
    later = [wall for wall, _, reports, _ in rows[1:] if reports == 0]
    if later:
        print(
            f"  ticks without reports: median {statistics.median(later) * 1000:.0f} ms"
            f" (the tick runs every 1 s)"
        )
    print(
        f"  status reports are written one after another: at {args.write_ms:g} ms each,"
        f" the first tick's {rows[0][2]} take {rows[0][2] * args.write_ms / 1000:.0f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--functions", type=int, default=15000)
    parser.add_argument("--busy", type=float, default=0.05, help="fraction with traffic")
    parser.add_argument("--ticks", type=int, default=5)
    parser.add_argument("--write-ms", type=float, default=5.0, help="one status report's time")
    parser.add_argument("--warmup", type=float, default=12.0, help="seconds of scrapes first")
    args = parser.parse_args()
    exporter = Exporter(args.functions, int(args.functions * args.busy))
    server = serve(exporter)
    target = f"127.0.0.1:{server.server_address[1]}"
    try:
        with prometheus([target], scrape_seconds=1.0) as server_url:
            server_url.wait_until_scraped(timeout=120)
            time.sleep(args.warmup)  # a fixed span of scrapes, so the windows have points
            asyncio.run(ticks(server_url.url, args))
    finally:
        server.shutdown()


if __name__ == "__main__":
    main()
