"""The event sources benchmark's report (benchmarks/event_sources.py): per source, the medians over
rounds of both paths, the ratio against its target, latency, CPU per message by process, and
which step sets the rate through kubelambda; then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Callable
from typing import Any

from event_sources_brokers import BATCH, Drain
from loadgen import percentile


def latency_percentile(phase: dict[str, Any], q: float) -> float:
    return percentile(phase["latency"], q)


def report(args: argparse.Namespace, results: dict[str, list[dict[str, dict[str, Any]]]]) -> None:
    summary: dict[str, Any] = {
        "messages": args.messages,
        "batch_size": BATCH,
        "concurrency": args.concurrency,
        "latency_rate": args.rate,
    }
    for name, rounds in results.items():
        summary |= {f"{name}_{k}": v for k, v in report_source(args, name, rounds).items()}
    print(json.dumps(summary))


def report_source(
    args: argparse.Namespace, name: str, rounds: list[dict[str, dict[str, Any]]]
) -> dict[str, float]:
    def med(path: str, read: Callable[[Drain], float]) -> float:
        return statistics.median(read(found[path]["drain"]) for found in rounds)

    def med_of(path: str, measure: str, key: str) -> float:
        """The median over rounds of one process's CPU per message, or cores busy."""
        return med(path, lambda d: getattr(d, measure)()[key])

    def pooled(path: str, q: float) -> float:
        return percentile([d for found in rounds for d in found[path]["latency"]], q)

    def row(label: str, cells: list[str], note: str = "") -> None:
        print(f"  {label:<44} {cells[0]:>12} {cells[1]:>12}{note}")

    paths = ("reference", "kubelambda")
    ratios = [f["kubelambda"]["drain"].rate / f["reference"]["drain"].rate for f in rounds]
    ratio = statistics.median(ratios)
    rates = [med(p, lambda d: d.rate) for p in paths]
    print(
        f"\n{name}: {args.messages:,} messages of ~100 bytes, batchSize {BATCH}, "
        f"maximumConcurrency {args.concurrency}, {len(rounds)} round(s); medians over rounds"
    )
    row("", list(paths))
    row("messages/s, first ack to last", [f"{r:,.0f}" for r in rates])
    met = "met" if ratio >= 0.3 else "missed"
    row("kubelambda / reference", ["", f"{ratio:.2f}"], f"   target >= 0.3 ({met})")
    if max(ratios) > 1.25 * min(ratios):
        print(f"  !! the rounds disagree ({', '.join(f'{v:.2f}' for v in ratios)}): busy machine")
    # Both latency Triggers have window 0 (the smallest), so all of it is beyond the window.
    print(f"  latency at {args.rate:g} messages/s, send -> handled (window 0 s, so all beyond it):")
    for q in (0.5, 0.99):
        row(f"  p{q * 100:g}, ms", [f"{pooled(p, q):.1f}" for p in paths])
    keys = {p: list(rounds[0][p]["drain"].cpu) for p in paths}
    cpu = {p: {k: med_of(p, "per_message", k) for k in keys[p]} for p in paths}
    cores = {p: {k: med_of(p, "cores", k) for k in keys[p]} for p in paths}
    for process in ("broker", "client", "local mode", "runtimes"):
        cells = [f"{cpu[p][process]:.0f}" if process in cpu[p] else "-" for p in paths]
        row(f"CPU us per message, {process}", cells)
    row("cores busy, whole machine", [f"{cores[p]['machine']:.2f}" for p in paths])
    batch = args.messages / statistics.median(f["kubelambda"]["batches"] for f in rounds)
    function_ms = statistics.median(f["kubelambda"]["function ms"] for f in rounds)
    steady = [f["kubelambda"]["drain"].steady() for f in rounds]
    pace, left, took = (statistics.median(s[i] for s in steady) for i in range(3))
    print(
        f"  kubelambda: {batch:.0f} messages per batch, a batch every "
        f"{1000 * batch / rates[1]:.1f} ms (the no-op function runs {function_ms:.2f} ms of "
        f"it); {pace:,.0f}/s from 10% to 90% acked, then the last {left:.0%} took "
        f"{took:.2f} s ({left * args.messages / pace:.2f} s at that pace)"
    )
    found = dominant(
        cpu, cores, rate=rates[1], batch=batch, messages=args.messages, steady=(pace, left, took)
    )
    for line in found:
        print(f"  {line}")
    return {
        "reference_rate": round(rates[0]),
        "rate": round(rates[1]),
        "ratio": round(ratio, 2),
        "steady_rate": round(pace),
        "reference_p50_ms": round(pooled("reference", 0.5), 1),
        "reference_p99_ms": round(pooled("reference", 0.99), 1),
        "p50_ms": round(pooled("kubelambda", 0.5), 1),
        "p99_ms": round(pooled("kubelambda", 0.99), 1),
        "local_cpu_us": round(cpu["kubelambda"]["local mode"]),
    }


def dominant(
    cpu: dict[str, dict[str, float]],
    cores: dict[str, dict[str, float]],
    *,
    rate: float,
    batch: float,
    messages: int,
    steady: tuple[float, float, float],
) -> list[str]:
    """Which step sets the rate through kubelambda: a slow end of the drain (`steady`: the
    pace from 10% to 90% acked, the share left, the seconds it took), a process that keeps a
    core busy, the machine busy with other work, or waiting between batches."""
    pace, left, took = steady
    mine = {k: v for k, v in cores["kubelambda"].items() if k not in ("client", "machine")}
    busiest = max(mine, key=mine.__getitem__)
    others = cores["kubelambda"]["machine"] - sum(mine.values()) - cores["kubelambda"]["client"]
    local = cpu["kubelambda"]["local mode"]
    lines = [
        "cores busy through kubelambda: "
        + ", ".join(f"{k} {v:.2f}" for k, v in sorted(mine.items(), key=lambda kv: -kv[1]))
        + f", this client {cores['kubelambda']['client']:.2f}, other work {max(others, 0):.2f}"
    ]
    full = cores["kubelambda"]["machine"] >= 1.7
    if took > 2 * left * messages / pace and took > 0.25 * messages / rate:
        verdict = (
            f"the end of the drain: the last {left:.0%} took {took:.2f} s, "
            f"{left * messages / pace:.2f} s at the steady pace; at that pace the ratio would "
            f"be {pace / rate:.1f}x higher"
        )
    elif mine[busiest] >= 0.7:
        verdict = f"{busiest}, busy {mine[busiest]:.0%} of a core"
        if full:
            verdict += f" (the 2 cores were full, {others:.2f} of them with other work)"
    elif full and others >= 0.4:
        verdict = f"the machine: its 2 cores are full, {others:.2f} of them with other work"
    else:
        verdict = (
            f"waiting: no process is CPU-bound (the busiest, {busiest}, {mine[busiest]:.0%} of "
            f"a core); local mode's CPU per batch is {local * batch / 1000:.1f} ms of the "
            f"{1000 * batch / rate:.1f} ms between batches"
        )
    lines.append(f"dominates: {verdict}")
    lines.append(
        f"  local mode (gateway and pollers: one Python process) spends {local:.0f} us of CPU "
        f"per message: at most {1e6 / local:,.0f} messages/s on one core. The plain client "
        f"spends {cpu['reference']['client']:.0f} us; the broker {cpu['reference']['broker']:.0f}"
        f" us (reference) and {cpu['kubelambda']['broker']:.0f} us (kubelambda)"
    )
    return lines
