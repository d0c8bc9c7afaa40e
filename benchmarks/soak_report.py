"""The report of benchmarks/soak.py: a line per cycle, then cycle 1 (the first after warm-up)
against the last at the same phases, the targets, what dominates any growth, what local mode
left at exit, and one JSON line of the main figures."""

from __future__ import annotations

import argparse
import json
import math
import statistics
from collections import Counter
from dataclasses import dataclass

from soak_load import KINDS, LOADED, LoadRun, ScaleLog

LONG_LIVED = ("local mode", "zygote", "nats-server")
RSS_BAND = (0.9, 1.1)  # the issue's ±10%


@dataclass
class Cycle:
    """What one cycle did and what the processes looked like at its phases."""

    index: int
    load: LoadRun
    handled: int  # Event invocations handled (of load.accepted())
    to_zero: float | None  # s from the drain's end until local mode said 0 (None: never)
    gone: float  # s from then until no process of the loaded functions was left
    left: list[tuple[int, str]]  # (pid, what) of theirs still running after that
    cpu: dict[str, float]  # CPU seconds of the long-lived processes during the cycle
    at_zero: dict[str, dict[str, float]]  # key -> metric -> median of the hold's samples
    at_load: dict[str, dict[str, float]]  # the same over the load's second half
    tmp_entries: int  # files and empty folders in local mode's TMPDIR at zero
    tmp_bytes: int
    store_bytes: int  # the JetStream store
    seconds: float


@dataclass
class Ending:
    """Local mode's exit: how long it took, and what it left."""

    stop_seconds: float
    exit_code: int | None
    survivors: list[tuple[int, str]]
    tmp_left: list[str]
    ticks: int  # scheduled events the tick function handled over the run


def _figure(phase: dict[str, dict[str, float]], key: str, metric: str) -> float:
    return phase.get(key, {}).get(metric, 0.0)


def cycle_line(cycle: Cycle) -> str:
    load = cycle.load
    failed = sum(load.failures().values())
    p99 = ", ".join(f"{kind} {load.p99(kind):.0f}" for kind in KINDS)
    zero = "never" if cycle.to_zero is None else f"{cycle.to_zero:.1f} s"
    local = cycle.at_zero.get("local mode", {})
    return (
        f"cycle {cycle.index}: {load.sent():,} requests, {failed} failed, p99 ms {p99}; events "
        f"{cycle.handled:,}/{load.accepted():,} handled; zero after {zero} (+{cycle.gone:.1f} s"
        f" until gone), left {len(cycle.left)}; at zero: local mode "
        f"{local.get('rss', 0):.1f} MiB, {local.get('fds', 0):.0f} fds, "
        f"{local.get('tcp', 0):.0f} tcp; zygote {_figure(cycle.at_zero, 'zygote', 'rss'):.1f}"
        f" MiB; nats-server {_figure(cycle.at_zero, 'nats-server', 'rss'):.1f} MiB"
    )


def _ratio(first: float, last: float) -> float:
    return last / first if first else math.nan


def _per_process(f: dict[str, float], g: dict[str, float]) -> float:
    """RSS per process, last / first: instances' counts follow the load, so their sums may
    differ by a whole process without any growing (a long-lived key is one process). NaN when
    either cycle had none (the schedule's instance runs in some cycles only)."""
    if not f.get("procs") or not g.get("procs"):
        return math.nan
    return _ratio(f["rss"] / f["procs"], g["rss"] / g["procs"])


def _trend(cycles: list[Cycle], key: str) -> float:
    """MiB per hour of `key`'s RSS at zero over these cycles (least squares on their ends);
    NaN for fewer than 5, whose slope extrapolated to an hour says nothing."""
    hours = [sum(c.seconds for c in cycles[: i + 1]) / 3600 for i in range(len(cycles))]
    values = [_figure(c.at_zero, key, "rss") for c in cycles]
    if len(cycles) < 5:
        return math.nan
    return statistics.linear_regression(hours, values).slope


def _table(title: str, first: Cycle, last: Cycle, phase: str) -> list[tuple[str, str, float]]:
    """Print one phase's comparison; return (key, metric, growth) of each figure that grew:
    RSS as a ratio minus one, counts as a difference."""
    a, b = (first.at_zero, last.at_zero) if phase == "zero" else (first.at_load, last.at_load)
    keys = [k for k in LONG_LIVED if k in a or k in b]
    keys += sorted((set(a) | set(b)) - set(LONG_LIVED))
    print(f"  {title} (ratio: RSS per process, last / first)")
    print(
        f"    {'':<22} {'RSS MiB':>15} {'ratio':>6}  {'fds':>11}  {'TCP (CLOSE_WAIT)':>18}"
        f"  {'processes':>9}  {'children':>9}"
    )
    grew = []
    for key in keys:
        f, g = a.get(key, {}), b.get(key, {})
        if not f.get("procs") and not g.get("procs"):
            continue  # in a few samples only (a tick's instance): none in either median

        def pair(metric: str, f: dict[str, float] = f, g: dict[str, float] = g) -> str:
            return f"{f.get(metric, 0):.0f} → {g.get(metric, 0):.0f}"

        ratio = _per_process(f, g)
        tcp = f"{pair('tcp')} ({g.get('close_wait', 0):.0f})"
        rss = f"{f.get('rss', 0):.1f} → {g.get('rss', 0):.1f}"
        label = f"{key} (reference)" if key == "nats-server" else key
        print(
            f"    {label:<22} {rss:>15} {ratio:>6.2f}  {pair('fds'):>11}  {tcp:>18}"
            f"  {pair('procs'):>9}  {pair('children'):>9}"
        )
        if key != "nats-server":
            grew.append((key, "RSS", ratio - 1))
            if phase == "zero":  # under load these follow the load, not a leak
                grew += [(key, m, g.get(m, 0) - f.get(m, 0)) for m in ("fds", "tcp", "procs")]
            grew.append((key, "CLOSE_WAIT", g.get("close_wait", 0) - f.get("close_wait", 0)))
    return [(f"{key} at {phase}", metric, value) for key, metric, value in grew]


def report(
    args: argparse.Namespace,
    cycles: list[Cycle],
    *,
    capacity: float,
    rate: float,
    ending: Ending,
    log: ScaleLog,
    sampling_seconds: float,
    elapsed: float,
    load_average: tuple[float, float],
) -> None:
    first, last = cycles[1], cycles[-1]
    print(
        f"\nsoak: {elapsed / 60:.1f} min, {len(cycles)} cycles (load {args.load_seconds:g} s at "
        f"{args.fraction:g} x capacity {capacity:,.0f}/s = {rate:,.0f}/s; zero after "
        f"{args.zero_after} s; {args.hold_seconds:g} s at zero); cycle 1 (the first after "
        f"warm-up) → cycle {last.index}; medians of each phase's samples, every "
        f"{args.interval:g} s; load average {load_average[0]:.1f} before, "
        f"{load_average[1]:.1f} after"
    )
    grew = _table("at zero (web, api, events scaled down; the hold):", first, last, "zero")
    grew += _table("under load (the load's second half):", first, last, "load")
    local_ratio = _ratio(_figure(first.at_zero, "local mode", "rss"),
                         _figure(last.at_zero, "local mode", "rss"))  # fmt: skip
    load_ratio = _ratio(_figure(first.at_load, "local mode", "rss"),
                        _figure(last.at_load, "local mode", "rss"))  # fmt: skip
    zygote_ratio = _ratio(_figure(first.at_zero, "zygote", "rss"),
                          _figure(last.at_zero, "zygote", "rss"))  # fmt: skip
    trend = _trend(cycles[1:], "local mode")
    per_request = [1e6 * c.cpu["local mode"] / max(c.load.sent(), 1) for c in (first, last)]
    met = {True: "met", False: "missed"}
    in_band = all(RSS_BAND[0] <= r <= RSS_BAND[1] for r in (local_ratio, load_ratio, zygote_ratio))
    fds = [_figure(c.at_zero, "local mode", "fds") for c in (first, last)]
    tcp = [_figure(c.at_zero, "local mode", "tcp") for c in (first, last)]
    left = max(len(c.left) for c in cycles)
    never = [c.index for c in cycles if c.to_zero is None]
    print("  targets:")
    print(
        f"    local mode RSS last/first: at zero {local_ratio:.3f}, under load {load_ratio:.3f};"
        f" zygote {zygote_ratio:.3f} (0.90-1.10: {met[in_band]}); local mode's trend at zero "
        + (
            f"{trend:+.1f} MiB/h (least squares over cycles 1-{last.index})"
            if not math.isnan(trend)
            else "n/a (under 5 cycles to compare)"
        )
    )
    print(
        f"    local mode at zero: fds {fds[0]:.0f} → {fds[1]:.0f}, TCP {tcp[0]:.0f} → "
        f"{tcp[1]:.0f} (no growth: {met[fds[1] <= fds[0] and tcp[1] <= tcp[0]]})"
    )
    print(
        f"    instances left after a zero: at most {left} in a cycle (0: {met[left == 0]}); "
        f"cycles that never reached zero: {never or 'none'}"
    )
    if left:
        worst = max(cycles, key=lambda c: len(c.left))
        print(f"      e.g. cycle {worst.index}: {worst.left[:6]}")
    print(
        f"  CPU per request of local mode: {per_request[0]:.0f} → {per_request[1]:.0f} us "
        f"({_ratio(*per_request):.2f}x); TMPDIR at zero {first.tmp_entries} → "
        f"{last.tmp_entries} entries, {first.tmp_bytes / 2**20:.1f} → "
        f"{last.tmp_bytes / 2**20:.1f} MiB (function logs); JetStream store "
        f"{first.store_bytes / 2**20:.1f} → {last.store_bytes / 2**20:.1f} MiB"
    )
    cycled = ", ".join(
        f"{name} {log.to_zero[name]}x to zero, {log.from_zero[name]}x back" for name in
        (*LOADED, "tick")
    )  # fmt: skip
    print(f"  scaling (local mode's own words): {cycled}")
    failures: Counter[str] = Counter()
    for c in cycles:
        failures.update(c.load.failures())
    sent = sum(c.load.sent() for c in cycles)
    accepted = sum(c.load.accepted() for c in cycles)
    handled = sum(c.handled for c in cycles)
    print(
        f"  requests: {sent:,} sent, failed {sum(failures.values())} "
        f"({', '.join(f'{k}: {n}' for k, n in failures.items()) or 'none'}); events "
        f"{accepted:,} accepted, {handled:,} handled, {accepted - handled} lost; schedule: "
        f"{log.fired} ticks fired, {ending.ticks} handled; p99 ms first → last: "
        + ", ".join(f"{k} {first.load.p99(k):.0f} → {last.load.p99(k):.0f}" for k in KINDS)
    )
    empty = [entry for entry in ending.tmp_left if entry.endswith("/")]
    files = [entry for entry in ending.tmp_left if not entry.endswith("/")]
    for line, count in log.other.most_common(8):
        print(f"  local mode said ({count}x): {line}")
    print(
        f"  after exit: local mode stopped in {ending.stop_seconds:.1f} s (exit code "
        f"{ending.exit_code}); processes of its tree left: {ending.survivors or 'none'}; "
        f"its TMPDIR left: files {files[:8] or 'none'}"
        + (f" (+{len(files) - 8} more)" if len(files) > 8 else "")
        + f", empty folders {empty or 'none'}"
    )
    for line in dominant(grew):
        print(f"  {line}")
    print(f"  sampling took {sampling_seconds:.1f} s (wall clock) of the benchmark's process")
    summary = {
        "minutes": round(elapsed / 60, 1),
        "cycles": len(cycles),
        "capacity_rps": round(capacity),
        "load_rps": round(rate),
        "local_rss_mib_first": round(_figure(first.at_zero, "local mode", "rss"), 1),
        "local_rss_mib_last": round(_figure(last.at_zero, "local mode", "rss"), 1),
        "local_rss_ratio_zero": round(local_ratio, 3),
        "local_rss_ratio_load": round(load_ratio, 3),
        "local_rss_trend_mib_per_h": round(trend, 1),
        "zygote_rss_ratio": round(zygote_ratio, 3),
        "nats_rss_ratio": round(_ratio(_figure(first.at_zero, "nats-server", "rss"),
                                       _figure(last.at_zero, "nats-server", "rss")), 3),
        "local_fds": [round(v) for v in fds],
        "local_tcp": [round(v) for v in tcp],
        "instances_left_max": left,
        "zero_cycles": min(log.to_zero[name] for name in LOADED),
        "failed": sum(failures.values()),
        "events_lost": accepted - handled,
        "left_after_exit": len(ending.survivors),
        "tmp_files_left_after_exit": len(files),
        "tmp_empty_folders_left_after_exit": len(empty),
    }  # fmt: skip
    # NaN (a figure with nothing to compare) is not JSON: null.
    print(json.dumps({k: None if v != v else v for k, v in summary.items()}))


def dominant(grew: list[tuple[str, str, float]]) -> list[str]:
    """Which process, at which phase, grew most in RSS (per process), and every count that grew
    (descriptors, connections, processes at zero; CLOSE_WAIT at either phase)."""
    rss = sorted((g for g in grew if g[1] == "RSS" and not math.isnan(g[2])), key=lambda g: -g[2])
    # Instances are new processes in every cycle (forks of the zygote): what their RSS says
    # across cycles is how much each had served when sampled, not what one kept.
    lasting = [g for g in rss if g[0].startswith(LONG_LIVED)]
    fresh = [g for g in rss if not g[0].startswith(LONG_LIVED)]
    counts = [g for g in grew if g[1] != "RSS" and g[2] > 0]
    over = [g for g in lasting if g[2] > RSS_BAND[1] - 1]
    if over:
        lines = [
            "growth dominated by: "
            + "; ".join(f"{key} RSS {100 * value:+.1f}%" for key, _, value in over[:3])
        ]
    else:
        top = lasting[0] if lasting else ("none", "RSS", 0.0)
        lines = [f"no RSS growth beyond ±10%; the largest: {top[0]} {100 * top[2]:+.1f}%"]
    if fresh:
        lines.append(
            f"instances (new each cycle), RSS per process: largest change {fresh[0][0]} "
            f"{100 * fresh[0][2]:+.1f}%, smallest {fresh[-1][0]} {100 * fresh[-1][2]:+.1f}%"
        )
    lines.append(
        "counts that grew: "
        + ("; ".join(f"{key} {metric} {value:+.0f}" for key, metric, value in counts[:6])
           or "none")
    )  # fmt: skip
    return lines
