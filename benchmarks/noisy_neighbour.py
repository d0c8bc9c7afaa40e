"""Benchmark: one function flooded far beyond its reservedConcurrency, another's p99, in local mode.

Lambda's reserved concurrency isolates functions: a flooded one is throttled (429) at once
instead of taking the machine. This measures that through one local-mode gateway:

1. quiet: an open loop (a fixed schedule; latency counts from the scheduled time) at a modest
   rate against function `quiet` alone (warm: pods for twice its steady concurrency): its
   reference p99.
2. noisy: the same open loop while a second process floods function `flood`
   (reservedConcurrency --reserved, warm, each invocation --work s) at --flood-rate, an open
   loop several times what the reservation can run (reserved / work a second). Target:
   quiet's p99 <= 2x its quiet p99; the flood answered 429 beyond the reservation.
3. (--flooders N) the flood as a closed loop of N clients instead, each sending its next
   request as soon as the last is answered: as fast as the gateway answers 429s, so it
   saturates the gateway's own CPU, which no per-function limit can shield (the gateway's
   overload protection is the answer there).
4. (--control) the same open-loop flood at a path no Trigger serves (404, the cheapest answer
   the gateway gives): what merely handling that many requests costs quiet on this machine,
   whatever the function limits do. Near the flood's ratio: the limits add nothing to it.
5. (--unlimited) the same flood against `unlimited`, identical but with no reservation, as
   the gateway answered before reserved concurrency: held, and scaled out to maxReplicas.

Phases 1, 2 (and 4) repeat --rounds times, each round's ratio against its own quiet p99 (the
machine's load drifts); the median and the spread are printed. Ratios, not absolute times:
the machine is shared. Each p99 is printed with the step that
dominated its slowest answers (burst.py's split: the load generator, connecting, held by the
gateway, or the gateway's work and the instance).

    python benchmarks/noisy_neighbour.py [--rounds 3] [--seconds 8] [--rate 40]
        [--reserved 2] [--flood-rate 400] [--control] [--flooders 64] [--unlimited]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import uvloop

from burst import load
from burst_load import Answers, closed_loop, open_loop
from burst_report import dominant, statuses, verdict
from loadgen import free_port, wait_http

FUNCTION = """
apiVersion: kubelambda.dev/v1alpha1
kind: Function
metadata: {{name: {name}}}
spec:
  runtime: python3.12
  handler: app.handler
  {limits}
  scaling: {{minReplicas: {warm}, maxReplicas: {most}, scaleToZeroAfterSeconds: 600}}
  code:
    inline:
      files:
        app.py: |
          import time
          def handler(event, context):
              time.sleep({work})
              return {{"statusCode": 200, "body": "ok"}}
---
apiVersion: kubelambda.dev/v1alpha1
kind: Trigger
metadata: {{name: {name}}}
spec:
  function: {name}
  http: {{path: /{name}}}
"""


def request(name: str, port: int) -> bytes:
    return f"GET /{name} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n\r\n".encode()


def flood(port: int, name: str, how: str, amount: float, seconds: float) -> None:
    """Run in a child process: the flood (an open loop at `amount` req/s, or a closed loop of
    `amount` clients), its statuses printed as JSON."""
    target = request(name, port)
    if how == "open":
        statuses = uvloop.run(open_loop(port, target, rate=amount, seconds=seconds)).statuses
    else:
        run = uvloop.run(closed_loop(port, target, connections=int(amount), seconds=seconds))
        statuses = run.statuses
    print(json.dumps({str(k): v for k, v in statuses.items()}), flush=True)


def start_flood(
    port: int, name: str, how: str, amount: float, seconds: float
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, __file__, "--flood", f"{port},{name},{how},{amount},{seconds}"],
        stdout=subprocess.PIPE,
        text=True,
    )


def flood_statuses(child: subprocess.Popen[str]) -> dict[int, int]:
    out, _ = child.communicate(timeout=120)
    return {int(k): v for k, v in json.loads(out.strip().splitlines()[-1]).items()}


def noisy(
    port: int, quiet: bytes, target: str, how: str, amount: float, args: argparse.Namespace
) -> tuple[Answers, dict[int, int]]:
    """The quiet function's open loop while `target` is flooded from another process."""
    child = start_flood(port, target, how, amount, args.seconds + 2)
    time.sleep(1)  # the flood ramps up before the measured window (a benchmark, not a test)
    run = uvloop.run(open_loop(port, quiet, rate=args.rate, seconds=args.seconds))
    return run, flood_statuses(child)


def p99(run: Answers) -> float:
    return run.p(run.latency, run.where(), 0.99)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=8, help="each measured phase")
    parser.add_argument("--rounds", type=int, default=3, help="alone, then flooded, each round")
    parser.add_argument("--rate", type=float, default=40, help="quiet's requests per second")
    parser.add_argument("--reserved", type=int, default=2, help="flood's reservedConcurrency")
    parser.add_argument("--flood-rate", type=float, default=400, help="open-loop flood req/s")
    parser.add_argument("--flooders", type=int, default=0, help="also a closed-loop flood")
    parser.add_argument("--work", type=float, default=0.05, help="each handler's seconds")
    parser.add_argument("--unlimited", action="store_true", help="also flood one unreserved")
    parser.add_argument("--control", action="store_true", help="also flood a 404 path")
    parser.add_argument("--flood", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.flood:
        port, name, how, amount, seconds = args.flood.split(",")
        flood(int(port), name, how, float(amount), float(seconds))
        return
    reserved = f"reservedConcurrency: {args.reserved}"
    # Enough warm pods for twice quiet's steady concurrency: its reference is not a scale-up.
    warm = max(1, math.ceil(2 * args.rate * args.work))
    functions = [
        FUNCTION.format(name="quiet", limits="", warm=warm, most=2 * warm, work=args.work),
        FUNCTION.format(name="flood", limits=reserved, warm=args.reserved, most=10, work=args.work),
    ]
    if args.unlimited:
        functions.append(
            FUNCTION.format(
                name="unlimited", limits="", warm=args.reserved, most=10, work=args.work
            )
        )
    work = Path(tempfile.mkdtemp(prefix="kubelambda-bench-"))
    manifest = work / "noisy.yaml"
    manifest.write_text("---".join(functions))
    port, admin = free_port(), free_port()
    log = work / "local.log"
    with log.open("wb") as out:
        local = subprocess.Popen(
            [sys.executable, "-m", "kubelambda.cli", "local", str(manifest), "--port", str(port),
             "--admin-port", str(admin)],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    quiet = request("quiet", port)
    load_before = load()
    rounds: list[Round] = []
    try:
        wait_http(f"http://127.0.0.1:{admin}/healthz", process=local)
        # Warm up: every warm pod answers once, and the load generator's paths are hot.
        for name in ("quiet", "flood", *(("unlimited",) if args.unlimited else ())):
            uvloop.run(closed_loop(port, request(name, port), connections=2, seconds=3))
        uvloop.run(open_loop(port, quiet, rate=args.rate, seconds=3))
        for _ in range(args.rounds):
            alone = uvloop.run(open_loop(port, quiet, rate=args.rate, seconds=args.seconds))
            flooded = noisy(port, quiet, "flood", "open", args.flood_rate, args)
            control = None
            if args.control:
                control = noisy(port, quiet, "nowhere", "open", args.flood_rate, args)
            rounds.append(Round(alone, flooded, control))
        closed = None
        if args.flooders:
            closed = noisy(port, quiet, "flood", "closed", args.flooders, args)
        unlimited = None
        if args.unlimited:
            unlimited = noisy(port, quiet, "unlimited", "open", args.flood_rate, args)
    finally:
        local.terminate()
        local.wait(30)
    report(args, rounds, closed, unlimited, load_before)


@dataclass
class Round:
    """Quiet alone, then beside the reserved flood (and the 404 control): adjacent in time,
    so each round's ratio has its own reference on a machine whose load drifts."""

    alone: Answers
    flooded: tuple[Answers, dict[int, int]]
    control: tuple[Answers, dict[int, int]] | None

    @property
    def ratio(self) -> float:
        return p99(self.flooded[0]) / p99(self.alone)

    @property
    def control_ratio(self) -> float | None:
        return p99(self.control[0]) / p99(self.alone) if self.control is not None else None


def report(
    args: argparse.Namespace,
    rounds: list[Round],
    closed: tuple[Answers, dict[int, int]] | None,
    unlimited: tuple[Answers, dict[int, int]] | None,
    load_before: str,
) -> None:
    capacity = args.reserved / args.work
    beyond = f"{args.flood_rate / capacity:.1f}x" if capacity else "all beyond"
    print(
        f"noisy neighbour: local mode, quiet at {args.rate:.0f} req/s open loop, flood at "
        f"{args.flood_rate:.0f} req/s open loop = {beyond} what "
        f"reservedConcurrency {args.reserved} runs ({capacity:.0f}/s); handlers work "
        f"{args.work * 1000:.0f} ms; {args.rounds} rounds of {args.seconds:.0f} s phases; load "
        f"average {load_before} before, {load()} after"
    )
    for number, one in enumerate(rounds, 1):
        run, seen = one.flooded
        throttled = seen.get(429, 0)
        control = one.control_ratio
        print(
            f"  round {number}: quiet alone p99 {p99(one.alone):.1f} ms (errors "
            f"{one.alone.errors}); beside the flood {p99(run):.1f} ms = {one.ratio:.2f}x "
            f"(errors {run.errors}, dominated by {dominant(run, run.where())})"
            + (f"; beside the 404 control {control:.2f}x" if control is not None else "")
        )
        print(
            f"           flood answers {dict(sorted(seen.items()))}: {throttled} x 429 "
            f"({throttled / max(sum(seen.values()), 1):.0%})"
        )
    ratios = sorted(one.ratio for one in rounds)
    median = statistics.median(ratios)
    print(
        f"  quiet's p99 beside the flood: median {median:.2f}x alone, rounds "
        f"{ratios[0]:.2f}x-{ratios[-1]:.2f}x (target <= 2x: {verdict(median <= 2)})"
    )
    controls = sorted(c for one in rounds if (c := one.control_ratio) is not None)
    if controls:
        print(
            f"  beside the 404 control (handling as many requests, no function): median "
            f"{statistics.median(controls):.2f}x, rounds {controls[0]:.2f}x-{controls[-1]:.2f}x"
        )
    base = statistics.median(p99(one.alone) for one in rounds)
    figures: dict[str, object] = {
        "p99_ratio_median": round(median, 2) if math.isfinite(median) else None,
        "p99_ratios": [round(r, 2) for r in ratios],
        "control_ratios": [round(c, 2) for c in controls],
        "flood_429": sum(one.flooded[1].get(429, 0) for one in rounds),
        "flood_200": sum(one.flooded[1].get(200, 0) for one in rounds),
        "quiet_errors_flooded": sum(one.flooded[0].errors for one in rounds),
        "load_average_before": load_before,
    }
    for label, key, phase in (
        (f"closed-loop flood of {args.flooders} clients", "closed_flood_p99_ratio", closed),
        ("unreserved flood", "unlimited_p99_ratio", unlimited),
    ):
        if phase is None:
            continue
        run, seen = phase
        other = p99(run) / base
        print(
            f"  quiet, {label}: errors {run.errors} ({statuses(run)}); p99 {p99(run):.1f} ms"
            f" = {other:.2f}x the median alone; flood answers {dict(sorted(seen.items()))}; "
            f"dominated by {dominant(run, run.where())}"
        )
        figures[key] = round(other, 2) if math.isfinite(other) else None
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
