"""Benchmark: how fast the autoscaler acts, on local mode with a real Prometheus.

1. Wake-up path: a request for a function at zero -> the scale call 0 -> 1 (local mode
   prints it), over N functions; the reference is a plain round trip to the gateway
   measured in the same run. Target <= 200 ms.
2. Load step -> decided replica count, counted from the moment Prometheus first answers
   the load (polled every 50 ms) to the scale-up line. Target <= 2 s; the reference is
   one PromQL query's own latency.

    python benchmarks/autoscaler_latency.py [--functions 10]
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from harness.prometheus import prometheus
from kubelambda.autoscaler.prometheus import query
from support.local import start_local
from support.waiting import free_port

FUNCTION = """
apiVersion: kubelambda.dev/v1alpha1
kind: Function
metadata: {{name: fn{index}}}
spec:
  runtime: python3.12
  handler: app.handler
  scaling: {{maxReplicas: 4, targetConcurrency: 1, scaleToZeroAfterSeconds: 600}}
  code:
    inline:
      files:
        app.py: "import time\\ndef handler(event, context):\\n    time.sleep(0.2)\\n    return 1\\n"
---
apiVersion: kubelambda.dev/v1alpha1
kind: Trigger
metadata: {{name: fn{index}}}
spec:
  function: fn{index}
  http: {{path: /fn{index}}}
---
"""


def get(port: int, path: str) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    connection.request("GET", path)
    connection.getresponse().read()


def line_time(local, text: str, *, after: float, timeout: float = 30) -> float:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for when, line in zip(list(local.arrivals), list(local.lines), strict=False):
            if when >= after and text in line:
                return float(when)
        time.sleep(0.002)
    raise SystemExit(f"no line with {text!r} within {timeout} s")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--functions", type=int, default=10)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kubelambda-bench-"))
    manifest = work / "functions.yaml"
    manifest.write_text("".join(FUNCTION.format(index=i) for i in range(args.functions + 1)))
    admin = free_port()
    with prometheus([f"127.0.0.1:{admin}"], scrape_seconds=1.0) as prom:
        local = start_local(manifest, "--prometheus", prom.url, admin_port=admin)
        port = int(local.url.rsplit(":", 1)[1])
        try:
            prom.wait_until_scraped(timeout=30)
            wakes, round_trips = [], []
            for index in range(args.functions):
                started = time.monotonic()
                get(port, "/not-routed")
                round_trips.append((time.monotonic() - started) * 1000)
                started = time.monotonic()
                threading.Thread(target=get, args=(port, f"/fn{index}"), daemon=True).start()
                woken = line_time(local, f"fn{index}: 0 -> 1 instances", after=started)
                wakes.append((woken - started) * 1000)

            # Load step on the last function: 6 concurrent clients against 1 instance.
            step = f"fn{args.functions}"
            get(port, f"/{step}")  # wake it first, so only the load decision is measured
            stop = time.monotonic() + 15
            done = threading.Event()

            def load() -> None:
                while time.monotonic() < stop and not done.is_set():
                    try:
                        get(port, f"/{step}")
                    except OSError:
                        return

            for _ in range(6):
                threading.Thread(target=load, daemon=True).start()
            url = f"{prom.url}/api/v1/query?" + urllib.parse.urlencode({"query": query()})
            seen = None
            query_ms = []
            while seen is None and time.monotonic() < stop:
                asked = time.monotonic()
                with urllib.request.urlopen(url, timeout=5) as answer:
                    result = json.loads(answer.read())["data"]["result"]
                query_ms.append((time.monotonic() - asked) * 1000)
                for series in result:
                    labels = series["metric"]
                    mine = labels.get("function") == step and labels.get("q") == "panic_queued"
                    if mine and float(series["value"][1]) > 0:
                        seen = time.monotonic()
                time.sleep(0.05)
            if seen is None:
                raise SystemExit("Prometheus never showed the load")
            decided = line_time(local, f"{step}: 1 -> ", after=seen - 5)
            done.set()
        finally:
            local.stop()
    rt = statistics.median(round_trips)
    wake = statistics.median(wakes)
    print(
        f"wake-up, request -> scale call 0->1: p50 {wake:6.1f} ms  max {max(wakes):6.1f} ms  "
        f"(n={len(wakes)}, target <= 200)"
    )
    print(f"  reference, a gateway round trip:   p50 {rt:6.1f} ms  ratio {wake / rt:.1f}")
    lag = (decided - seen) * 1000
    print(f"load step, Prometheus has it -> decision: {max(lag, 0):6.0f} ms  (target <= 2000)")
    print(f"  reference, one PromQL query:          {statistics.median(query_ms):6.1f} ms")


if __name__ == "__main__":
    main()
