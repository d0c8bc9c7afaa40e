"""Benchmark: a soak of `kubelambda local --nats` (a real nats-server, file-backed JetStream):
mixed load in cycles that scale every function to zero and back, watching every process of the
tree for growth in memory, descriptors, connections and processes, and what is left at exit.

It serves four functions (soak_load.py): `web` behind an HTTP Trigger, `api` through the Invoke
API (RequestResponse), `events` taking Event invocations (published to JetStream, delivered by
local mode's dispatcher; each handled event leaves a file, so lost ones are counted), and `tick`
on a schedule (rate(1 minute)), each scaled to zero after --zero-after seconds without requests.

1. capacity: the HTTP Trigger in a closed loop (8 connections, --probe-seconds, after 2 s of
   warm-up): the rate this machine answers now; the load is --fraction of it.
2. cycles until --minutes have passed (at least 3): load (an open loop of each kind, a third of
   the rate each, for --load-seconds), drain (until every accepted event is handled), idle
   (until local mode says 0 instances of every function), zero (--hold-seconds there; samples
   while a tick of the schedule runs an instance are left out of its medians).
   Cycle 0 is the warm-up; cycle 1 is compared with the last.

A thread samples every process (soak_procs.py) every --interval s: local mode (the gateway,
dispatcher, scheduler and autoscaler in one process: the long-lived one that matters), the
runtime's zygote, each instance's runtime and its execution environments, and the nats-server
as a reference: resident memory, open descriptors, children, TCP connections (and those in
CLOSE_WAIT). Targets: RSS of local mode at the same phase, last cycle / cycle 1, within
0.90-1.10; descriptors and connections at zero not more than in cycle 1; after each zero no
process of the scaled-down instances left (anywhere: orphans count); after local mode exits, no
process of its tree and nothing in its temporary folder (its TMPDIR, a folder of the run's).

    python benchmarks/soak.py [--minutes 60] [--fraction 0.3] [--load-seconds 15]
        [--zero-after 5] [--hold-seconds 4] [--interval 2]
        [--heap [--heap-frames 6] [--spike CYCLE[:N],... [--spike-kind closed|open]]]

--minutes 3 is a short check (about 5 cycles); a cycle takes about 30 s. RSS ratios of the
instances' keys are per process (their counts follow the load). --heap: where local mode's
memory goes, cycle by cycle, and what a burst of load (--spike) does to it (soak_heap.py).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import uvloop

from async_events_load import closed_loop, refused, wait_handled
from async_events_procs import Local, cpu_seconds, local_mode
from harness.nats import nats_server
from soak_heap import HeapProbe, add_arguments, heap_probe, with_spike
from soak_heap import report as heap_report
from soak_load import FUNCTIONS, LOADED, ScaleLog, manifests, mixed_load, requests
from soak_procs import Sampler, entries, folder_bytes, median_totals
from soak_report import Cycle, Ending, cycle_line, report

GONE_SECONDS = 15.0  # after local mode says 0: a runtime's stop grace (timeout 3 s) and more


def probe(local: Local, *, seconds: float) -> float:
    """Requests/s the HTTP Trigger answers in a closed loop, warm (after a 2 s closed loop)."""
    request = requests(local.port, "probe")["http"]
    for length in (2.0, seconds):
        run = uvloop.run(
            closed_loop(local.port, request, expected=200, connections=8, seconds=length)
        )
        refused(run, "capacity probe")
    return run.ok / max(run.ended - run.started, 1e-3)


def cpu(local: Local, sampler: Sampler) -> dict[str, float]:
    """CPU seconds so far of the long-lived processes (instances' end with them)."""
    latest = sampler.samples[-1].procs
    zygote = [p.pid for p in latest if p.role == "zygote"]
    return {
        "local mode": cpu_seconds([local.process.pid]),
        "zygote": cpu_seconds(zygote),
        "nats-server": local.cpu()["nats-server"],
    }


def wait_zero(sampler: Sampler, log: ScaleLog, *, within: float) -> tuple[float | None, float]:
    """Seconds until local mode says 0 instances of every function (None: not within `within`;
    the schedule's too, so a tick's instance does not count in one cycle's hold and not in
    another's), and then until no process of the loaded ones is left (at most GONE_SECONDS)."""
    began = time.monotonic()
    while not log.at_zero(FUNCTIONS):
        if time.monotonic() - began > within:
            return None, 0.0
        time.sleep(0.25)
    said = time.monotonic()
    while time.monotonic() - said < GONE_SECONDS:
        inside = [p for p in sampler.sample().procs if p.function in LOADED]
        if not inside and not sampler.left(LOADED):
            break
        time.sleep(1.0)
    return said - began, time.monotonic() - said


def one_cycle(
    index: int, local: Local, sampler: Sampler, log: ScaleLog, args: argparse.Namespace, *,
    rate: float, tmp: Path, store: Path, heap: HeapProbe | None,
) -> Cycle:  # fmt: skip
    if local.process.poll() is not None:
        raise SystemExit(f"local mode exited with {local.process.returncode}; see {local.log}")
    began = time.monotonic()
    tag = f"c{index}"
    folder = local.handled / tag
    folder.mkdir()
    cpu_before = cpu(local, sampler)
    sampler.enter(index, "load")
    mixed = mixed_load(local.port, tag=tag, rate=rate, seconds=args.load_seconds)
    if heap is None:
        load = uvloop.run(mixed)
    else:  # --heap: with a burst of connections in the cycles --spike names
        burst = heap.spike(local.port, index, requests(local.port, f"spike{index}")["http"])
        load, spiked = uvloop.run(with_spike(mixed, burst))
        if spiked:
            print(f"  {spiked}", flush=True)
    sampler.enter(index, "drain")
    handled, _ = wait_handled(folder, load.accepted())
    shutil.rmtree(folder, ignore_errors=True)
    sampler.enter(index, "idle")
    to_zero, gone = wait_zero(sampler, log, within=args.zero_after + 60)
    sampler.enter(index, "zero")
    time.sleep(args.hold_seconds)  # the sampler thread samples the hold
    at_zero = sampler.sample()
    # Processes of the scaled-down functions' instances: in the tree, or anywhere (orphans).
    left = {pid: f"{role} {fn}" for pid, role, fn in sampler.left(LOADED)}
    left.update({p.pid: p.key for p in at_zero.procs if p.function in LOADED})
    cpu_after = cpu(local, sampler)
    if heap is not None:
        sampled = median_totals(sampler.window(index, "zero")).get("local mode", {})
        heap.at_zero(
            index, p99=load.p99("http"), failed=sum(load.failures().values()),
            sampled_rss=sampled.get("rss", 0.0),
        )  # fmt: skip
    # A tick may fire during the hold: its instance's connection and pipes are not a leak.
    hold = sampler.window(index, "zero")
    quiet = [s for s in hold if not any(p.function == "tick" for p in s.procs)] or hold
    return Cycle(
        index=index,
        load=load,
        handled=handled,
        to_zero=to_zero,
        gone=gone,
        left=sorted(left.items()),
        cpu={k: cpu_after[k] - cpu_before[k] for k in cpu_after},
        at_zero=median_totals(quiet),
        at_load=median_totals(sampler.window(index, "load", after=args.load_seconds / 2)),
        tmp_entries=len(entries(tmp)),
        tmp_bytes=folder_bytes(tmp),
        store_bytes=folder_bytes(store),
        seconds=time.monotonic() - began,
    )


def run(args: argparse.Namespace, work: Path) -> None:
    started, load_average = time.monotonic(), os.getloadavg()[0]
    tmp = work / "tmp"  # local mode's TMPDIR: what it leaves there is its own
    tmp.mkdir()
    cycles: list[Cycle] = []
    heap = heap_probe(args, work)
    with nats_server(store_dir=work / "jetstream", log_dir=work, name="soak") as broker:
        if broker.process is None:
            raise SystemExit(f"nats-server did not start; see {work}")
        with local_mode(
            work, "local", "--nats", broker.url, replicas=0, concurrency=4,
            manifests=manifests(args.zero_after),
            env={"TMPDIR": str(tmp), **(heap.env() if heap else {})},
            **({"python": heap.python()} if heap else {}),
        ) as local:  # fmt: skip
            local.nats = broker
            if heap is not None:
                heap.start()
            (local.handled / "ticks").mkdir()
            log = ScaleLog(local.log or work / "local" / "local.log")
            sampler = Sampler(
                local=local.process.pid,
                nats=broker.process.popen.pid,
                functions=FUNCTIONS,
                interval=args.interval,
            )
            sampler.start()
            try:
                capacity = probe(local, seconds=args.probe_seconds)
                rate = args.fraction * capacity
                print(
                    f"capacity {capacity:,.0f} requests/s (HTTP Trigger, closed loop); load "
                    f"{rate:,.0f}/s, a third each through the HTTP Trigger, the Invoke API and "
                    "Event invocations",
                    flush=True,
                )
                deadline = started + 60 * args.minutes
                while len(cycles) < 3 or time.monotonic() + cycles[-1].seconds < deadline:
                    cycle = one_cycle(
                        len(cycles), local, sampler, log, args, rate=rate, tmp=tmp,
                        store=work / "jetstream", heap=heap,
                    )  # fmt: skip
                    cycles.append(cycle)
                    print(cycle_line(cycle), flush=True)
                if heap is not None:
                    heap.end()
            finally:
                sampler.stop()
            log.read()
            stopping = time.monotonic()
        stopped = time.monotonic() - stopping
        code = local.process.returncode
        # What local mode's end ends may take a moment more (the zygote's runtimes' grace).
        deadline = time.monotonic() + 10
        while (survivors := sampler.survivors()) and time.monotonic() < deadline:
            time.sleep(0.25)
        ending = Ending(
            stop_seconds=stopped,
            exit_code=code,
            survivors=[(pid, f"{role} {fn}".strip()) for pid, role, fn in survivors],
            tmp_left=entries(tmp),
            ticks=len(os.listdir(local.handled / "ticks")),
        )
    report(
        args,
        cycles,
        capacity=capacity,
        rate=rate,
        ending=ending,
        log=log,
        sampling_seconds=sampler.seconds,
        elapsed=time.monotonic() - started,
        load_average=(load_average, os.getloadavg()[0]),
    )
    if heap is not None:
        heap_report(heap, [c.seconds for c in cycles])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=60.0, help="how long to soak")
    parser.add_argument("--fraction", type=float, default=0.3, help="load, of the capacity")
    parser.add_argument("--load-seconds", type=float, default=15.0, help="per cycle")
    parser.add_argument(
        "--zero-after", type=int, default=5, help="the functions' scaleToZeroAfterSeconds"
    )
    parser.add_argument("--hold-seconds", type=float, default=4.0, help="at zero, per cycle")
    parser.add_argument("--interval", type=float, default=2.0, help="between samples, s")
    parser.add_argument("--probe-seconds", type=float, default=3.0, help="capacity probe")
    add_arguments(parser)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kubelambda-soak-"))
    try:
        run(args, work)
    except BaseException:
        print(f"logs (local mode, nats-server) are kept in {work}")
        raise
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
