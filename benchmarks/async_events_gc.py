"""Benchmark: the 202's tail on the JetStream path with the start-up heap frozen (commands/heap.py)
and not (KUBELAMBDA_GC_FREEZE=0), in one run on one nats-server, so both see the same machine.

Two `kubelambda local --nats URL --no-dispatch` processes (publish only: nothing but the 202's
path in them), each first given --fill Event invocations in a closed loop (the heap grows as the
benchmark's own phases grow it), then open-loop windows of Event invocations at --rate, the two
alternating window by window (A B A B ...), so load from other work on the machine falls on
both. Each process runs under a watcher that times every garbage collection (wall and CPU time)
with gc.callbacks and writes them at exit: the CPU time of its full (generation 2) collections is
a figure that other processes' load barely moves, and how many of them fell in the windows says
whether they can be what the p99s differ by.

    python benchmarks/async_events_gc.py [--rate 500] [--seconds 6] [--windows 4] [--fill 6000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import uvloop

from async_events_load import closed_loop, invoke_request, refused
from async_events_procs import Local, local_mode
from harness.nats import nats_server
from loadgen import open_loop, percentile

# Run in each gateway's interpreter before the CLI: times each collection, writes them at exit.
WATCH = """
import atexit, gc, json, os, runpy, sys, time
pauses, started = [], [0.0, 0.0]
def timed(phase, info):
    if phase == "start":
        started[:] = [time.perf_counter(), time.thread_time()]
    else:
        pauses.append((info["generation"], (time.perf_counter() - started[0]) * 1e3,
                       (time.thread_time() - started[1]) * 1e3, started[0]))
gc.callbacks.append(timed)
def write():
    with open(os.environ["GC_PAUSES"], "w") as out:
        json.dump({"pauses": pauses, "frozen": gc.get_freeze_count()}, out)
atexit.register(write)
sys.argv = ["kubelambda", *sys.argv[1:]]
runpy.run_module("kubelambda.cli", run_name="__main__", alter_sys=True)
"""

VARIANTS = {"frozen": {}, "unfrozen": {"KUBELAMBDA_GC_FREEZE": "0"}}


def window(local: Local, *, rate: float, seconds: float, tag: str) -> dict[str, float]:
    request = invoke_request(local.port, tag=tag, event=True)
    load = os.getloadavg()[0]
    # perf_counter is CLOCK_MONOTONIC, as in the watcher: its pauses are placed in the windows.
    start = time.perf_counter()
    run = uvloop.run(open_loop(local.port, request, rate=rate, seconds=seconds))
    end = time.perf_counter()
    if run.statuses[202] != run.sent:
        print(f"  !! {local.name}: {run.statuses[202]} of {run.sent} answered 202: {run.statuses}")
    return {
        "p50": percentile(run.latencies, 0.5),
        "p99": percentile(run.latencies, 0.99),
        "max": max(run.latencies),
        "load": load,
        "start": start,
        "end": end,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=500.0, help="Event invocations per second")
    parser.add_argument("--seconds", type=float, default=6.0, help="per open-loop window")
    parser.add_argument("--windows", type=int, default=4, help="windows per variant")
    parser.add_argument("--fill", type=int, default=6000, help="closed-loop events first")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kubelambda-bench-gc-"))
    try:
        run(args, work)
    except BaseException:
        print(f"logs (local mode, nats-server) are kept in {work}")
        raise
    shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, work: Path) -> None:
    results: dict[str, list[dict[str, float]]] = {name: [] for name in VARIANTS}
    with ExitStack() as stack:
        broker = stack.enter_context(
            nats_server(store_dir=work / "jetstream", log_dir=work, name="bench-gc")
        )
        options = ("--nats", broker.url, "--no-dispatch", "--no-console")
        locals_ = {
            name: stack.enter_context(
                local_mode(
                    work,
                    name,
                    *options,
                    replicas=1,
                    concurrency=2,
                    python=("-c", WATCH),
                    env={**env, "GC_PAUSES": str(work / f"{name}.gc.json")},
                )
            )
            for name, env in VARIANTS.items()
        }
        for name, local in locals_.items():
            (local.handled / "events").mkdir()
            filled = uvloop.run(
                closed_loop(
                    local.port,
                    invoke_request(local.port, tag="events", event=True),
                    expected=202,
                    connections=16,
                    count=args.fill,
                )
            )
            refused(filled, f"{name} fill")
        for index in range(args.windows):
            # Alternating which goes first, so neither always follows the other's load.
            order = list(locals_.items()) if index % 2 == 0 else list(locals_.items())[::-1]
            for name, local in order:
                found = window(local, rate=args.rate, seconds=args.seconds, tag="events")
                results[name].append(found)
                print(
                    f"window {index + 1} {name:>8}: 202 p50 {found['p50']:.1f} ms, p99 "
                    f"{found['p99']:.1f} ms, max {found['max']:.0f} ms (load {found['load']:.1f})",
                    flush=True,
                )
    report(args, results, work)


def report(
    args: argparse.Namespace, results: dict[str, list[dict[str, float]]], work: Path
) -> None:
    print(
        f"\n202 latency at {args.rate:.0f} events/s, publish only, {args.windows} windows of "
        f"{args.seconds:g} s per variant (alternating); garbage collections over the whole run"
    )
    for name, windows in results.items():
        p99s = [w["p99"] for w in windows]
        gc_file = json.loads((work / f"{name}.gc.json").read_text())
        full = [p for p in gc_file["pauses"] if p[0] == 2]
        young = [p for p in gc_file["pauses"] if p[0] < 2]
        inside = [p for p in full if any(w["start"] <= p[3] <= w["end"] for w in windows)]
        full_cpu = [p[2] for p in full]
        print(
            f"  {name:>8}: p99 median {statistics.median(p99s):.1f} ms (windows "
            f"{', '.join(f'{x:.1f}' for x in p99s)}), p50 median "
            f"{statistics.median(w['p50'] for w in windows):.1f} ms | frozen objects "
            f"{gc_file['frozen']:,} | full collections {len(full)}, CPU ms each: max "
            f"{max(full_cpu, default=0):.1f}, median {statistics.median(full_cpu or [0]):.1f}, "
            f"{len(inside)} in the windows | "
            f"young ones {len(young)}, CPU ms max {max((p[2] for p in young), default=0):.1f}"
        )
    print(
        "  (the first full collection of each is start-up's own; frozen, the one at freezing"
        " is the last that walks start-up's objects)"
    )


if __name__ == "__main__":
    main()
