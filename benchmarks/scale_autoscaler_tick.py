"""Benchmark: the autoscaler's tick with 15,000 functions (issue 17).

Prints the one PromQL query a tick sends, by part, how big the answer is, and where each
tick's time goes: Prometheus evaluating (its own figure, ``stats=all``), encoding and
transferring the answer, parsing it, and deciding in the operator's process; then the tick's
p50 and max against its 1 s interval. The answer lists only the functions with some load, so
run it with ``--busy 0.05`` and ``--busy 0.5`` to see the cost follow the busy share. The
first tick also offers the status reports (``status.autoscaler``) of every function whose
decision is not recorded yet — all of them on a new leader's first tick — to the writers that
record them apart from the ticks (autoscaler/reports.py), and is shown apart, with the time
until the last report is written. Reports go to an in-memory stand-in that waits
``--write-ms`` per write, as a status patch to the API server would; scale calls are counted.
Last, the same Prometheus answers the query of before issue 17 (every part for every function)
and today's with every part, in turn, for a ratio under the same load.

A stdlib HTTP server exports gateway-shaped metrics for every function (a fraction of them
busy, their counters growing), Debian's Prometheus scrapes it every second, and the ticks run
the autoscaler's own code (PrometheusSource, Autoscaler, AutoscalerService) against it.

    python benchmarks/scale_autoscaler_tick.py [--functions 15000] [--busy 0.05] [--ticks 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from harness.prometheus import prometheus, serve_metrics, stop_serving  # noqa: E402
from kubelambda.api.identity import FunctionKey  # noqa: E402
from kubelambda.autoscaler import prometheus as promql  # noqa: E402
from kubelambda.autoscaler.decider import ScalingSpec  # noqa: E402
from kubelambda.autoscaler.reports import REPORT_WRITERS  # noqa: E402
from kubelambda.autoscaler.service import AutoscalerService, WakeEndpoint  # noqa: E402
from kubelambda.autoscaler.sources import Observations  # noqa: E402
from support.waiting import wait_for_async  # noqa: E402

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


class Recorded:
    """The source, keeping what its last `observe` answered."""

    def __init__(self, source: promql.PrometheusSource) -> None:
        self.source = source
        self.last = Observations(functions={})

    async def observe(self, *, now: float) -> Observations:
        self.last = await self.source.observe(now=now)
        return self.last


class TimedFetch:
    """The PrometheusSource's fetch, timed, asking Prometheus for its own evaluation time too."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.evaluation: list[float] = []
        self.body = b""

    def __call__(self, url: str) -> bytes:
        started = time.perf_counter()
        body = promql._get(url + "&stats=all")
        self.seconds.append(time.perf_counter() - started)
        timings = json.loads(body).get("data", {}).get("stats", {}).get("timings", {})
        self.evaluation.append(float(timings.get("evalTotalTime", 0.0)))
        self.body = body
        return body


def query_before() -> str:
    """The tick's query before issue 17: every part for every function, idle or not."""
    by = "sum by (namespace, function)"
    parts = []
    for window, span in (("stable", "60000ms"), ("panic", "6000ms")):
        parts.append((f"{window}_in_flight", f"{by} (avg_over_time({promql.IN_FLIGHT}[{span}]))"))
        parts.append((f"{window}_queued", f"{by} (avg_over_time({promql.QUEUED}[{span}]))"))
        parts.append((f"{window}_rps", f"{by} (rate({promql.REQUESTS}[{span}]))"))
    parts.append(("queued_now", f"{by} ({promql.QUEUED})"))
    parts.append(("backlog", f"max by (namespace, function) ({promql.BACKLOG})"))
    return " or ".join(f'label_replace({e}, "q", "{n}", "", "")' for n, e in parts)


def ask(url: str, expression: str) -> tuple[float, float, bytes]:
    """Wall time, Prometheus's evaluation time and the answer of one instant query."""
    endpoint = url + "/api/v1/query?" + urllib.parse.urlencode({"query": expression})
    started = time.perf_counter()
    with urllib.request.urlopen(endpoint + "&stats=all", timeout=60) as answer:
        body: bytes = answer.read()
    wall = time.perf_counter() - started
    timings = json.loads(body)["data"]["stats"]["timings"]
    return wall, float(timings["evalTotalTime"]), body


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


async def ticks(url: str, args: argparse.Namespace) -> None:
    fetch = TimedFetch()
    source = Recorded(promql.PrometheusSource(url, fetch=fetch))
    replicas = Replicas(args.write_ms / 1000)

    async def lead() -> bool:
        return True

    service = AutoscalerService(
        source=source,
        replicas=replicas,
        hold_lease=lead,
        wake=WakeEndpoint(port=0),
    )
    spec = ScalingSpec(
        target_concurrency=1.0, min_replicas=0, max_replicas=100, scale_to_zero_after_seconds=60
    )
    service.specs = {FunctionKey(NAMESPACE, f"fn-{n}"): spec for n in range(args.functions)}

    # A new leader's first tick has a decision to record for every function (status.autoscaler):
    # it offers them to the service's writers (autoscaler/reports.py), which write them while
    # the ticks go on; shown apart, timed until the last is written. The ticks measured after
    # it are the steady state.
    reporting = asyncio.create_task(service.reports.run())
    first_began = time.perf_counter()
    for _ in range(5):  # a first tick that asks every part may outlast the fetch's deadline
        await service._tick()
        if service.autoscaler.decisions:
            break
    first_wall = time.perf_counter() - first_began
    await service._tick()  # the rotating parts asked once more, as the steady state has them
    first_scales = replicas.scales
    fetch.seconds.clear()
    fetch.evaluation.clear()

    rows: list[dict[str, float]] = []
    for _ in range(args.ticks):
        reports, scales = replicas.reports, replicas.scales
        wall, cpu = time.perf_counter(), time.process_time()
        await service._tick()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        started = time.perf_counter()
        promql.parse(fetch.body)
        parse = time.perf_counter() - started
        rows.append(
            {
                "wall": wall,
                "cpu": cpu,
                "fetch": fetch.seconds[-1],
                "evaluation": fetch.evaluation[-1],
                "parse": parse,
                "series": fetch.body.count(b'"metric"'),
                "bytes": len(fetch.body),
                "reports": replicas.reports - reports,
                "scales": replicas.scales - scales,
            }
        )
        await asyncio.sleep(max(1.0 - wall, 0.0))
    await wait_for_async(
        lambda: not service.reports.unwritten, seconds=600, what="every status report written"
    )
    all_written = time.perf_counter() - first_began
    reporting.cancel()

    rotating = {name: n for n, group in enumerate(promql.ROTATING) for name in group}
    print(
        f"{args.functions} functions, {args.busy:.0%} busy;"
        f" Prometheus scraping every {args.scrape_seconds:g} s"
    )
    print(f"  load average: {load_average()}")
    print(
        "  the tick's PromQL: one query, the union of these parts (each under its own q label);"
        f" the {len(promql.ROTATING)} groups marked (k) are asked one a tick in turn, kept"
        " between:"
    )
    for name, expression in promql.parts():
        turn = f"({rotating[name]})" if name in rotating else ""
        print(f"    {turn:3} {name:16} {expression}")
    print(
        "  answers: "
        + ", ".join(f"{row['series']} series {row['bytes'] / 1024:.0f} KiB" for row in rows)
        + f"; {len(source.last.functions)} functions listed, the rest idle: {source.last.complete}"
    )
    for n, row in enumerate(rows, 1):
        transfer = row["fetch"] - row["evaluation"]
        rest = row["wall"] - row["fetch"] - row["parse"]
        print(
            f"  tick {n}: {ms(row['wall']):>7} = Prometheus evaluating {ms(row['evaluation'])}"
            f" + encoding and transfer {ms(transfer)} + parsing {ms(row['parse'])}"
            f" + deciding {ms(rest)}; {ms(row['cpu'])} CPU here;"
            f" {row['reports']} reports, {row['scales']} scale calls"
        )
    walls = [row["wall"] for row in rows]
    steps = {
        "Prometheus evaluating": statistics.median(row["evaluation"] for row in rows),
        "encoding and transfer": statistics.median(
            row["fetch"] - row["evaluation"] for row in rows
        ),
        "parsing": statistics.median(row["parse"] for row in rows),
        "deciding": statistics.median(row["wall"] - row["fetch"] - row["parse"] for row in rows),
    }
    dominant = max(steps, key=lambda step: steps[step])
    print(
        f"  tick p50 {ms(statistics.median(walls))}, max {ms(max(walls))} against the 1 s interval;"
        f" {dominant} dominates (p50 {ms(steps[dominant])})"
    )
    # The same Prometheus, at the same time, asked the way the tick asked before (issue 17).
    before, now = [], []
    for _ in range(args.before):  # in turn, so both meet the same load on the machine
        before.append(ask(url, query_before()))
        now.append(ask(url, promql.query()))
    if before:
        for label, runs in (("before, all parts", before), ("now, all parts", now)):
            body = runs[-1][2]
            series = body.count(b'"metric"')
            print(
                f"  {label}: {series} series, {len(body) / 2**20:.2f} MiB; answered in p50"
                f" {ms(statistics.median(run[0] for run in runs))}, of which evaluating"
                f" {ms(statistics.median(run[1] for run in runs))}"
            )
    print(
        f"  first tick: {ms(first_wall)}, {first_scales} scale calls; its decisions written apart"
        f" from the ticks: {replicas.reports} status reports at {args.write_ms:g} ms each,"
        f" {REPORT_WRITERS} at a time, the last {all_written:.1f} s after the first tick began"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--functions", type=int, default=15000)
    parser.add_argument("--busy", type=float, default=0.05, help="fraction with traffic")
    parser.add_argument("--ticks", type=int, default=5)
    parser.add_argument("--write-ms", type=float, default=5.0, help="one status report's time")
    parser.add_argument(
        "--warmup", type=float, default=65.0, help="seconds of scrapes first (a stable window)"
    )
    parser.add_argument(
        "--before", type=int, default=3, help="times to ask the query of before issue 17 (0: not)"
    )
    parser.add_argument(
        "--scrape-seconds", type=float, default=1.0, help="scrape interval (the chart's: 5)"
    )
    args = parser.parse_args()
    exporter = Exporter(args.functions, int(args.functions * args.busy))
    server = serve_metrics(exporter.text)
    target = f"127.0.0.1:{server.server_address[1]}"
    try:
        with prometheus([target], scrape_seconds=args.scrape_seconds) as server_url:
            server_url.wait_until_scraped(timeout=120)
            time.sleep(args.warmup)  # a full stable window of points: what a tick reads
            asyncio.run(ticks(server_url.url, args))
    finally:
        stop_serving(server)


if __name__ == "__main__":
    main()
