"""Benchmark: a burst from zero, open loop at a fixed rate (3,000 requests/s), in local mode.

Knative publishes a 0 -> 3,000 requests/s burst with zero errors; this is the same test
on one machine: a function at zero instances, then requests on a fixed schedule (no
coordinated omission: each latency counts from its scheduled time) through the gateway's
HTTP trigger for --seconds. Printed: errors (target 0), when the first answer came, the
latency percentiles over the whole burst and over its last half (the cold start drained),
and how many requests were held for the cold start. The reference, measured in the same
run: the same load again once the function is warm; the ratio of the two p99s says what
the burst from zero costs.

    python benchmarks/burst.py [--rate 3000] [--seconds 10] [--concurrency 1]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

import uvloop

from loadgen import OpenLoopRun, free_port, open_loop, percentile, wait_http

FUNCTION = """
apiVersion: kubelambda.dev/v1alpha1
kind: Function
metadata: {{name: burst}}
spec:
  runtime: python3.12
  handler: app.handler
  concurrency: {concurrency}
  code:
    inline:
      files:
        app.py: "def handler(event, context):\\n    return {{'statusCode': 200, 'body': 'ok'}}\\n"
---
apiVersion: kubelambda.dev/v1alpha1
kind: Trigger
metadata: {{name: burst}}
spec:
  function: burst
  http: {{path: /burst}}
"""


def held_for_cold_start(admin: int) -> int:
    """Requests the gateway held until the function's first instance was ready."""
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    pattern = r'kubelambda_gateway_cold_starts_total\{[^}]*function="burst"[^}]*\} (\S+)'
    found = re.search(pattern, text)
    return int(float(found.group(1))) if found else 0


def describe(name: str, run: OpenLoopRun, seconds: float) -> str:
    late = [lat for lat, at in zip(run.latencies, run.finished, strict=True) if at > seconds / 2]
    first = min(run.finished) if run.finished else float("nan")
    statuses = ", ".join(f"{status}: {n}" for status, n in sorted(run.statuses.items()))
    return (
        f"  {name:<10} sent {run.sent}, errors {run.failed} ({statuses}; no answer: "
        f"{run.unanswered}); first answer after {first * 1000:.0f} ms\n"
        f"  {'':<10} latency p50 {percentile(run.latencies, 0.5):7.1f}  p95 "
        f"{percentile(run.latencies, 0.95):7.1f}  p99 {percentile(run.latencies, 0.99):7.1f} ms;"
        f" last half p99 {percentile(late or [float('nan')], 0.99):7.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=3000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=1, help="the function's concurrency")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kubelambda-bench-"))
    manifest = work / "burst.yaml"
    manifest.write_text(FUNCTION.format(concurrency=args.concurrency))
    port, admin = free_port(), free_port()
    log = work / "local.log"  # a file, not a pipe: 3,000 invocations/s of log lines
    with log.open("wb") as out:
        local = subprocess.Popen(
            [sys.executable, "-m", "kubelambda.cli", "local", str(manifest), "--port", str(port),
             "--admin-port", str(admin)],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    request = f"GET /burst HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n\r\n".encode()
    try:
        wait_http(f"http://127.0.0.1:{admin}/healthz", process=local)
        cold = uvloop.run(open_loop(port, request, rate=args.rate, seconds=args.seconds))
        held = held_for_cold_start(admin)
        warm = uvloop.run(open_loop(port, request, rate=args.rate, seconds=args.seconds))
    finally:
        local.terminate()
        local.wait(30)
    print(
        f"burst: open loop at {args.rate:.0f} req/s for {args.seconds:.0f} s through an HTTP "
        f"trigger, function concurrency {args.concurrency}, local mode"
    )
    print(describe("from zero", cold, args.seconds))
    print(describe("warm", warm, args.seconds))
    print(f"  requests held for the cold start: {held}")
    ratio = percentile(cold.latencies, 0.99) / percentile(warm.latencies, 0.99)
    print(f"  p99 from zero / p99 warm: {ratio:.1f}")
    print(json.dumps({"errors_from_zero": cold.failed, "errors_warm": warm.failed}))
    print("  target: 0 errors from zero (Knative's published 0 -> 3,000 req/s burst)")


if __name__ == "__main__":
    main()
