"""The report of benchmarks/async_events.py: medians over rounds, ratios against the targets,
the NATS path's split, which step dominates, and one JSON line of the main figures."""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Callable

ISSUE_RATE = 500.0  # events/s at which the issue asks for p99 <= 10 ms


def _median(rounds: list[dict[str, dict[str, float | str]]], path: str, key: str) -> float:
    return statistics.median(float(r[path][key]) for r in rounds)


def report(
    args: argparse.Namespace,
    rounds: list[dict[str, dict[str, float | str]]],
    split: dict[str, float] | None,
    *,
    elapsed: float,
) -> None:
    def med(path: str, key: str) -> float:
        return _median(rounds, path, key)

    slots = args.concurrency * args.replicas
    print(
        f"async events: function concurrency {args.concurrency} x {args.replicas} instances "
        f"({slots} slots), {args.connections} client connections, {args.rounds} round(s) of "
        f"{args.seconds:g} s; run took {elapsed:.0f} s; medians over rounds"
    )
    print(f"  {'':<44} {'NATS (--nats)':>14} {'embedded':>14}")

    def row(label: str, key: str, fmt: str = "{:,.0f}") -> None:
        cells = [fmt.format(med(p, key)) for p in ("nats", "embedded")]
        print(f"  {label:<44} {cells[0]:>14} {cells[1]:>14}")

    row("RequestResponse capacity, req/s", "sync rate")
    row("Event: accepted (202) per s", "async accept rate")
    row("Event: handled end to end per s", "async handled rate")
    row("  time to accept all, s", "async accept seconds", "{:.1f}")
    row("  time to handle all (from first 202), s", "async handle seconds", "{:.1f}")
    ratios = {p: [float(r[p]["async handled rate"]) / float(r[p]["sync rate"]) for r in rounds]
              for p in ("nats", "embedded")}  # fmt: skip
    cells = [f"{statistics.median(ratios[p]):.2f}" for p in ("nats", "embedded")]
    print(f"  {'handled Event / RequestResponse':<44} {cells[0]:>14} {cells[1]:>14}")
    for process in ("gateway", "runtimes", "nats-server", "client"):
        sync = [f"{med(p, f'sync cpu {process}'):.0f}" for p in ("nats", "embedded")]
        event = [f"{med(p, f'async cpu {process}'):.0f}" for p in ("nats", "embedded")]
        label = f"CPU us per call, {process}: sync | event"
        print(f"  {label:<44} {sync[0] + ' | ' + event[0]:>14} {sync[1] + ' | ' + event[1]:>14}")
    rate = med("nats", "latency rate")
    which = "the issue's 500/s" if rate >= ISSUE_RATE else "0.5 x the NATS path's 202 rate"
    print(f"  202 latency, open loop at {rate:.0f} events/s ({which}), ms:")
    for q in ("p50", "p95", "p99"):
        row(f"    {q}", f"latency {q}", "{:.1f}")
    row("    handled after the last 202, s", "latency drain", "{:.1f}")
    nats_rate, embedded_rate = (
        med("nats", "async handled rate"),
        med("embedded", "async handled rate"),
    )
    nats_p99, ratio = med("nats", "latency p99"), statistics.median(ratios["nats"])
    embedded_ratio = statistics.median(ratios["embedded"])
    met = {True: "met", False: "missed"}
    print("  ratios and targets:")
    for label, value, note in (
        (
            "NATS handled Event / RequestResponse",
            f"{ratio:.2f}",
            f"target >= 0.5 ({met[ratio >= 0.5]}; a file-backed path measured 0.17)",
        ),
        (
            f"NATS 202 p99 at {rate:.0f}/s, ms",
            f"{nats_p99:.1f}",
            f"target <= 10 ({met[nats_p99 <= 10]}); "
            f"{nats_p99 / med('embedded', 'latency p99'):.1f}x the embedded path's",
        ),
        (
            "embedded handled Event / RequestResponse",
            f"{embedded_ratio:.2f}",
            "the reference for 'no slower than today'",
        ),
        ("NATS / embedded, handled Event", f"{nats_rate / embedded_rate:.2f}", ""),
    ):
        print(f"    {label:<42} {value:>6}   {note}")
    for path, values in ratios.items():
        if max(values) > 1.2 * min(values):
            print(
                f"  !! {path}: the rounds disagree ({', '.join(f'{v:.2f}' for v in values)}): "
                "the machine was busy with other work; run again when it is quiet"
            )
    for path in ("nats", "embedded"):
        for r in rounds:
            bad = [f"{k}: {r[path][k]}" for k in ("async failures", "latency failures")
                   if r[path][k] != "none"]  # fmt: skip
            lost = int(float(r[path]["async accepted"]) - float(r[path]["async handled"]))
            lost += int(float(r[path]["latency lost"]))
            if bad or lost:
                print(f"  !! {path}: answers not 202: {'; '.join(bad) or 'none'}; lost: {lost}")
    if split is not None:
        report_split(split, rate)
    for line in dominant(med, split):
        print(f"  {line}")
    summary = {
        "nats_sync_rate": round(med("nats", "sync rate")),
        "nats_event_rate": round(nats_rate),
        "nats_ratio": round(ratio, 2),
        "embedded_sync_rate": round(med("embedded", "sync rate")),
        "embedded_event_rate": round(embedded_rate),
        "embedded_ratio": round(embedded_ratio, 2),
        "latency_rate": round(rate),
        "nats_p99_ms": round(med("nats", "latency p99"), 1),
        "embedded_p99_ms": round(med("embedded", "latency p99"), 1),
    }
    print(json.dumps(summary))


def report_split(split: dict[str, float], rate: float) -> None:
    print(
        f"  NATS path split (its own nats-server, `local --no-dispatch` + `kubelambda "
        f"dispatcher`): RequestResponse {split['sync rate']:,.0f}/s; publish only "
        f"{split['publish rate']:,.0f}/s ({split['publish rate'] / split['sync rate']:.2f}x); "
        f"drain {split['drain rate']:,.0f}/s ({split['drain rate'] / split['sync rate']:.2f}x)"
    )
    print(
        f"    CPU us per event: gateway {split['sync cpu gateway']:.0f} per RequestResponse,"
        f" {split['publish cpu gateway']:.0f} to publish, {split['drain cpu gateway']:.0f} "
        f"while drained; dispatcher {split['drain cpu dispatcher']:.0f}; nats-server "
        f"{split['publish cpu nats-server']:.0f} publish + "
        f"{split['drain cpu nats-server']:.0f} drain; lost {split['lost']:.0f}"
    )
    print(
        f"    202 latency at {rate:.0f}/s with no delivery in the gateway's process: p50 "
        f"{split['alone p50']:.1f} ms, p99 {split['alone p99']:.1f} ms"
    )


def dominant(med: Callable[[str, str], float], split: dict[str, float] | None) -> list[str]:
    """Which step of the NATS path sets its end-to-end rate, as far as the figures tell."""
    accept, handle = med("nats", "async accept seconds"), med("nats", "async handle seconds")
    side = "delivery (consume + invoke)" if handle > 1.5 * accept else "the publish"
    lines = [
        f"dominates: {side}: the events were accepted in {accept:.1f} s and handled in "
        f"{handle:.1f} s from the first 202"
    ]
    gateway, sync = med("nats", "async cpu gateway"), med("nats", "sync cpu gateway")
    bound = 1e6 / gateway
    lines.append(
        f"  local mode's one Python process (gateway and dispatcher, one core) spends "
        f"{gateway:.0f} us of CPU per event, {gateway / sync:.1f}x a RequestResponse's "
        f"{sync:.0f} us: at most {bound:,.0f} events/s; handled: "
        f"{med('nats', 'async handled rate') / bound:.0%} of that"
    )
    if split is not None:
        steps = {
            "publish": split["publish cpu gateway"],
            "consume (dispatcher: fetch, decode, HTTP call, ack)": split["drain cpu dispatcher"],
            "invoke (the gateway serving that call)": split["drain cpu gateway"],
        }
        named = ", ".join(f"{name} {cpu:.0f}" for name, cpu in steps.items())
        largest = max(steps, key=steps.__getitem__)
        verdict = (
            f"largest: {largest}"
            if steps[largest] > 1.25 * min(steps.values())
            else "none dominates, each is about a third"
        )
        lines.append(f"  split, CPU us per event: {named}; {verdict}")
    return lines
