"""Benchmark: asynchronous (Event) invocations through `kubelambda local --nats` (a real
nats-server, file-backed JetStream), against RequestResponse invocations of the same function.

One trivial function (it creates an empty file named by its request id, which is how events
are counted as handled), at --concurrency slots in each of --replicas instances, fixed
(minReplicas = maxReplicas): as many slots as client connections, so no request waits for a
slot (the runtimes' CPU is printed too: on 2 cores they share the machine with the rest).
--connections client connections, closed loop, from this process (uvloop + httptools; the same
client for every phase, so its own cost cancels out of the ratios). In one run, each round:

1. RequestResponse capacity through local mode with --nats: answers/s for --seconds.
2. Event invocations, as many as (1) answered in --seconds: accepted (202) per second, and
   handled end to end per second, from the first 202 to the last handled event (the
   handler's files' mtimes). Target: handled / (1) >= 0.5.
3. 202 latency, open loop at min(500/s, 0.5 x the 202 rate of (2)) for --latency-seconds.
4. (1)-(3) again through local mode without --nats (events in memory, delivered in-process:
   the embedded path), the reference for the 202 latency and for "no slower than today".

CPU time per event of each process (gateway, runtimes, nats-server) says which one works
hardest. Then, unless --no-breakdown, a third local mode with --nats --no-dispatch on a
nats-server of its own splits the NATS path: Event invocations published only (the gateway
alone), then drained by a separate `kubelambda dispatcher` (consume + invoke). Answers other
than 202 (200 for RequestResponse) are counted and printed; a phase with none stops the run.
The default run takes 2 to 2.5 minutes; --seconds 3 --latency-seconds 3 --rounds 1
--no-breakdown about 40 s.

    python benchmarks/async_events.py [--seconds 6] [--latency-seconds 6] [--rounds 2]
        [--connections 16] [--concurrency 8] [--replicas 2] [--no-breakdown]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from async_events_phases import async_throughput, breakdown, latency, sync_capacity
from async_events_procs import Local, local_mode
from async_events_report import ISSUE_RATE, report
from harness.nats import nats_server


def one_round(
    nats: Local, embedded: Local, args: argparse.Namespace, index: int
) -> dict[str, dict[str, float | str]]:
    results: dict[str, dict[str, float | str]] = {}
    for local in (nats, embedded):
        sync = sync_capacity(
            local, connections=args.connections, seconds=args.seconds, tag=f"sync{index}"
        )
        events = async_throughput(
            local,
            connections=args.connections,
            count=int(sync["rate"] * args.seconds),
            tag=f"async{index}",
        )
        results[local.name] = {
            **{f"sync {k}": v for k, v in sync.items()},
            **{f"async {k}": v for k, v in events.items()},
        }
    # The issue's rate, unless this machine cannot accept twice that through the NATS path.
    capacity = float(results["nats"]["async accept rate"])
    rate = min(ISSUE_RATE, 0.5 * capacity)
    for local in (nats, embedded):
        found = latency(local, rate=rate, seconds=args.latency_seconds, tag=f"latency{index}")
        results[local.name].update({f"latency {k}": v for k, v in found.items()})
        results[local.name]["latency rate"] = rate
    print(
        f"round {index + 1}: "
        + " | ".join(
            f"{path}: RequestResponse {float(r['sync rate']):,.0f}/s, Event accepted "
            f"{float(r['async accept rate']):,.0f}/s, handled {float(r['async handled rate']):,.0f}"
            f"/s ({float(r['async handled rate']) / float(r['sync rate']):.2f}), 202 p99 at "
            f"{rate:.0f}/s {float(r['latency p99']):.1f} ms"
            for path, r in results.items()
        ),
        flush=True,
    )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=6.0, help="per closed-loop phase")
    parser.add_argument("--latency-seconds", type=float, default=6.0, help="per open-loop phase")
    parser.add_argument("--rounds", type=int, default=2, help="paths alternate in each round")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=8, help="the function's slots")
    parser.add_argument("--replicas", type=int, default=2, help="the function's instances")
    parser.add_argument("--no-breakdown", action="store_true", help="skip the split NATS path")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kubelambda-bench-"))
    try:
        run(args, work)
    except BaseException:
        print(f"logs (local mode, nats-server, dispatcher) are kept in {work}")
        raise
    shutil.rmtree(work, ignore_errors=True)  # tens of thousands of files, two JetStream stores


def run(args: argparse.Namespace, work: Path) -> None:
    started, load = time.monotonic(), os.getloadavg()[0]
    with ExitStack() as stack:
        broker = stack.enter_context(
            nats_server(store_dir=work / "jetstream", log_dir=work, name="bench")
        )
        shape = {"replicas": args.replicas, "concurrency": args.concurrency}
        nats = stack.enter_context(local_mode(work, "nats", "--nats", broker.url, **shape))
        nats.nats = broker
        embedded = stack.enter_context(local_mode(work, "embedded", **shape))
        for local in (nats, embedded):  # warm both paths before anything is timed
            sync_capacity(local, connections=args.connections, seconds=1, tag="warm")
        rounds = [one_round(nats, embedded, args, index) for index in range(args.rounds)]
    split = None
    if not args.no_breakdown:
        count = int(statistics.median(float(r["nats"]["sync rate"]) for r in rounds) * args.seconds)
        split = breakdown(
            work,
            connections=args.connections,
            count=count,
            seconds=args.seconds,
            rate=statistics.median(float(r["nats"]["latency rate"]) for r in rounds),
            latency_seconds=args.latency_seconds,
            **shape,
        )
    print(
        f"\nmachine: load average {load:.1f} before, {os.getloadavg()[0]:.1f} after (2 cores: "
        "other work on them lowers RequestResponse capacity, which needs both, more than the "
        "NATS path, which one process bounds, so it inflates the NATS ratio)"
    )
    report(args, rounds, split, elapsed=time.monotonic() - started)


if __name__ == "__main__":
    main()
