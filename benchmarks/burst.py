"""Benchmark: bursts relative to this machine's capacity, through the gateway, in local mode.

A fixed rate tests the machine's speed more than the gateway's behaviour, so this measures the
warm capacity first and loads at fractions of it:

1. capacity: a function warmed up, then a closed loop (each client sends its next request when
   the last is answered) through its HTTP trigger: the rate the gateway answers when kept busy.
   Then short open loops from that rate down (x0.85 a step) until one has no errors and a p99
   within the closed loop's: the highest rate this machine carries now with bounded latency.
2. warm: an open loop (a fixed schedule; each latency counts from its scheduled time, so no
   coordinated omission) at 80% of that rate against the warm function: the reference p99.
3. from zero: the same rate against another, identical function at zero instances, then the
   same rate again against it, now warm: its own warm p99, with the instances the autoscaler
   chose for this rate. Targets: 0 errors; p99 over the burst's last half (the cold start
   drained) <= 2x that warm p99. It is taken against the function's own: the warm function
   keeps the instances the closed loop's panic gave it (maxReplicas), so against it the ratio
   measures a difference in instance count, not what is left of the cold start (printed too).
   `--bursts` functions in turn (3): one stall of the machine moves a p99 of a few seconds' load
   tenfold, so the target is taken on their median. Each with its timeline (burst_timeline.py):
   instances asked for and ready, requests held, over time. Each starts once every function
   is at zero again (idle IDLE_SECONDS): instances left from the phases before, idle as they
   are, made the same load's p99 tens of times longer on this 2-core machine (a function at
   1,500 req/s beside three idle ones of 10 instances each: p99 44-329 ms over 10-s windows,
   against 3-33 ms once they were gone).
4. overflow: warmed up again as in 1, then 150% of the closed loop's rate (the most the gateway
   answers at all) against the warm function. Targets: every request answered (200 or 503,
   none left without an answer); what cannot be served is answered 503 with Retry-After at
   once (the 503s' p99 latency within 2x the warm p99, not held), and the gateway's memory
   stays bounded (peak RSS of local mode's process, which is the gateway: instances are
   processes of their own). Beside it, a light client in a process of its own
   (burst_probe.py) times the 503s it gets: the load generator is as busy as the gateway on
   the same cores, and its own 503s wait for it too; after each, a GET /healthz on the admin
   port says what any answer of the gateway's process waited for then.
5. after: as soon as the overflow ends, the warm phase's rate again. Target: 0 errors, as in
   2: the gateway takes its load again once an overflow is over (it sheds a lasting overflow
   harder, overload.py, and must stop once it ends).

Each figure is printed with its target and with the step that dominates its slowest answers:
the load generator running late (sending, or reading the answer), connecting (the gateway's
accept queue), held by the gateway for an instance (its Server-Timing), or the rest (the
gateway's own queues and work, and the instance); and with the gateway's own mean time from
parsing a request to answering it (its duration histogram), so what waited outside it shows.

    python benchmarks/burst.py [--seconds 10] [--fraction 0.8] [--overflow 1.5 | --overflow-rate R]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import uvloop

from burst_load import (
    Answers,
    CoreShare,
    PeakRss,
    Saturation,
    closed_loop,
    open_loop,
    request,
)
from burst_report import dominant, inside, print_warm, split, statuses, verdict
from burst_zero import IDLE_SECONDS, from_zero, print_from_zero, wait_at_zero
from loadgen import free_port, percentile, scheduling, wait_http

FUNCTION = """
apiVersion: kubelambda.dev/v1alpha1
kind: Function
metadata: {{name: {name}}}
spec:
  runtime: python3.12
  handler: app.handler
  concurrency: {concurrency}
  scaling: {{maxReplicas: {replicas}, scaleToZeroAfterSeconds: {idle}}}
  code:
    inline:
      files:
        app.py: "def handler(event, context):\\n    return {{'statusCode': 200, 'body': 'ok'}}\\n"
---
apiVersion: kubelambda.dev/v1alpha1
kind: Trigger
metadata: {{name: {name}}}
spec:
  function: {name}
  http: {{path: /{name}}}
"""


def sustained(
    port: int,
    request: bytes,
    saturation: Saturation,
    *,
    run: Callable[[Coroutine[Any, Any, Answers]], Answers] = uvloop.run,
) -> tuple[float, str]:
    """The highest rate, from the closed loop's down by 15% a step, that an open loop carries
    for 3 s with no errors and a p99 within the closed loop's; and what each probe saw.
    ``run`` runs each probe (burst_cluster.py's sends it to the cluster's Service)."""
    rate = saturation.rate
    seen = []
    for _ in range(8):
        probe = run(open_loop(port, request, rate=rate, seconds=3))
        p99 = probe.p(probe.latency, probe.where(), 0.99)
        seen.append(
            f"{rate:.0f}/s p99 {p99:.0f} ms" + (f" {probe.errors} errors" * bool(probe.errors))
        )
        if not probe.errors and p99 <= saturation.p99:
            return rate, ", ".join(seen)
        rate *= 0.85
    return rate, ", ".join(seen) + " (NONE carried: the machine is too loaded to measure)"


# Kernel counters that say where a connection or a request went when no answer came (machine-
# wide, /proc/net/netstat and /proc/net/snmp): a full accept queue drops the handshake's last ACK
# or the SYN (ListenOverflows, ListenDrops: the client retransmits after 1 s, 3 s, 7 s); a socket
# closed with unread data resets its peer (TCPAbortOnData); resets sent and received.
_COUNTERS = {
    "TcpExt": ("ListenOverflows", "ListenDrops", "TCPAbortOnData", "TCPReqQFullDrop",
               "TCPSynRetrans"),
    "Tcp": ("OutRsts", "EstabResets", "AttemptFails"),
}  # fmt: skip


def kernel_counters() -> dict[str, int]:
    """The counters of _COUNTERS now."""
    found: dict[str, int] = {}
    for table in ("/proc/net/netstat", "/proc/net/snmp"):
        lines = Path(table).read_text().splitlines()
        for names, values in zip(lines[::2], lines[1::2], strict=False):
            prefix = names.split(":", 1)[0]
            fields = dict(zip(names.split()[1:], values.split()[1:], strict=True))
            found.update({name: int(fields.get(name, 0)) for name in _COUNTERS.get(prefix, ())})
    return found


def counted(before: dict[str, int], after: dict[str, int]) -> str:
    return ", ".join(f"{name} {after[name] - before[name]}" for name in before)


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


# How often the light client beside the overflow sends its request (seconds).
PROBE_EVERY = 0.02


def probe_line(
    probed: list[tuple[int, float, float]],
    warm_p99: float,
    healthz: list[tuple[int, float, float]] | None = None,
) -> str:
    """What the light client saw during the overflow: its 503s' latency against the warm p99,
    and when in the overflow its slowest came (the onset, before the gateway sheds, or later).
    The load generator's own 503s wait for it too (it is as busy as the gateway, on the same
    cores); the light client's are the gateway's answer and the kernel's queues alone. With
    `healthz` (the same client's GET /healthz on the admin port after each request): what the
    same process took meanwhile to answer its cheapest request, from a listener without the
    overflow's queue."""
    refused = sorted((ms, at) for status, ms, at in probed if status == 503)
    counts = ", ".join(
        f"{status or 'no answer'}: {sum(1 for s, _, _ in probed if s == status)}"
        for status in sorted({s for s, _, _ in probed})
    )
    if not refused:
        return f"a light client meanwhile (burst_probe.py): {counts}; no 503 to time"
    latencies = [ms for ms, _ in refused]
    p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
    slowest = ", ".join(f"{ms:.0f} ms at {at:.1f} s" for ms, at in refused[-5:][::-1])
    return (
        f"a light client meanwhile (burst_probe.py, its own process, a request every "
        f"{PROBE_EVERY * 1000:.0f} ms on a new connection): {counts}; its 503s p50 {p50:.1f} "
        f"ms, p99 {p99:.1f} ms = {p99 / warm_p99:.1f}x warm p99 (target at once, <= 2x: "
        f"{verdict(p99 <= 2 * warm_p99)}); its slowest five 503s, from the overflow's start: "
        f"{slowest}" + _healthz_part(healthz or [], p50, p99)
    )


def _healthz_part(healthz: list[tuple[int, float, float]], p50: float, p99: float) -> str:
    answered = [ms for status, ms, _ in healthz if status == 200]
    if not answered:
        return ""
    h50, h99 = percentile(answered, 0.5), percentile(answered, 0.99)
    return (
        f"; the same process's /healthz on its admin port meanwhile ({len(answered)} of "
        f"{len(healthz)} answered 200): p50 {h50:.1f} ms, p99 {h99:.1f} ms, so the 503s waited "
        f"{p50 - h50:+.1f} ms at p50 and {p99 - h99:+.1f} ms at p99 beyond what any answer of "
        "that process waited then (the overflow's accept queue; the rest is its share of the "
        "machine)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10, help="each open-loop phase")
    parser.add_argument("--fraction", type=float, default=0.8, help="of capacity, for bursts")
    parser.add_argument(
        "--overflow", type=float, default=1.5, help="of the closed loop's rate, for overflow"
    )
    parser.add_argument(
        "--overflow-rate",
        type=float,
        default=0,
        help="overflow at this rate (req/s) instead: to compare two gateways at the same load",
    )
    parser.add_argument("--concurrency", type=int, default=1, help="the function's concurrency")
    parser.add_argument("--replicas", type=int, default=10, help="the function's maxReplicas")
    parser.add_argument("--clients", type=int, default=0, help="closed loop (default 2x slots)")
    parser.add_argument("--bursts", type=int, default=3, help="functions burst from zero in turn")
    args = parser.parse_args()
    slots = args.concurrency * args.replicas
    clients = args.clients or max(16, 2 * slots)
    work = Path(tempfile.mkdtemp(prefix="kubelambda-bench-"))
    bursts = [f"burst-{n}" for n in range(1, args.bursts + 1)]
    manifest = work / "burst.yaml"
    manifest.write_text(
        "---".join(
            FUNCTION.format(
                name=name, concurrency=args.concurrency, replicas=args.replicas, idle=IDLE_SECONDS
            )
            for name in ("warm", *bursts)
        )
    )
    port, admin = free_port(), free_port()
    log = work / "local.log"  # a file, not a pipe: thousands of invocations/s of log lines
    with log.open("wb") as out:
        local = subprocess.Popen(
            [sys.executable, "-m", "kubelambda.cli", "local", str(manifest), "--port", str(port),
             "--admin-port", str(admin)],
            stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,  # a scheduling group of its own: loadgen.scheduling()
        )  # fmt: skip
    warm_request = request("warm", port)
    load_before = load()
    try:
        wait_http(f"http://127.0.0.1:{admin}/healthz", process=local)
        # Warm up (the autoscaler panics to maxReplicas), then measure.
        uvloop.run(closed_loop(port, warm_request, connections=clients, seconds=4))
        with CoreShare(local.pid) as saturated_cpu:
            saturation: Saturation = uvloop.run(
                closed_loop(port, warm_request, connections=clients, seconds=5)
            )
        capacity, probes = sustained(port, warm_request, saturation)
        rate = args.fraction * capacity
        marks = [inside(admin, "warm")]
        warm = uvloop.run(open_loop(port, warm_request, rate=rate, seconds=args.seconds))
        marks.append(inside(admin, "warm"))
        zeros = []
        for name in bursts:
            # Alone on the machine: the instances of the phases before it gone.
            wait_at_zero(admin, ["warm", *bursts])
            zeros.append(
                from_zero(
                    name, port=port, admin=admin, pid=local.pid, log=log, rate=rate,
                    seconds=args.seconds,
                )
            )  # fmt: skip
        over_rate = args.overflow_rate or args.overflow * saturation.rate
        wait_at_zero(admin, ["warm", *bursts])
        uvloop.run(closed_loop(port, warm_request, connections=clients, seconds=4))
        counters = kernel_counters()
        # A light client in a process of its own beside the overflow (burst_probe.py).
        probe = subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__).with_name("burst_probe.py")),
                str(port),
                warm_request.hex(),
                str(args.seconds - 1),
                str(PROBE_EVERY),
                str(admin),
            ],
            stdout=subprocess.PIPE,
            start_new_session=True,  # nor does it share the load generator's CPU share
        )
        with PeakRss(local.pid) as over_rss, CoreShare(local.pid) as over_cpu:
            over = uvloop.run(open_loop(port, warm_request, rate=over_rate, seconds=args.seconds))
        probed: dict[str, list[tuple[int, float, float]]] = json.loads(
            probe.communicate(timeout=60)[0]
        )
        counters_after = kernel_counters()
        dropped = counters_after["ListenOverflows"] - counters["ListenOverflows"]
        marks.append(inside(admin, "warm"))
        after = uvloop.run(open_loop(port, warm_request, rate=rate, seconds=args.seconds))
    finally:
        local.terminate()
        local.wait(30)
    print(
        f"burst: through an HTTP trigger in local mode, function concurrency {args.concurrency}, "
        f"maxReplicas {args.replicas}; {args.seconds:.0f} s per open-loop phase; load average "
        f"{load_before} before, {load()} after"
    )
    print(f"  processes: {scheduling()}")
    errors = sum(n for status, n in saturation.statuses.items() if status >= 400)
    print(
        f"  capacity   closed loop, {clients} clients: {saturation.rate:.0f} answers/s, p99 "
        f"{saturation.p99:.1f} ms, errors {errors} (statuses {dict(saturation.statuses)}); the "
        f"gateway's process ran {saturated_cpu.share:.0%} of a core"
    )
    print(f"             open-loop probes: {probes}; capacity taken: {capacity:.0f} req/s")
    warm_p99 = print_warm(warm, fraction=args.fraction, rate=rate)
    print(f"             {split(warm, marks[0], marks[1])}")

    ratios = [z.late_p99(args.seconds) / z.warm_p99() for z in zeros]
    median = statistics.median(ratios)
    errors = sum(z.cold.errors for z in zeros)
    print(
        f"  from zero  {len(zeros)} functions in turn, each an open loop at {rate:.0f} req/s from "
        f"zero instances, then as long again warm: errors {errors} (target 0: "
        f"{verdict(errors == 0)}); last half's p99 over its own warm p99, median "
        f"{median:.1f}x (target <= 2x: {verdict(median <= 2)})"
    )
    for zero, ratio in zip(zeros, ratios, strict=True):
        print_from_zero(zero, ratio, warm_p99=warm_p99, seconds=args.seconds)

    refused = over.where(status=503)
    served = over.where(status=200)
    # What the gateway could not have served at its closed-loop rate: at least this many 503s.
    excess = max(over.sent - saturation.rate * args.seconds, 0)
    with_retry = sum(1 for i in refused if over.retry_after[i])
    refused_p99 = over.p(over.latency, refused, 0.99)
    print(
        f"  overflow   open loop at {over_rate / saturation.rate:.0%} of the closed loop = "
        f"{over_rate:.0f} req/s: {statuses(over)};"
        f" {over.connections} connections opened, {over.early} answered as they opened, "
        f"{over.retried} requests sent again (the gateway had closed the idle connection)"
    )
    print(
        f"             every request answered, 200 or 503: no answer {over.unanswered} (target "
        f"0: {verdict(over.unanswered == 0)}); accept queues overflowed {dropped} times "
        f"(machine-wide: other listeners count too)"
    )
    print(f"             kernel, machine-wide: {counted(counters, counters_after)}")
    print(
        f"             503s: {len(refused)} of {over.sent} sent ({excess:.0f} over the closed "
        f"loop's rate), {with_retry} with Retry-After (target all: "
        f"{verdict(with_retry == len(refused))}); latency p50 "
        f"{over.p(over.latency, refused, 0.5):.1f} ms, p99 {refused_p99:.1f} ms = "
        f"{refused_p99 / warm_p99:.1f}x warm p99 (target at once, <= 2x: "
        # No 503 at all is a miss too: the rate is over capacity, so the excess was held.
        f"{verdict(bool(refused) and refused_p99 <= 2 * warm_p99)}); dominated by "
        f"{dominant(over, refused)}"
    )
    print(f"             {probe_line(probed['requests'], warm_p99, probed['healthz'])}")
    print(
        f"             the gateway's process ran {over_cpu.share:.0%} of a core "
        f"({saturated_cpu.share:.0%} at the closed loop's capacity): less is a gateway the "
        "machine starves of CPU, whose queues grow however it refuses"
    )
    print(
        f"             200s: {len(served)} ({len(served) / over.seconds:.0f}/s), p99 "
        f"{over.p(over.latency, served, 0.99):.1f} ms, dominated by {dominant(over, served)}"
    )
    print(f"             {split(over, marks[1], marks[2])}")
    growth = over_rss.peak_kib / max(over_rss.first_kib, 1)
    print(
        f"             gateway peak RSS {over_rss.peak_kib / 1024:.0f} MiB (from "
        f"{over_rss.first_kib / 1024:.0f} MiB, x{growth:.2f}; target bounded, <= x1.5: "
        f"{verdict(growth <= 1.5)})"
    )
    after_p99 = print_warm(after, fraction=args.fraction, rate=rate, label="after")
    print(
        f"             once the overflow ended: errors {after.errors} (target 0: "
        f"{verdict(after.errors == 0)}); p99 {after_p99 / warm_p99:.1f}x the warm phase's"
    )
    print(
        json.dumps(
            {
                "capacity_rps": round(capacity),
                "errors_from_zero": errors,
                "late_p99_over_its_warm_p99": [round(r, 2) for r in ratios],
                "late_p99_over_warm_function_p99": [
                    round(z.late_p99(args.seconds) / warm_p99, 2) for z in zeros
                ],
                "overflow_503": len(refused),
                "overflow_sent": over.sent,
                "overflow_unanswered": over.unanswered,
                "overflow_answered_at_accept": over.early,
                "overflow_sent_again": over.retried,
                "overflow_listen_overflows": dropped,
                "overflow_503_p50_ms": (
                    round(over.p(over.latency, refused, 0.5), 1) if refused else None
                ),
                "overflow_503_without_retry_after": len(refused) - with_retry,
                "overflow_503_p99_ms": round(refused_p99, 1) if refused else None,
                "overflow_peak_rss_mib": round(over_rss.peak_kib / 1024),
                "after_overflow_errors": after.errors,
                "load_average_before": load_before,
            }
        )
    )


if __name__ == "__main__":
    main()
